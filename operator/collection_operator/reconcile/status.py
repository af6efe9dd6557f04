"""A verdict and a status model -> the status as it goes on the wire: kstatus conditions (Ready,
Reconciling, Stalled, plus Paused), observedGeneration, and only the fields the step set. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ..api.base import Condition, ConditionStatus, StatusModel
from .outcome import Aspect, State, Verdict
from .reasons import AWAITING_APPROVAL


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(type_: str, status: bool, reason: str, message: str, generation: int | None) -> Condition:
    return Condition(
        type=type_,
        status=ConditionStatus.TRUE if status else ConditionStatus.FALSE,
        reason=reason,
        message=message,
        last_transition_time="",
        observed_generation=generation,
    )


HANDS_OFF = (State.PAUSED, State.UNMANAGED)


def conditions_for(
    verdict: Verdict, generation: int | None, current: Sequence[Mapping[str, Any]] = ()
) -> list[Condition]:
    """Ready is the summary; Reconciling says work is in progress; Stalled says a person must act.
    Paused and Unmanaged keep what still holds of the last verdict, a Ready=True and the Stalled condition
    (as suspended Flux objects do), and add a condition of their own type saying why nothing moves. A
    Ready=False of work in progress is dropped: nothing progresses while hands are off, and kstatus reads
    any Ready=False as InProgress (Flux would wait for it forever), a resource without Ready as Current."""
    v = verdict
    reconciling, stalled = v.state == State.RECONCILING, v.state == State.STALLED
    if v.state in HANDS_OFF:
        kept = [
            Condition.model_validate(c)
            for c in current
            if c.get("type") == "Stalled" or (c.get("type") == "Ready" and c.get("status") == "True")
        ]
        return [
            *kept,
            _condition("Reconciling", False, "Idle", "", generation),
            _condition(v.state.value, True, v.reason, v.message, generation),
        ]
    return [
        _condition("Ready", v.ready, v.reason, v.message, generation),
        _condition(
            "Reconciling",
            reconciling,
            v.reason if reconciling else "Idle",
            v.message if reconciling else "",
            generation,
        ),
        _condition("Stalled", stalled, v.reason if stalled else "NotStalled", v.message if stalled else "", generation),
    ]


def merge_conditions(
    old: Sequence[Mapping[str, Any]], new: list[Condition], timestamp: str | None = None
) -> list[Condition]:
    """New conditions keep their lastTransitionTime while their status does not change, so an
    unchanged verdict produces byte-identical conditions and no write."""
    previous = {c.get("type"): c for c in old}
    merged = []
    for cond in new:
        before = previous.get(cond.type)
        if before is not None and before.get("status") == cond.status and before.get("lastTransitionTime"):
            stamp = before["lastTransitionTime"]
        else:
            stamp = timestamp or now()
        merged.append(cond.model_copy(update={"last_transition_time": stamp}))
    return merged


def desired_wire(
    status: StatusModel,
    verdict: Verdict,
    current: Mapping[str, Any],
    generation: int | None,
    *,
    reconciled: bool,
    aspects: Sequence[Aspect] = (),
) -> dict[str, Any]:
    """The status the resource should have: the fields the step set (explicit None removes one),
    the conditions, and observedGeneration: the generation the verdict is about (kstatus, Flux), so it advances
    with every final verdict, Ready or Stalled or Paused or a plan awaiting approval (the generation was looked
    at; a person acts next), and not while work or a transient failure is still in progress."""
    final = reconciled or verdict.state in (State.STALLED, State.PAUSED, State.UNMANAGED)
    final = final or verdict.reason == AWAITING_APPROVAL
    observed = generation if final else current.get("observedGeneration")
    before = current.get("conditions") or []
    own = [_condition(a.type, a.status, a.reason, a.message, generation) for a in aspects]
    conditions = merge_conditions(before, conditions_for(verdict, generation, before) + own)
    out = status.to_patch()
    out["conditions"] = [c.to_wire() for c in conditions]
    if observed is not None:
        out["observedGeneration"] = observed
    return out
