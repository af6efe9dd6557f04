-- Approves the plan waiting in status.plan: the approve-plan annotation names its hash, and the operator
-- applies exactly that plan (a plan that changed since has another hash and waits again). The API server
-- lets only subjects with the verb approve on vectorcollections set it (docs/security.md).
local plan = (obj.status or {}).plan
if plan == nil or plan.phase ~= "AwaitingApproval" or plan.hash == nil then
  error("no plan waits for approval (status.plan.phase is not AwaitingApproval)", 0)
end
obj.metadata.annotations = obj.metadata.annotations or {}
obj.metadata.annotations["qdrant.collection-operator.dev/approve-plan"] = plan.hash
return obj
