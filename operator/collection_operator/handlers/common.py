"""The one place where verdicts become status writes and Events: written only when they change."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

from ..k8s.conditions import Verdict, conditions_for, merge_conditions, status_changes
from .runtime import RUNTIME

log = logging.getLogger(__name__)


async def write_status(
    plural: str,
    body: Mapping[str, Any],
    verdict: Verdict,
    fields: Mapping[str, Any],
    *,
    reconciled: bool,
    extra_conditions: list[dict[str, Any]] | None = None,
) -> bool:
    """Merge-patch only the status keys that differ; post an Event when Ready's reason changes.
    Returns whether anything was written."""
    meta = body["metadata"]
    current = RUNTIME.status_of(plural, body)
    generation = meta.get("generation")
    observed = generation if reconciled else current.get("observedGeneration")
    conditions = merge_conditions(current.get("conditions") or [],
                                  conditions_for(verdict, generation, extra_conditions or []))
    desired = {**fields, "conditions": conditions}
    if observed is not None:
        desired["observedGeneration"] = observed
    patch = status_changes(current, desired)
    if not patch:
        return False
    await RUNTIME.api.patch_status(plural, meta["namespace"], meta["name"], patch)
    RUNTIME.statuses[(plural, meta["uid"])] = {**current, **patch}
    before: dict[str, Any] = next((c for c in current.get("conditions") or [] if c.get("type") == "Ready"), {})
    if (before.get("reason"), before.get("status")) != (verdict.reason, "True" if verdict.ready else "False"):
        if not verdict.ready and verdict.state != "Reconciling":
            post_event(body, "Warning", verdict.reason, verdict.message)
    return True


def post_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """Queued to kopf's poster (it needs apiVersion, kind and metadata of the object)."""
    kopf.event(cast(kopf.Body, body), type=type_, reason=reason, message=message)
