"""CollectionSnapshot: one daemon per resource takes its snapshots (once, or on its cron schedule) and
applies retention; a delete handler honours deletionPolicy. Also the restore step VectorCollections run
before their ordinary sync: recoveries run as tasks outside the reconcile, which only polls them."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
import pydantic

from ..api import GROUP, VERSION
from ..api.collection import VectorCollectionSpec
from ..api.snapshot import RESTORE_FROM, CollectionSnapshotSpec, Phase, SnapshotRecord
from ..k8s.api import SecretNotFound
from ..k8s.conditions import Verdict
from ..qdrant import QdrantError
from ..reconcile import snapshot as logic
from ..reconcile.collection import owner_marker
from ..reconcile.collection_sync import Outcome, collection_name, failure_verdict
from .common import post_event, write_status
from .runtime import RUNTIME, ConnectionRuntime

log = logging.getLogger(__name__)
PLURAL = "collectionsnapshots"
TICK_SECONDS = 5.0  # the daemon re-reads its (live) spec this often while waiting; no I/O when nothing is due
MAX_BACKOFF_SECONDS = 300.0
DELETE_ATTEMPTS = 5  # then the resource is released with a Warning and the files are left in Qdrant
RESTORE_POLL_SECONDS = 2.0

# Latest bodies of the resources snapshots and restores refer to, by "namespace/name". Filled by kopf
# indexes (complete before any handler runs), emptied on DELETED events.
_COLLECTIONS: dict[str, dict[str, Any]] = {}
_SNAPSHOTS: dict[str, dict[str, Any]] = {}


@kopf.on.startup()
def _forget(**_: Any) -> None:
    # An in-process restart keeps module state; what the old event loop held is gone or stale.
    for cache in (_COLLECTIONS, _SNAPSHOTS, _RESTORES, _RESTORE_FAILURES):
        cache.clear()


@kopf.index(GROUP, VERSION, "vectorcollections")
def snapshot_source_collections(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> None:
    _COLLECTIONS[f"{namespace}/{name}"] = dict(body)


@kopf.index(GROUP, VERSION, PLURAL)
def restore_source_snapshots(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> None:
    _SNAPSHOTS[f"{namespace}/{name}"] = dict(body)


@kopf.on.event(GROUP, VERSION, "vectorcollections")
def _collection_gone(type: str, namespace: str | None, name: str, **_: Any) -> None:
    if type == "DELETED":
        _COLLECTIONS.pop(f"{namespace}/{name}", None)


@kopf.on.event(GROUP, VERSION, PLURAL)
def _snapshot_gone(type: str, namespace: str | None, name: str, **_: Any) -> None:
    if type == "DELETED":
        _SNAPSHOTS.pop(f"{namespace}/{name}", None)


def backoff(failures: int) -> float:
    return min(5.0 * 2 ** (failures - 1), MAX_BACKOFF_SECONDS)


def _now() -> datetime:
    return datetime.now(UTC)


# ----- taking snapshots ---------------------------------------------------------------------------


class _Failure(Exception):
    def __init__(self, verdict: Verdict):
        super().__init__(verdict.message)
        self.verdict = verdict


class _SnapshotRun:
    """One CollectionSnapshot's loop state. Decisions use this local copy of what was written, because
    the live body's status lags behind our own writes (a one-off must never be taken twice)."""

    def __init__(self, body: kopf.Body):
        self.body = body
        status = body.get("status") or {}
        self.records = [SnapshotRecord.model_validate(r) for r in status.get("snapshots") or []]
        self.last: str | None = status.get("lastSnapshotTime")
        self.phase: str | None = status.get("phase")
        self.collection: str | None = status.get("collectionName")
        self.connection: str | None = status.get("connection")
        self.failures = 0

    async def write(self, verdict: Verdict, *, reconciled: bool = False, next_run: datetime | None = None) -> None:
        fields = {"phase": self.phase, "collectionName": self.collection, "connection": self.connection,
                  "snapshots": [r.to_wire() for r in self.records], "lastSnapshotTime": self.last,
                  "nextScheduleTime": logic.format_time(next_run) if next_run else None}
        await write_status(PLURAL, self.body, verdict, {k: v for k, v in fields.items() if v is not None},
                           reconciled=reconciled)

    async def step(self) -> float:
        """Do what is due now; return how long to wait before the next step."""
        meta = self.body["metadata"]
        now = _now()
        self.phase = self.phase or Phase.PENDING
        try:
            spec = CollectionSnapshotSpec.model_validate(dict(self.body["spec"]))
            created = logic.parse_time(meta["creationTimestamp"])
            plan = logic.plan(spec.schedule, self.phase, self.last, created, now)
        except (pydantic.ValidationError, logic.InvalidSchedule) as exc:
            self.phase = Phase.FAILED
            await self.write(Verdict("Stalled", "InvalidSpec", str(exc)))
            return TICK_SECONDS
        if not plan.take:
            if plan.due is None:
                done = self.records[-1].name if self.records else "?"
                await self.write(Verdict("Ready", "Completed", f"snapshot {done} taken"), reconciled=True)
                return TICK_SECONDS
            await self.write(self._scheduled(plan.due), reconciled=True, next_run=plan.due)
            return min(TICK_SECONDS, max((plan.due - now).total_seconds(), 0.0))
        try:
            await self._take(meta["namespace"], spec, now)
        except _Failure as failure:
            self.phase = Phase.FAILED
            if failure.verdict.state == "Stalled":  # a person must act; re-checked every tick, no backoff
                await self.write(failure.verdict)
                return TICK_SECONDS
            self.failures += 1
            delay = backoff(self.failures)
            v = failure.verdict
            await self.write(Verdict(v.state, v.reason, f"{v.message}; retrying in {delay:.0f}s"))
            return delay
        self.failures = 0
        self.phase = Phase.COMPLETED
        if spec.schedule is None:
            await self.write(Verdict("Ready", "Completed", f"snapshot {self.records[-1].name} taken"),
                             reconciled=True)
            return TICK_SECONDS
        due = logic.next_run(spec.schedule, now)
        await self.write(self._scheduled(due), reconciled=True, next_run=due)
        return 0.0

    @staticmethod
    def _scheduled(due: datetime) -> Verdict:
        return Verdict("Ready", "Scheduled", f"next snapshot at {logic.format_time(due)}")

    async def _take(self, namespace: str, spec: CollectionSnapshotSpec, now: datetime) -> None:
        ref = f"{namespace}/{spec.collection_ref.name}"
        source = _COLLECTIONS.get(ref)
        if source is None:
            raise _Failure(Verdict("Stalled", "CollectionNotFound", f"VectorCollection {ref} does not exist"))
        vc_status = source.get("status") or {}
        collection, connection = vc_status.get("collectionName"), vc_status.get("connection")
        not_reconciled = _Failure(Verdict("Failed", "CollectionNotReady", f"VectorCollection {ref} has not been "
                                          "reconciled yet"))
        if not collection or not connection:
            raise not_reconciled
        runtime = _ready(connection)  # first: a connection that is down is the likelier cause of the next
        if vc_status.get("observedGeneration") is None:
            raise not_reconciled
        self.phase, self.collection, self.connection = Phase.IN_PROGRESS, collection, connection
        await self.write(Verdict("Reconciling", "SnapshotInProgress", f"taking a snapshot of {collection}"))
        gateway = logic.QdrantSnapshots(runtime.gateway)
        try:
            record = await logic.take(gateway, collection, now)
        except logic.SourceNotReady as exc:
            raise _Failure(Verdict("Failed", exc.reason, str(exc))) from exc
        except QdrantError as exc:
            raise _Failure(failure_verdict(exc, f"snapshot of {collection} failed: ")) from exc
        self.records.append(record)
        self.last = record.created_at
        post_event(self.body, "Normal", "SnapshotTaken", f"snapshot {record.name} of {collection}")
        for old in logic.expired(self.records, spec.retention, now):
            try:
                await gateway.delete_snapshot(collection, old.name)
            except QdrantError as exc:  # kept in status and tried again after the next snapshot
                log.warning("retention could not delete snapshot %s of %s: %s", old.name, collection, exc)
                continue
            self.records.remove(old)


