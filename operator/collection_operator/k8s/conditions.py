"""kstatus conditions (Ready, Reconciling, Stalled): computed purely, written only when they change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..redact import scrub

Condition = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Verdict:
    """The summary of one reconcile, which becomes the three kstatus conditions."""

    state: str  # "Ready" | "Reconciling" | "Stalled" | "Failed" (transient, will retry)
    reason: str
    message: str = ""

    def __post_init__(self) -> None:
        # Status conditions and Events are built from verdicts: no secret material past this point.
        object.__setattr__(self, "message", scrub(self.message))

    @property
    def ready(self) -> bool:
        return self.state == "Ready"


def _condition(type_: str, status: bool, reason: str, message: str, generation: int | None) -> dict[str, Any]:
    out: Condition = {"type": type_, "status": "True" if status else "False", "reason": reason, "message": message}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def conditions_for(verdict: Verdict, generation: int | None, extra: Sequence[Condition] = ()) -> list[Condition]:
    """Ready is the summary; Reconciling says work is in progress; Stalled says a person must act."""
    v = verdict
    return [
        _condition("Ready", v.ready, v.reason, v.message, generation),
        _condition("Reconciling", v.state == "Reconciling", v.reason if v.state == "Reconciling" else "Idle",
                   v.message if v.state == "Reconciling" else "", generation),
        _condition("Stalled", v.state == "Stalled", v.reason if v.state == "Stalled" else "NotStalled",
                   v.message if v.state == "Stalled" else "", generation),
        *extra,
    ]


def merge_conditions(old: list[Condition], new: list[Condition], timestamp: str | None = None) -> list[Condition]:
    """New conditions keep their lastTransitionTime while their status does not change, so an
    unchanged verdict produces byte-identical conditions and no write."""
    previous = {c.get("type"): c for c in old or []}
    merged = []
    for cond in new:
        before = previous.get(cond["type"])
        if before is not None and before.get("status") == cond["status"] and before.get("lastTransitionTime"):
            stamp = before["lastTransitionTime"]
        else:
            stamp = timestamp or now()
        merged.append({**cond, "lastTransitionTime": stamp})
    return merged


def status_changes(current: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any]:
    """The top-level status keys whose values differ: the body of a merge patch, empty when in sync."""
    current = current or {}
    return {k: v for k, v in desired.items() if current.get(k) != v}
