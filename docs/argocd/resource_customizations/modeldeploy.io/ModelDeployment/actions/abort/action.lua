-- Argo CD action "abort" for modeldeploy.io/ModelDeployment: sets annotation modeldeploy.io/abort.
local os = require("os")
-- A value that differs from every earlier one: the operator acts once per new value.
local function token()
  return os.date("!%Y%m%dT%H%M%SZ") .. "-" .. tostring(obj.metadata.resourceVersion or "0")
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["modeldeploy.io/abort"] = token()
return obj
