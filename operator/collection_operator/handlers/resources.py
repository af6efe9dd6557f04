"""Every kind's per-resource series (qdrant_operator_resource_ready) leave with the resource: a watch event
handler per kind, as a resource without the operator's finalizer has no delete handler to do it (kopf runs
on.delete only for those it holds). The series are set where statuses are written (adapter.write)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from .. import metrics
from ..api import GROUP, VERSION
from ..api.kinds import KINDS


def _forgetter(kind: str) -> Callable[..., Awaitable[None]]:
    async def forget_deleted(type: str, body: kopf.Body, **_: Any) -> None:
        if type == "DELETED":
            metrics.forget_resource(kind, f"{body['metadata']['namespace']}/{body['metadata']['name']}")

    return forget_deleted


for _kind in KINDS:
    kopf.on.event(GROUP, VERSION, _kind.plural, id=f"forget-deleted-{_kind.singular}")(_forgetter(_kind.kind))