def _ready(connection: str) -> ConnectionRuntime:
    if (problem := RUNTIME.connection_problem(connection)) is not None:
        raise _Failure(Verdict("Failed", "ConnectionNotReady", problem))
    return RUNTIME.connections[connection]


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10)
async def snapshot_daemon(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Snapshots run here, in the resource's own task, never inside a handler other resources wait on."""
    run = _SnapshotRun(body)
    while not stopped:
        try:
            delay = await run.step()
        except Exception:  # e.g. the API server refused a status write: the local state keeps the records
            run.failures += 1
            delay = backoff(run.failures)
            log.exception("CollectionSnapshot %s/%s: step failed; again in %.0fs",
                          body["metadata"]["namespace"], body["metadata"]["name"], delay)
        await stopped.wait(delay)


def _deletes_files(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    return spec.get("deletionPolicy") == "Delete" and bool(status.get("snapshots"))


@kopf.on.delete(GROUP, VERSION, PLURAL, when=_deletes_files)
async def delete_snapshot_files(body: kopf.Body, status: kopf.Status, retry: int, **_: Any) -> None:
    """deletionPolicy Delete: remove the files this resource created. The finalizer is only there for
    such resources (the `when` filter), and it is released after DELETE_ATTEMPTS."""
    collection, connection = status.get("collectionName"), status.get("connection")
    names = [r["name"] for r in status.get("snapshots") or []]
    try:
        runtime = _ready(connection or "")
        for name in names:
            await runtime.gateway.delete_snapshot(collection or "", name)
        post_event(body, "Normal", "Deleted", f"deleted {len(names)} snapshot file(s) of {collection}")
    except (_Failure, QdrantError) as exc:
        if retry + 1 >= DELETE_ATTEMPTS:
            post_event(body, "Warning", "DeleteAbandoned",
                       f"snapshot files of {collection} could not be deleted after {DELETE_ATTEMPTS} attempts "
                       f"({exc}); the resource is released and the files are left in Qdrant: {', '.join(names)}")
            return
        raise kopf.TemporaryError(str(exc), delay=min(5 * 2**retry, 60)) from exc


# ----- restoring VectorCollections ----------------------------------------------------------------


@dataclass
class _Restore:
    request: str
    ref: str  # what status.restoredFrom records when it succeeds
    task: asyncio.Task[None]


_RESTORES: dict[str, _Restore] = {}  # VectorCollection "namespace/name" -> its recovery in flight
# A failed request's outcome, shown until its retry time (never, for a permanent failure), so drift
# sweeps do not start a recovery on every pass.
_RESTORE_FAILURES: dict[str, tuple[str, Outcome, float]] = {}


def _requested(body: Mapping[str, Any], spec: VectorCollectionSpec) -> tuple[str, str, str | None, bool] | None:
    """(request, snapshot resource, snapshot name or None for the newest, in place) or None."""
    status = body.get("status") or {}
    annotation = (body["metadata"].get("annotations") or {}).get(RESTORE_FROM)
    if annotation and annotation != status.get("restoredFrom"):
        resource, name = logic.parse_restore_annotation(annotation)
        return annotation, resource, name, True
    source = spec.source.snapshot if spec.source else None
    if source and status.get("restoredFrom") is None and status.get("observedGeneration") is None:
        return f"source:{source.snapshot_ref.name}/{source.snapshot_name or ''}", source.snapshot_ref.name, \
            source.snapshot_name, False
    return None


async def restore_step(body: Mapping[str, Any], spec: VectorCollectionSpec,
                       runtime: ConnectionRuntime) -> tuple[Outcome | None, dict[str, Any]]:
    """Run before a VectorCollection's sync. Returns (outcome, None-sync) while a restore is asked for and
    not done, else (None, status fields to add to the sync's, e.g. restoredFrom once it succeeded)."""
    meta = body["metadata"]
    key = f"{meta['namespace']}/{meta['name']}"
    collection = collection_name(spec, meta["name"])
    base = {"collectionName": collection, "connection": f"{runtime.namespace}/{runtime.name}"}
    try:
        wanted = _requested(body, spec)
    except ValueError as exc:
        return Outcome(Verdict("Stalled", "InvalidSpec", str(exc)), base), {}
    running = _RESTORES.get(key)
    if running is not None and not running.task.done():
        return Outcome(Verdict("Reconciling", "Restoring", f"recovering {collection} from {running.ref}"), base,
                       requeue_after=RESTORE_POLL_SECONDS), {}
    if running is not None:
        del _RESTORES[key]
        if not running.task.cancelled():  # cancelled: the operator stopped mid-way; asked again below
            return _finished(body, key, running, base)
    if wanted is None:
        return None, {}
    request, resource, name, in_place = wanted
    if (failed := _RESTORE_FAILURES.get(key)) and failed[0] == request and time.monotonic() < failed[2]:
        return failed[1], {}
    snapshot_body = _SNAPSHOTS.get(f"{meta['namespace']}/{resource}")
    try:
        source = logic.source_snapshot(resource, snapshot_body, name)
        source_runtime = _ready(source.connection)
        api_key = await _api_key(source_runtime)
    except logic.SourceNotReady as exc:
        return Outcome(Verdict("Failed", exc.reason, str(exc)), base, requeue_after=10), {}
    except _Failure as exc:
        return Outcome(exc.verdict, base, requeue_after=10), {}
    except SecretNotFound as exc:
        return Outcome(Verdict("Failed", "SecretNotFound", f"source connection: {exc}"), base, requeue_after=10), {}
    assert snapshot_body is not None  # source_snapshot raised otherwise
    target = logic.RestoreTarget(collection, owner_marker(meta["namespace"], meta["name"], meta["uid"]), in_place,
                                 f"{meta['namespace']}/{snapshot_body['spec']['collectionRef']['name']}")
    location = source.location(source_runtime.spec.url)
    task = asyncio.create_task(logic.restore(logic.QdrantSnapshots(runtime.gateway), target, source, location,
                                             api_key), name=f"restore {key}")
    _RESTORES[key] = _Restore(request, source.ref, task)
    log.info("restoring %s (collection %s) from %s", key, collection, location)
    return Outcome(Verdict("Reconciling", "Restoring", f"recovering {collection} from {source.ref}"), base,
                   requeue_after=RESTORE_POLL_SECONDS), {}


def _finished(body: Mapping[str, Any], key: str, done: _Restore, base: dict[str, Any]) -> tuple[Outcome | None,
                                                                                                 dict[str, Any]]:
    exc = done.task.exception()
    if exc is None:
        _RESTORE_FAILURES.pop(key, None)
        post_event(body, "Normal", "Restored", f"collection {base['collectionName']} recovered from {done.ref}")
        return None, {"restoredFrom": done.ref}
    retry_at = time.monotonic() + 30
    if isinstance(exc, logic.RestoreFailed):
        verdict, retry_at = Verdict("Stalled", exc.reason, str(exc)), math.inf
    elif isinstance(exc, QdrantError):
        verdict = failure_verdict(exc, f"recovering from {done.ref} failed: ")
    else:
        log.error("restore of %s failed", key, exc_info=exc)
        verdict = Verdict("Failed", "RestoreFailed", f"recovering from {done.ref} failed: {exc}")
    outcome = Outcome(verdict, base, requeue_after=None if math.isinf(retry_at) else 30)
    _RESTORE_FAILURES[key] = (done.request, outcome, retry_at)
    return outcome, {}


async def _api_key(runtime: ConnectionRuntime) -> str | None:
    """The source connection's API key: Qdrant sends it when it downloads the snapshot from that server."""
    ref = runtime.spec.api_key_secret_ref
    if ref is None:
        return None
    return (await RUNTIME.api.read_secret_key(runtime.namespace, ref.name, ref.key)).decode().strip()
