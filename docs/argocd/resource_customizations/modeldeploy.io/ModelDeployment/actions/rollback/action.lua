-- Argo CD action "rollback" for modeldeploy.io/ModelDeployment: back to the previous revision
-- (the warm one during a bake, else the newest target in the history), through annotation
-- modeldeploy.io/rollback-to = "<revision>@<token>". The operator applies its own rules too.
local os = require("os")
-- A value that differs from every earlier one: the operator acts once per new value.
local function token()
  return os.date("!%Y%m%dT%H%M%SZ") .. "-" .. tostring(obj.metadata.resourceVersion or "0")
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local status = obj.status or {}
local target = nil
if status.previous ~= nil then
  target = status.previous.revision
else
  local stable = status.stable and status.stable.revision
  for _, entry in ipairs(status.history or {}) do
    local refused = entry.outcome == "Failed" or
      (entry.outcome == "RolledBack" and entry.reason ~= "ManualRollback")
    if entry.revision ~= stable then
      if refused then
        if target == entry.revision then target = nil end
      else
        target = entry.revision
      end
    end
  end
end
if target == nil then
  error("no previous revision to roll back to", 0)
end
obj.metadata.annotations["modeldeploy.io/rollback-to"] = tostring(target) .. "@" .. token()
return obj
