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
from ..api.objectstore import ObjectStoreSource
from ..api.snapshot import RESTORE_FROM, CollectionSnapshotSpec
from ..qdrant.errors import QdrantError
from . import mapping, reasons
from . import snapshot as logic
from .connection import api_key
from .connections import usable
from .outcome import Outcome, ReconcileError, Stalling, State, Verdict, outcome_for, verdict_for
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


@dataclass(frozen=True)
class _Request:
    key: str  # what identifies the request (a failure is shown until its retry time for the same key)
    resource: str  # the CollectionSnapshot; "" for spec.source.objectStore
    name: str | None  # which of its snapshots; None for the newest
    in_place: bool
    object_store: ObjectStoreSource | None = None


def _requested(req: Target, spec: VectorCollectionSpec) -> _Request | None:
    annotation = req.annotations.get(RESTORE_FROM)
    if annotation and annotation != req.status.get("restoredFrom"):
        resource, name = logic.parse_restore_annotation(annotation)
        return _Request(annotation, resource, name, True)
    if spec.source is None or req.status.get("restoredFrom") is not None or req.status.get("appliedGeneration"):
        return None
    if (stored := spec.source.object_store) is not None:
        return _Request(f"source:s3://{stored.bucket}/{stored.key}", "", None, False, stored)
    source = spec.source.snapshot
    assert source is not None  # exactly one of the two (the CRD's CEL rule and the model say so)
    return _Request(
        f"source:{source.snapshot_ref.name}/{source.snapshot_name or ''}",
        source.snapshot_ref.name,
        source.snapshot_name,
        False,
    )


async def _source(
    req: Target,
    wanted: _Request,
    connections: ConnectionsPort,
    secrets: SecretsPort,
    offsite: logic.Offsite,
    snapshots: Callable[[str], Mapping[str, Any] | None],
) -> tuple[logic.SourceSnapshot, str, str | None, str, logic.ShardReach | None]:
    """(source, location Qdrant recovers from, api_key to send there, the source's owner "namespace/name",
    how its shard files are reached when it was taken shard by shard). A file in object storage is recovered
    from a presigned GET, never with an api_key: Qdrant sends `api_key` as a header to the location
    (collection/snapshots/download.rs in Qdrant 1.19), which S3 would refuse beside a signature in the URL."""
    if wanted.object_store is not None:
        given = wanted.object_store
        store = await logic.open_store(offsite, req.namespace, given, given.bucket, "")
        return logic.object_source(given), await logic.presigned(store, given.key), None, "", None
    body = snapshots(f"{req.namespace}/{wanted.resource}")
    source = logic.source_snapshot(wanted.resource, body, wanted.name)
    assert body is not None  # source_snapshot raised otherwise
    owner = f"{req.namespace}/{body['spec']['collectionRef']['name']}"
    files = source.record.shard_files or []
    # Files in object storage are reached with the CollectionSnapshot's spec.objectStore, read at each use.
    server = CollectionSnapshotSpec.model_validate(body["spec"]).object_store
    stored = logic.stored_file(offsite, req.namespace, server)
    if files and all(f.location for f in files):  # no source connection needed: the nodes may be gone
        return source, "", None, owner, logic.ShardReach(stored)
    if source.record.location is not None:
        store, object_key = await stored(source.record.location)
        return source, await logic.presigned(store, object_key), None, owner, None
    source_runtime = usable(connections, source.connection, req.namespace)  # one this namespace may use
    key = await api_key(secrets, source_runtime.namespace, source_runtime.spec, context="source connection: ")
    if source_runtime.topology is not None and source.record.shards is None and source.record.points_count is None:
        # Taken on a cluster before snapshots were checked for every shard, and nothing to verify it against.
        raise Stalling(
            reasons.DISTRIBUTED_UNSUPPORTED,
            f"snapshot {source.ref} of a distributed collection records neither its shards nor its point count: "
            "it may hold only the shards of the node that took it, and a restore could not be verified; take a "
            "new snapshot",
        )
    reach = logic.ShardReach(stored, source_runtime.snapshots, key) if files else None
    return source, source.location(source_runtime.spec.primary_url), key, owner, reach


async def restore_step(
    req: Target,
    spec: VectorCollectionSpec,
    collection: str,
    runtime: ConnectionPort,
    tracker: RestoreTracker,
    connections: ConnectionsPort,
    secrets: SecretsPort,
    snapshots: Callable[[str], Mapping[str, Any] | None],
    offsite: logic.Offsite,
) -> tuple[CollectionOutcome | None, str | None]:
    """(outcome, None) while a restore is asked for and not done; (None, restoredFrom or None) when the
    ordinary sync may run. `snapshots` finds a CollectionSnapshot body by "namespace/name"; `offsite`
    reaches object storage."""
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
    if (failed := tracker.failures.get(req.key)) and failed[0] == wanted.key and time.monotonic() < failed[2]:
        return failed[1], None
    try:  # the snapshot, its connection, a Secret or the object store is not there yet, or refused
        source, location, key, owner, reach = await _source(req, wanted, connections, secrets, offsite, snapshots)
    except ReconcileError as exc:
        return outcome_for(exc, status()), None
    target = logic.RestoreTarget(collection, req.marker, wanted.in_place, owner)
    if source.record.shard_files:  # taken shard by shard: recovered shard by shard, each file where it is kept
        assert reach is not None  # _source gives one for every shard-by-shard record
        work = logic.restore_shards(
            runtime.snapshots,
            runtime.collections,
            target,
            source,
            reach,
            mapping.create_body(mapping.apply_preset(spec), req.marker),
            runtime.spec.primary_url,
        )
    else:
        work = logic.restore(runtime.snapshots, target, source, location, key)
    task = asyncio.create_task(work, name=f"restore {req.key}")
    tracker.running[req.key] = _Restore(wanted.key, source.ref, task)
    # Never the location: a presigned URL is a credential.
    log.info("restoring %s (collection %s) from %s", req.key, collection, source.ref)
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
