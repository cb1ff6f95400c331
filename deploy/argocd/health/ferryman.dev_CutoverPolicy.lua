-- ArgoCD health for ferryman.dev/v1alpha1 CutoverPolicy.
-- Degraded when a Takeover leaves jobs unserved (condition Degraded) or when not Ready for a reason other
-- than applying a new spec or the creation rate limit (for example Trainer not installed); Progressing
-- while those last; Healthy when Ready for the latest spec.
if obj.status == nil then
  return { status = "Progressing", message = "Waiting for the operator" }
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil and
    (obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation) then
  return { status = "Progressing", message = "Waiting for the operator to observe the latest spec" }
end
local ready = nil
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Degraded" and condition.status == "True" then
      return { status = "Degraded", message = condition.message or condition.reason or "Jobs not served" }
    end
    if condition.type == "Ready" then
      ready = condition
    end
  end
end
if ready == nil then
  return { status = "Progressing", message = "Planning" }
end
if ready.status == "True" then
  return { status = "Healthy", message = ready.message or "Ready" }
end
if ready.reason == "RateLimited" or ready.reason == "Applying" then
  return { status = "Progressing", message = ready.message or "Applying the spec" }
end
return { status = "Degraded", message = ready.message or ready.reason or "Not ready" }
