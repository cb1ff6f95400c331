-- ArgoCD health for trainer.kubeflow.org/v1alpha1 TrainJob (Kubeflow Trainer v2).
-- Conditions are Suspended, Complete and Failed; a running TrainJob has none, so it is Progressing.
local hs = { status = "Progressing", message = "The TrainJob is running or waiting to start" }
if obj.spec ~= nil and obj.spec.suspend == true then
  return { status = "Suspended", message = "The TrainJob is suspended (spec.suspend)" }
end
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
for _, condition in ipairs(obj.status.conditions) do
  if condition.status == "True" then
    if condition.type == "Failed" then
      return { status = "Degraded", message = condition.message or condition.reason or "The TrainJob failed" }
    elseif condition.type == "Complete" then
      hs = { status = "Healthy", message = condition.message or "The TrainJob completed" }
    end
  end
end
return hs
