-- The actions a VectorCollection offers now. approve: only while a plan waits for approval
-- (status.plan.phase AwaitingApproval) and the approve-plan annotation does not name it yet.
-- pause and resume: the paused annotation (the operator reconciles nothing while it is "true").
local annotations = obj.metadata.annotations or {}
local plan = (obj.status or {}).plan
local pending = plan ~= nil and plan.phase == "AwaitingApproval" and plan.hash ~= nil
local paused = annotations["qdrant.collection-operator.dev/paused"] == "true"
local actions = {}
actions["approve"] = {
  ["disabled"] = not pending or annotations["qdrant.collection-operator.dev/approve-plan"] == plan.hash,
  ["displayName"] = "Approve plan",
}
actions["pause"] = {["disabled"] = paused, ["displayName"] = "Pause reconciling"}
actions["resume"] = {["disabled"] = not paused, ["displayName"] = "Resume reconciling"}
return actions
