"""VectorCollection: one reconcile for create, spec update, resume and annotation toggles (the drift
sweep of its connection's daemon runs the same). Deletion honours deletionPolicy and never traps the
resource."""

from __future__ import annotations

from typing import Any

import kopf

from ..api import GROUP, VERSION
from ..api.snapshot import RESTORE_FROM
from ..qdrant import QdrantError
from ..reconcile import collection_step
from ..reconcile.outcome import ReconcileError
from ..reconcile.target import APPROVE_PLAN, Target
from .adapter import (
    COLLECTIONS,
    INDEX,
    Bodies,
    collection_lock,
    delete_with_budget,
    indexed,
    reconcile_collection,
    requeue,
)

TOGGLES = (collection_step.PAUSED, collection_step.MANAGED, RESTORE_FROM, APPROVE_PLAN)


@kopf.index(GROUP, VERSION, COLLECTIONS)
async def vectorcollection_uids(uid: str, **_: Any) -> dict[str, bool]:
    """Every live VectorCollection's uid: an ownership marker naming another uid is a deleted resource's."""
    return {uid: True}


def _annotations_toggled(old: Any, new: Any, **_: Any) -> bool:
    # kopf hands `when` filters the whole old and new essences, even on a field handler.
    def annotations(essence: Any) -> dict[str, Any]:
        return ((essence or {}).get("metadata") or {}).get("annotations") or {}

    return any(annotations(old).get(k) != annotations(new).get(k) for k in TOGGLES)


@kopf.on.resume(GROUP, VERSION, COLLECTIONS)
@kopf.on.create(GROUP, VERSION, COLLECTIONS)
@kopf.on.update(GROUP, VERSION, COLLECTIONS, field="spec")
@kopf.on.update(GROUP, VERSION, COLLECTIONS, field="metadata.annotations", when=_annotations_toggled)
async def vectorcollection(
    body: kopf.Body,
    memo: kopf.Memo,
    qdrantconnection_keys: kopf.Index[str, bool] = INDEX,
    vectorcollection_uids: kopf.Index[str, bool] = INDEX,
    snapshot_bodies: Bodies = INDEX,
    **_: Any,
) -> None:
    memo.context.connections.declared = qdrantconnection_keys  # kopf's live index
    outcome = await reconcile_collection(memo.context, body, vectorcollection_uids, snapshot_bodies)
    requeue(outcome)


def _deletes_collection(spec: kopf.Spec, annotations: kopf.Annotations, status: kopf.Status, **_: Any) -> bool:
    return collection_step.deletes_collection(spec, annotations, status)


@kopf.on.delete(GROUP, VERSION, COLLECTIONS, when=_deletes_collection)
async def delete_collection(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    """The finalizer is only there for Delete-policy resources (the `when` filter)."""
    ctx = memo.context
    observed = Target.of(body, body.get("status") or {})
    async with collection_lock(ctx, body):  # never beside a drift sweep of the same resource
        await delete_with_budget(
            ctx,
            body,
            retry,
            f"collection of {observed.key}",
            "the collection is left in Qdrant",
            lambda: collection_step.delete(observed, ctx.connections),
            (ReconcileError, QdrantError),
            connection=observed.connection,
        )


@kopf.index(GROUP, VERSION, COLLECTIONS)
async def vectorcollection_bodies(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[str, Any]:
    """VectorCollections by "namespace/name": what CollectionSnapshots take snapshots of."""
    return {f"{namespace}/{name}": indexed(body)}
