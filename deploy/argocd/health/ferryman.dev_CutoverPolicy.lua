-- ArgoCD health for ferryman.dev/v1alpha1 CutoverPolicy.
-- Healthy when Ready for the latest spec; Progressing while planning or creating TrainJobs within the
-- rate limit; Degraded when not Ready for any other reason (for example Trainer not installed).
if obj.status == nil then
  return { status = "Progressing", message = "Waiting for the operator" }
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil and
    (obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation) then
  return { status = "Progressing", message = "Waiting for the operator to observe the latest spec" }
end
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      if condition.status == "True" then
        return { status = "Healthy", message = condition.message or "Ready" }
      elseif condition.reason == "RateLimited" then
        return { status = "Progressing", message = condition.message or "Creating TrainJobs" }
      else
        return { status = "Degraded", message = condition.message or condition.reason or "Not ready" }
      end
    end
  end
end
return { status = "Progressing", message = "Planning" }
