-- ArgoCD health for every Training Operator v1 job kind (PyTorchJob, MPIJob, JAXJob, XGBoostJob, TFJob,
-- PaddleJob; MPIJob v2beta1 of mpi-operator alike), served by their v1 operator or by ferryman's Takeover:
-- they share the v1 job conditions and spec.runPolicy.suspend.
-- A running job is Progressing, like batch/Job: a long training holds later sync waves until it ends.
local hs = { status = "Progressing", message = "Waiting for the job to start" }
if obj.spec ~= nil and obj.spec.runPolicy ~= nil and obj.spec.runPolicy.suspend == true then
  hs.status = "Suspended"
  hs.message = "The job is suspended (spec.runPolicy.suspend)"
  return hs
end
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
for _, condition in ipairs(obj.status.conditions) do
  if condition.status == "True" then
    if condition.type == "Failed" then
      return { status = "Degraded", message = condition.message or "The job failed" }
    elseif condition.type == "Succeeded" then
      hs = { status = "Healthy", message = condition.message or "The job succeeded" }
    elseif condition.type == "Suspended" and hs.status ~= "Healthy" then
      hs = { status = "Suspended", message = condition.message or "The job is suspended" }
    elseif (condition.type == "Running" or condition.type == "Restarting" or condition.type == "Created")
        and hs.status == "Progressing" then
      hs.message = condition.message or condition.type
    end
  end
end
return hs
