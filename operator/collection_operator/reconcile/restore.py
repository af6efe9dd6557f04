"""The restore step a VectorCollection runs before its ordinary sync (spec.source, or the restore-from
annotation). Recoveries run as tasks outside the reconcile, which only polls them; the tracker keeps
them and the failures to show until their retry time."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.collection import VectorCollectionSpec
from ..api.snapshot import RESTORE_FROM
from ..qdrant.errors import QdrantError
from . import mapping, reasons
from . import snapshot as logic
from .connection import api_key
from .connections import usable
from .outcome import Outcome, ReconcileError, State, Verdict, outcome_for, verdict_for
from .ports import ConnectionPort, ConnectionsPort, SecretsPort
from .target import CollectionOutcome, Target, status

log = logging.getLogger(__name__)
RESTORE_POLL_SECONDS = 2.0
RESTORE_RETRY_SECONDS = 30.0


@dataclass
class _Restore:
    request: str
    ref: str  # what status.restoredFrom records when it succeeds
    task: asyncio.Task[None]


@dataclass
class RestoreTracker:
    """Recoveries in flight and recent failures, by VectorCollection "namespace/name". A failed request's
    outcome is shown until its retry time (never, for a permanent failure), so drift sweeps do not start a
    recovery on every pass."""

    running: dict[str, _Restore] = field(default_factory=dict)
    failures: dict[str, tuple[str, CollectionOutcome, float]] = field(default_factory=dict)

    async def aclose(self) -> None:
        tasks = [r.task for r in self.running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.running.clear()


def _requested(req: Target, spec: VectorCollectionSpec) -> tuple[str, str, str | None, bool] | None:
    """(request, snapshot resource, snapshot name or None for the newest, in place) or None."""
    annotation = req.annotations.get(RESTORE_FROM)
    if annotation and annotation != req.status.get("restoredFrom"):
        resource, name = logic.parse_restore_annotation(annotation)
        return annotation, resource, name, True
    source = spec.source.snapshot if spec.source else None
    if source and req.status.get("restoredFrom") is None and req.status.get("appliedGeneration") is None:
        return (
            f"source:{source.snapshot_ref.name}/{source.snapshot_name or ''}",
            source.snapshot_ref.name,
            source.snapshot_name,
            False,
        )
    return None


async def restore_step(
    req: Target,
    spec: VectorCollectionSpec,
    collection: str,
    runtime: ConnectionPort,
    tracker: RestoreTracker,
    connections: ConnectionsPort,
    secrets: SecretsPort,
    snapshots: Callable[[str], Mapping[str, Any] | None],
) -> tuple[CollectionOutcome | None, str | None]:
    """(outcome, None) while a restore is asked for and not done; (None, restoredFrom or None) when the
    ordinary sync may run. `snapshots` finds a CollectionSnapshot body by "namespace/name"."""
    try:
        wanted = _requested(req, spec)
    except ReconcileError as exc:
        return outcome_for(exc, status()), None
    running = tracker.running.get(req.key)
    if running is not None and not running.task.done():
        return _restoring(collection, running.ref), None
    if running is not None:
        del tracker.running[req.key]
        if not running.task.cancelled():  # cancelled: the operator stopped mid-way; asked again below
            return _finished(req.key, collection, running, tracker)
    if wanted is None:
        return None, None
    request, resource, name, in_place = wanted
    if (failed := tracker.failures.get(req.key)) and failed[0] == request and time.monotonic() < failed[2]:
        return failed[1], None
    snapshot_body = snapshots(f"{req.namespace}/{resource}")
    try:
        source = logic.source_snapshot(resource, snapshot_body, name)
        source_runtime = usable(connections, source.connection, req.namespace)  # one this namespace may use
        key = await api_key(secrets, source_runtime.namespace, source_runtime.spec, context="source connection: ")
    except ReconcileError as exc:  # the snapshot, its connection or its Secret is not there yet
        return outcome_for(exc, status()), None
    assert snapshot_body is not None  # source_snapshot raised otherwise
    if source_runtime.topology is not None and source.record.shards is None and source.record.points_count is None:
        # Taken on a cluster before snapshots were checked for every shard, and nothing to verify it against.
        message = (
            f"snapshot {source.ref} of a distributed collection records neither its shards nor its point count: "
            "it may hold only the shards of the node that took it, and a restore could not be verified; take a "
            "new snapshot"
        )
        return Outcome(Verdict(State.STALLED, reasons.DISTRIBUTED_UNSUPPORTED, message), status()), None
    target = logic.RestoreTarget(
        collection,
        req.marker,
        in_place,
        f"{req.namespace}/{snapshot_body['spec']['collectionRef']['name']}",
    )
    if source.record.shard_files:  # taken shard by shard: recovered shard by shard, each file from its node
        location = f"the shard files of {source.ref}"
        work = logic.restore_shards(
            runtime.snapshots,
            runtime.collections,
            target,
            source,
            source_runtime.snapshots,
            key,
            mapping.create_body(mapping.apply_preset(spec), req.marker),
            runtime.spec.primary_url,
        )
    else:
        location = source.location(source_runtime.spec.primary_url)
        work = logic.restore(runtime.snapshots, target, source, location, key)
    task = asyncio.create_task(work, name=f"restore {req.key}")
    tracker.running[req.key] = _Restore(request, source.ref, task)
    log.info("restoring %s (collection %s) from %s", req.key, collection, location)
    return _restoring(collection, source.ref), None


def _restoring(collection: str, ref: str) -> CollectionOutcome:
    return Outcome(
        Verdict(State.RECONCILING, reasons.RESTORING, f"recovering {collection} from {ref}"),
        status(),
        requeue_after=RESTORE_POLL_SECONDS,
    )


def _finished(
    key: str, collection: str, done: _Restore, tracker: RestoreTracker
) -> tuple[CollectionOutcome | None, str | None]:
    exc = done.task.exception()
    if exc is None:
        tracker.failures.pop(key, None)
        return None, done.ref
    retry_at = time.monotonic() + RESTORE_RETRY_SECONDS
    if isinstance(exc, ReconcileError | QdrantError):  # RestoreFailed Stalls: never retried as it is
        verdict = verdict_for(exc, f"recovering from {done.ref} failed: ")
        retry_at = math.inf if verdict.state == State.STALLED else retry_at
    else:
        log.error("restore of %s failed", key, exc_info=exc)
        verdict = Verdict(State.FAILED, reasons.RESTORE_FAILED, f"recovering from {done.ref} failed: {exc}")
    outcome = Outcome(verdict, status(), requeue_after=None if math.isinf(retry_at) else RESTORE_RETRY_SECONDS)
    tracker.failures[key] = (done.request, outcome, retry_at)
    return outcome, None
