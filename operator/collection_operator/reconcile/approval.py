"""changePolicy.approval: a heavy plan (re-index, migration, a vector removed) is written to status.plan with a
hash, and with approval Manual waits until the approve-plan annotation names that hash. Pure."""

from __future__ import annotations

from ..api.collection import Approval, PlanPhase, PlanStatus, VectorCollectionSpec
from .collection import plan_hash
from .outcome import Outcome, State, Verdict
from .status import AWAITING_APPROVAL
from .target import APPROVE_PLAN, CollectionOutcome, Target, status


def plan_status(
    target: Target,
    actions: list[str],
    *,
    reindex: bool = False,
    migration: str | None = None,
    cost: int | None = None,
    phase: PlanPhase = PlanPhase.APPLIED,
) -> PlanStatus:
    """status.plan for these steps; its hash is what the approve-plan annotation must carry."""
    kind = f"migrate ({migration})" if migration else "re-index" if reindex else ""
    more = f" (+{len(actions) - 1} more)" if len(actions) > 1 else ""
    return PlanStatus(
        hash=plan_hash(target.generation, actions),
        generation=target.generation,
        phase=phase,
        summary=(f"{kind}: " if kind else "") + actions[0] + more,
        actions=actions,
        reindex=reindex,
        migration=migration,
        estimated_vectors=cost,
    )


def held_for_approval(spec: VectorCollectionSpec, target: Target, planned: PlanStatus) -> CollectionOutcome | None:
    """With approval Manual, a heavy plan (re-index, migration, a vector removed) waits until the approve-plan
    annotation names its hash; None when it may go ahead. An Event tells when a new plan starts waiting."""
    if spec.change_policy.approval != Approval.MANUAL or target.approved == planned.hash:
        return None
    waiting = Outcome(
        Verdict(
            State.RECONCILING,
            AWAITING_APPROVAL,
            f"plan {planned.hash} waits for approval ({planned.summary}): kubectl annotate vectorcollection "
            f"{target.name} {APPROVE_PLAN}={planned.hash} --overwrite",
        ),
        status(plan=planned.model_copy(update={"phase": PlanPhase.AWAITING_APPROVAL})),
    )
    if (target.status.get("plan") or {}).get("hash") != planned.hash:
        waiting.event("PlanAwaitingApproval", f"plan {planned.hash} waits for approval: {'; '.join(planned.actions)}")
    return waiting


def approved(outcome: CollectionOutcome, spec: VectorCollectionSpec, planned: PlanStatus) -> None:
    if spec.change_policy.approval == Approval.MANUAL:
        outcome.event("PlanApproved", f"plan {planned.hash} was approved; applying: {planned.summary}")
