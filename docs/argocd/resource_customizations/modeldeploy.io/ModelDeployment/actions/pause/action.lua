-- Argo CD action "pause" for modeldeploy.io/ModelDeployment: holds the rollout where it is.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["modeldeploy.io/paused"] = "true"
return obj
