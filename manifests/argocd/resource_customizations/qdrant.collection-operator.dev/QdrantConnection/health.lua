-- Argo CD health of a qdrant.collection-operator.dev resource, read from the operator's kstatus
-- conditions (Ready, Reconciling, Stalled, Paused) and status.observedGeneration. One script for every
-- kind: edit manifests/argocd/health.lua, then python3 devenv/argocd_cm.py copies it to each
-- resource_customizations/<group>/<kind>/health.lua (a unit test fails when a copy differs).
-- Runs in Argo CD's argocd-cm sandbox: base and table only (no string or math library).
--   Suspended    paused or unmanaged (condition Paused=True or Unmanaged=True), or a plan awaiting approval
--                (a VectorCollection with Reconciling=True, reason AwaitingApproval: nothing moves until a
--                person approves it)
--   Degraded     Stalled=True about this generation: a person must act (invalid spec, immutable change,
--                conflict)
--   Progressing  no status yet, observedGeneration behind metadata.generation (a change not yet applied,
--                also while it waits for Qdrant: it lands by itself), or Reconciling=True
--   Degraded     Ready=True with reason Degraded: it works, short of what was asked (replicas missing
--                after a Qdrant node was lost; some health probes failing)
--   Healthy      Ready=True for the current generation
--   Degraded     Ready=False for a generation already applied (Qdrant unreachable, key refused, red)
local hs = {status = "Progressing", message = "Waiting for the operator to report status"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local conditions = {}
for _, c in ipairs(obj.status.conditions) do
  conditions[c.type] = c
end
local ready, reconciling, stalled, paused = conditions.Ready, conditions.Reconciling, conditions.Stalled,
  conditions.Paused
local function says(c) -- "Reason: message" of a condition
  if c.message == nil or c.message == "" then
    return c.reason or ""
  end
  return (c.reason or "") .. ": " .. c.message
end
if paused ~= nil and paused.status == "True" then
  hs.status, hs.message = "Suspended", says(paused)
  return hs
end
if conditions.Unmanaged ~= nil and conditions.Unmanaged.status == "True" then
  hs.status, hs.message = "Suspended", says(conditions.Unmanaged)
  return hs
end
local generation, observed = obj.metadata.generation, obj.status.observedGeneration
-- A Stalled verdict about an older generation is stale: the change since then is not looked at yet.
if stalled ~= nil and stalled.status == "True" and (stalled.observedGeneration == nil or stalled.observedGeneration == generation) then
  hs.status, hs.message = "Degraded", says(stalled)
  return hs
end
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Generation " .. tostring(generation) .. " not reconciled yet"
  if ready ~= nil then
    hs.message = hs.message .. " (" .. says(ready) .. ")"
  end
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  if reconciling.reason == "AwaitingApproval" then
    hs.status = "Suspended"
  end
  hs.message = says(reconciling)
  return hs
end
if ready ~= nil and ready.status == "True" and ready.reason == "Degraded" then
  hs.status, hs.message = "Degraded", says(ready)
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status, hs.message = "Healthy", says(ready)
  return hs
end
if ready ~= nil and ready.status == "False" then
  hs.status, hs.message = "Degraded", says(ready)
end
return hs
