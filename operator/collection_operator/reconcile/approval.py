"""changePolicy.approval: a heavy plan (re-index, migration, a vector removed) is written to status.plan with a
hash, and with approval Manual waits until the approve-plan annotation names that hash. The hash covers the spec and
the live state (collection.plan_hash), not the generation, so it can be computed before the change is applied and
the approval committed with it (docs/gitops.md). Pure."""

from __future__ import annotations

from typing import Any

from ..api.collection import Approval, PlanPhase, PlanStatus, VectorCollectionSpec
from .collection import live_digest, plan_hash
from .outcome import Outcome, State, Verdict
from .status import AWAITING_APPROVAL
from .target import APPROVE_PLAN, CollectionOutcome, Target, status


def plan_status(
    target: Target,
    spec: VectorCollectionSpec,
    live: str,
    actions: list[str],
    *,
    kind: str = "",
    reindex: bool = False,
    migration: str | None = None,
    cost: int | None = None,
    phase: PlanPhase = PlanPhase.APPLIED,
) -> PlanStatus:
    """status.plan for these steps, planned for `spec` against the `live` state (plan_base); its hash is what the
    approve-plan annotation must carry. `kind` names a second plan of the same spec and state (plan_hash)."""
    what = f"migrate ({migration})" if migration else "re-index" if reindex else ""
    more = f" (+{len(actions) - 1} more)" if len(actions) > 1 else ""
    return PlanStatus(
        hash=plan_hash(target.key, spec, live, kind),
        generation=target.generation,
        phase=phase,
        summary=(f"{what}: " if what else "") + actions[0] + more,
        actions=actions,
        reindex=reindex,
        migration=migration,
        estimated_vectors=cost,
    )


def plan_base(info: dict[str, Any] | None, target: Target) -> str:
    """The live state the next plan of this resource meets, as long as nothing moves: published as status.planBase
    for `kubectl qdrant plan`. `info` is the collection as just read; nothing was applied (yet)."""
    return live_digest(info, target.status.get("appliedGeneration"))


def held_for_approval(spec: VectorCollectionSpec, target: Target, planned: PlanStatus) -> CollectionOutcome | None:
    """With approval Manual, a heavy plan (re-index, migration, a vector removed) waits until the approve-plan
    annotation names its hash; None when it may go ahead. An Event tells when a new plan starts waiting."""
    if spec.change_policy.approval != Approval.MANUAL or target.approved == planned.hash:
        return None
    other = (
        f"; the approve-plan annotation names {target.approved}, another plan (another change, or one computed "
        "against a live state that has moved since: see status.planBase)"
        if target.approved
        else ""
    )
    waiting = Outcome(
        Verdict(
            State.RECONCILING,
            AWAITING_APPROVAL,
            f"plan {planned.hash} waits for approval ({planned.summary}): kubectl annotate vectorcollection "
            f"{target.name} {APPROVE_PLAN}={planned.hash} --overwrite{other}",
        ),
        status(plan=planned.model_copy(update={"phase": PlanPhase.AWAITING_APPROVAL})),
    )
    if (target.status.get("plan") or {}).get("hash") != planned.hash:
        waiting.event("PlanAwaitingApproval", f"plan {planned.hash} waits for approval: {'; '.join(planned.actions)}")
    return waiting


def approved(outcome: CollectionOutcome, spec: VectorCollectionSpec, planned: PlanStatus) -> None:
    if spec.change_policy.approval == Approval.MANUAL:
        outcome.event("PlanApproved", f"plan {planned.hash} was approved; applying: {planned.summary}")
