-- Argo CD resource actions for modeldeploy.io/ModelDeployment: which ones apply now.
-- Every action only sets (or removes) one annotation; the operator acts on it through status
-- and the objects it owns, never spec, so the Application stays Synced.
local actions = {}
local status = obj.status or {}
local annotations = obj.metadata.annotations or {}
local paused = annotations["modeldeploy.io/paused"] == "true"
local canary = status.canary ~= nil and status.stable ~= nil  -- not the first deploy
local baking = status.bakeUntil ~= nil and status.previous ~= nil

-- The revision `rollback` goes to: the warm previous one during a bake, else the newest in the
-- history that may be a target (not the stable, not failed, not rolled back for a breach).
local function previous_revision()
  if status.previous ~= nil then
    return status.previous.revision
  end
  local stable = status.stable and status.stable.revision
  local found = nil
  for _, entry in ipairs(status.history or {}) do
    local refused = entry.outcome == "Failed" or
      (entry.outcome == "RolledBack" and entry.reason ~= "ManualRollback")
    if entry.revision ~= stable then
      if refused then
        if found == entry.revision then found = nil end
      else
        found = entry.revision
      end
    end
  end
  return found
end

actions["promote"] = {["disabled"] = not (canary or baking)}
actions["abort"] = {["disabled"] = not (canary or baking)}
actions["pause"] = {["disabled"] = paused}
actions["resume"] = {["disabled"] = not paused}
actions["retry"] = {["disabled"] = #(status.quarantinedSpecHashes or {}) == 0}
actions["rollback"] = {["disabled"] = previous_revision() == nil}
return actions
