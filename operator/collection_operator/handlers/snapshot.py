"""CollectionSnapshot: one daemon per resource runs its snapshot loop (reconcile/snapshot_step.py); a
delete handler honours deletionPolicy for the files it created."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf

from .. import metrics
from ..api import GROUP, VERSION
from ..api.kinds import COLLECTION_SNAPSHOT
from ..api.snapshot import VerificationResult
from ..qdrant import QdrantError
from ..reconcile.outcome import ReconcileError
from ..reconcile.snapshot_step import (
    SnapshotOutcome,
    SnapshotRun,
    delete_files,
    delete_objects,
    deletes_files,
    files_of,
    held_elsewhere,
)
from .adapter import INDEX, Bodies, delete_with_budget, every, indexed, lookup, report
from .context import Context

log = logging.getLogger(__name__)
PLURAL = COLLECTION_SNAPSHOT.plural


@kopf.index(GROUP, VERSION, PLURAL)
async def snapshot_bodies(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[str, Any]:
    """CollectionSnapshots by "namespace/name": what VectorCollections restore from."""
    return {f"{namespace}/{name}": indexed(body)}


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10)
async def snapshot_daemon(
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    vectorcollection_bodies: Bodies = INDEX,
    snapshot_bodies: Bodies = INDEX,
    **_: Any,
) -> None:
    """Snapshots run here, in the resource's own task, never inside a handler other resources wait on."""
    ctx: Context = memo.context
    meta = body["metadata"]
    run = SnapshotRun(meta["namespace"], meta["name"], meta["uid"], meta["creationTimestamp"], body.get("status") or {})
    key = f"{meta['namespace']}/{meta['name']}"
    metrics.backup_verified(key, run.verified.status if run.verified else None, run.verified_at)

    async def progress(outcome: SnapshotOutcome) -> None:
        await report(ctx, PLURAL, body, outcome)

    while not stopped:
        try:
            step = await run.step(
                body["spec"],
                datetime.now(UTC),
                lookup(vectorcollection_bodies),
                ctx.connections,
                progress,
                every(snapshot_bodies),
                ctx.offsite,
                ctx.gates,
            )
            if step.drilled is not None:  # quotes Qdrant's error text: masked like every message the operator writes
                step.drilled.message = ctx.secrets.scrub(step.drilled.message)  # the run's record too
                step.outcome.status.last_verification = step.drilled
            await report(ctx, PLURAL, body, step.outcome)
            if step.drilled is not None and step.drilled.result == VerificationResult.FAILED:
                metrics.BACKUP_VERIFICATION_FAILURES.labels(key).inc()
            metrics.backup_verified(key, run.verified.status if run.verified else None, run.verified_at)
            delay = step.delay
        except Exception:  # e.g. the API server refused a status write: the run keeps the records
            delay = run.failed()
            log.exception(
                "CollectionSnapshot %s/%s: step failed; again in %.0fs", meta["namespace"], meta["name"], delay
            )
        await stopped.wait(delay)
    ctx.statuses.forget(PLURAL, meta["uid"])
    metrics.forget_backup(key)


def _deletes_files(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    return deletes_files(spec, status)


@kopf.on.delete(GROUP, VERSION, PLURAL, when=_deletes_files)
async def delete_snapshot_files(
    body: kopf.Body, status: kopf.Status, memo: kopf.Memo, retry: int, snapshot_bodies: Bodies = INDEX, **_: Any
) -> None:
    """The finalizer is only there for Delete-policy resources that hold files (the `when` filter)."""
    meta = body["metadata"]
    names = files_of(status)
    shared = held_elsewhere(
        f"{meta['namespace']}/{meta['name']}",
        status.get("connection"),
        status.get("collectionName"),
        names,
        every(snapshot_bodies),
    )

    async def attempt() -> tuple[str, str, str]:
        collection, deleted = await delete_files(status, memo.context.connections, keep=shared)
        objects = await delete_objects(status, body["spec"], meta["namespace"], memo.context.offsite)
        kept = f"; kept {', '.join(sorted(shared))}, which another CollectionSnapshot records too" if shared else ""
        stored = f" and {len(objects)} object(s) in object storage" if objects else ""
        return "Normal", "Deleted", f"deleted {len(deleted)} snapshot file(s) of {collection}{stored}{kept}"

    await delete_with_budget(
        memo.context,
        body,
        retry,
        f"snapshot files of {status.get('collectionName')}",
        f"the files are left in Qdrant: {', '.join(names)}",
        attempt,
        (ReconcileError, QdrantError),
        connection=status.get("connection"),
    )
