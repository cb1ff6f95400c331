-- ArgoCD health for ferryman.dev/v1alpha1 ExperimentMigration.
-- Healthy once Ready (a scheduled re-sync stays Healthy between rounds); Degraded when Failed or Stalled.
if obj.spec ~= nil and obj.spec.suspend == true then
  return { status = "Suspended", message = "The migration is suspended (spec.suspend)" }
end
if obj.status == nil then
  return { status = "Progressing", message = "Waiting for the operator" }
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil and
    (obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation) then
  return { status = "Progressing", message = "Waiting for the operator to observe the latest spec" }
end
local hs = { status = "Progressing", message = "Migrating" }
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.status == "True" then
      if condition.type == "Failed" or condition.type == "Stalled" then
        return { status = "Degraded", message = condition.message or condition.type }
      elseif condition.type == "Ready" or condition.type == "Succeeded" then
        hs = { status = "Healthy", message = condition.message or condition.type }
      elseif condition.type == "Progressing" and hs.status == "Progressing" then
        hs.message = condition.message or "Migrating"
      end
    end
  end
end
return hs
