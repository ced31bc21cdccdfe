-- Argo CD action "resume" for modeldeploy.io/ModelDeployment: removes the pause annotation.
if obj.metadata.annotations ~= nil then
  obj.metadata.annotations["modeldeploy.io/paused"] = nil
end
return obj
