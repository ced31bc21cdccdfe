-- Argo CD health check for modeldeploy.io/ModelDeployment.
--
-- Argo CD runs this (Lua 5.1, gopher-lua) with the live object as `obj` and shows the returned
-- status and message. The operator never writes spec, so a rollback keeps the Application
-- Synced; this check is what turns it Degraded, with the operator's reason as the message.
-- Rules, first match wins:
--   1. no status yet, or status older than the spec (observedGeneration < generation): Progressing
--   2. phase Degraded, RolledBack or Failed: Degraded (broken beats paused: a human must look)
--   3. condition Paused=True, or annotation modeldeploy.io/paused: "true": Suspended
--   4. phase Stable: Healthy
--   5. phase Pending or Progressing: Progressing
--   6. anything else: Unknown
-- The message is "<phase>: <why>": the why is the message of the condition that answers the
-- question (Degraded, Paused/Progressing, Ready), else status.message.
local hs = {}

-- The condition of the given type, or nil.
local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

-- "<phase>: <why>", the why taken from the most telling condition or else status.message.
local function describe(status, phase, ctype)
  local why = nil
  local c = condition(status, ctype)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    why = c.message
  end
  if why == nil or why == "" then
    why = status.message
  end
  if why == nil or why == "" then
    return phase
  end
  return phase .. ": " .. why
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the modeldeploy operator to observe this ModelDeployment"
  return hs
end

local generation = obj.metadata.generation
local observed = status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation) ..
    " (status is from generation " .. tostring(observed or 0) .. ")"
  return hs
end

local phase = status.phase
if phase == "Degraded" or phase == "RolledBack" or phase == "Failed" then
  hs.status = "Degraded"
  hs.message = describe(status, phase, "Degraded")
  return hs
end

local annotations = obj.metadata.annotations
local paused = condition(status, "Paused")
if (paused ~= nil and paused.status == "True") or
    (annotations ~= nil and annotations["modeldeploy.io/paused"] == "true") then
  hs.status = "Suspended"
  hs.message = "Paused (annotation modeldeploy.io/paused): " .. describe(status, phase, "Progressing")
  return hs
end

if phase == "Stable" then
  hs.status = "Healthy"
  hs.message = describe(status, phase, "Ready")
  return hs
end

if phase == "Pending" or phase == "Progressing" then
  hs.status = "Progressing"
  hs.message = describe(status, phase, "Progressing")
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase)
return hs
