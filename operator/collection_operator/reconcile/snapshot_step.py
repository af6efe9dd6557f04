"""CollectionSnapshot: the state machine of one resource's loop (take once or on schedule, retention,
backoff) and the deletion of its files. Decisions use the run's local copy of what was written, because
the live body's status lags behind our own writes (a one-off must never be taken twice)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from ..api.objectstore import ObjectStoreServer
from ..api.snapshot import CollectionSnapshotSpec, CollectionSnapshotStatus, Phase, SnapshotRecord, Verification
from ..objectstore import ObjectStoreError
from ..qdrant.errors import QdrantError
from . import drill, reasons
from . import snapshot as logic
from .collection import owner_marker
from .connections import usable
from .gates import ConnectionGate
from .outcome import (
    Aspect,
    Outcome,
    ReconcileError,
    Stalling,
    State,
    Verdict,
    Waiting,
    backoff,
    parse,
    verdict_for,
)
from .ports import ConnectionsPort, ObjectStorePort

log = logging.getLogger(__name__)
TICK_SECONDS = 5.0  # the loop re-reads its (live) spec this often while waiting; no I/O when nothing is due
MAX_BACKOFF_SECONDS = 300.0

SnapshotOutcome = Outcome[CollectionSnapshotStatus]
Report = Callable[[SnapshotOutcome], Awaitable[None]]
Lookup = Callable[[str], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Next:
    """What the loop writes now, and how long it waits before the next step."""

    outcome: SnapshotOutcome
    delay: float
    drilled: Verification | None = None  # a restore drill that finished in this step (for the metrics)


class SnapshotRun:
    """One CollectionSnapshot's loop state, seeded from the status it had when the loop started."""

    def __init__(self, namespace: str, name: str, uid: str, created: str, status: Mapping[str, Any]):
        self.namespace, self.name, self.uid = namespace, name, uid
        self.created = created
        self.records = [SnapshotRecord.model_validate(r) for r in status.get("snapshots") or []]
        self.last: str | None = status.get("lastSnapshotTime")
        self.phase: Phase | None = status.get("phase")
        self.collection: str | None = status.get("collectionName")
        self.connection: str | None = status.get("connection")
        self.failures = 0
        last = status.get("lastVerification")
        self.verification = Verification.model_validate(last) if last else None
        self.verified_at: str | None = status.get("verifiedAt")
        self.verified = next(
            (
                Aspect(c["type"], c.get("status") == "True", c.get("reason") or "", c.get("message") or "")
                for c in status.get("conditions") or []
                if c.get("type") == drill.CONDITION
            ),
            None,
        )
        self.drill_failures = 0
        self.drill_retry_at: datetime | None = None

    def failed(self) -> float:
        """One more failure in a row: how long the loop waits before it tries again."""
        self.failures += 1
        return backoff(self.failures, MAX_BACKOFF_SECONDS)

    def outcome(
        self, verdict: Verdict, *, reconciled: bool = False, next_run: datetime | None = None
    ) -> SnapshotOutcome:
        fields = {
            "phase": self.phase,
            "collection_name": self.collection,
            "connection": self.connection,
            "snapshots": self.records,
            "last_snapshot_time": self.last,
            "next_schedule_time": logic.format_time(next_run) if next_run else None,
            "verified_at": self.verified_at,
            "last_verification": self.verification,
        }
        status = CollectionSnapshotStatus.model_validate({k: v for k, v in fields.items() if v is not None})
        return Outcome(verdict, status, reconciled=reconciled, aspects=[self.verified] if self.verified else [])

    async def step(
        self,
        spec_body: Mapping[str, Any],
        now: datetime,
        collections: Lookup,
        connections: ConnectionsPort,
        report: Report,
        others: Iterable[Mapping[str, Any]] = (),
        offsite: logic.Offsite | None = None,
        gates: MutableMapping[str, ConnectionGate] | None = None,
    ) -> Next:
        """Do what is due now. `collections` finds a VectorCollection body by "namespace/name"; `report`
        writes the in-progress status before a snapshot starts; `others` are the CollectionSnapshot bodies
        retention must not delete a shared file for (held_elsewhere); `offsite` reaches object storage
        (spec.objectStore); `gates` are the connections' heavy-change slots, which a restore drill takes (None:
        nothing else runs heavy work)."""
        self.phase = self.phase or Phase.PENDING
        try:
            spec = parse(CollectionSnapshotSpec, spec_body)
            plan = logic.plan(spec.schedule, self.phase, self.last, logic.parse_time(self.created), now)
        except Stalling as exc:  # InvalidSpec, or a schedule croniter cannot evaluate
            self.phase = Phase.FAILED
            return Next(self.outcome(exc.verdict), TICK_SECONDS)
        if not plan.take:
            if self.connection is not None:  # an outage shows at once, not at the next snapshot
                try:
                    usable(connections, self.connection)
                except ReconcileError as exc:
                    return Next(self.outcome(exc.verdict), TICK_SECONDS)
            drilled, before = None, self.verified
            if spec.verify is None:
                self.verified = None  # no drills, no BackupVerified condition (lastVerification stays)
            else:  # in this loop, so never while a snapshot of this resource is taken
                try:
                    drilled = await self._drill(spec, now, connections, {} if gates is None else gates, offsite)
                except (ReconcileError, QdrantError) as exc:
                    verdict = verdict_for(exc, "restore drill: ")
                    log.warning("CollectionSnapshot %s/%s: %s", self.namespace, self.name, verdict.message)
                    return Next(self.outcome(verdict), TICK_SECONDS)
            if plan.due is None:
                done = self.records[-1].name if self.records else "?"
                resting = Next(
                    self.outcome(Verdict(State.READY, reasons.COMPLETED, f"snapshot {done} taken"), reconciled=True),
                    TICK_SECONDS,
                )
            else:
                wait = min(TICK_SECONDS, max((plan.due - now).total_seconds(), 0.0))
                resting = Next(self._scheduled(plan.due), wait)
            if drilled is not None and self.verified is not None:
                passed = self.verified.status
                if not passed or before is None or not before.status:  # every failure; a pass when it is news
                    resting.outcome.event(
                        reasons.VERIFIED if passed else self.verified.reason, drilled.message, warning=not passed
                    )
                resting = replace(resting, drilled=drilled)
            return resting
        try:
            await self._take(spec, now, collections, connections, report, others, offsite)
        except (ReconcileError, QdrantError) as exc:
            self.phase = Phase.FAILED
            verdict = verdict_for(exc, f"snapshot of {self.collection} failed: ")
            if verdict.state == State.STALLED:  # a person must act; re-checked every tick, no backoff
                return Next(self.outcome(verdict), TICK_SECONDS)
            # Waiting too: a collection not reconciled yet is polled with backoff, not every tick.
            delay = self.failed()
            return Next(
                self.outcome(Verdict(verdict.state, verdict.reason, f"{verdict.message}; retrying in {delay:.0f}s")),
                delay,
            )
        self.failures = 0
        self.phase = Phase.COMPLETED
        taken = self.outcome(
            Verdict(State.READY, reasons.COMPLETED, f"snapshot {self.records[-1].name} taken"), reconciled=True
        )
        taken.event("SnapshotTaken", f"snapshot {self.records[-1].name} of {self.collection}")
        if spec.schedule is None:
            return Next(taken, TICK_SECONDS)
        scheduled = self._scheduled(logic.next_run(spec.schedule, now))
        scheduled.events = taken.events
        return Next(scheduled, 0.0)

    async def _drill(
        self,
        spec: CollectionSnapshotSpec,
        now: datetime,
        connections: ConnectionsPort,
        gates: MutableMapping[str, ConnectionGate],
        offsite: logic.Offsite | None,
    ) -> Verification | None:
        """A restore drill of the newest snapshot when one is due (verify's schedule, after the last drill or the
        creation); None when none ran. A ReconcileError or QdrantError is the connection's failure, not the
        backup's: no verdict on it, and the drill is tried again after a backoff."""
        assert spec.verify is not None
        last = self.verification.time if self.verification else None
        due = logic.plan(spec.verify.schedule, None, last, logic.parse_time(self.created), now)
        waiting = self.drill_retry_at is not None and now < self.drill_retry_at
        if waiting or not due.take or not self.records or self.collection is None or self.connection is None:
            return None
        holder = f"CollectionSnapshot {self.namespace}/{self.name}"
        gate = gates.setdefault(self.connection, ConnectionGate())
        if not gate.admit(holder):  # a re-index, a copy or another drill runs on this connection: next tick
            log.info("restore drill of %s waits for the heavy change of %s", holder, gate.holder)
            return None
        try:
            runtime = usable(connections, self.connection, self.namespace)
            record = max(self.records, key=lambda r: r.created_at or "")
            source = logic.SourceSnapshot(self.name, record, self.collection, self.connection)
            reach = None
            if record.shard_files:  # recovered shard by shard: each file on its node or in the bucket
                location, key = "", None
                reach = logic.ShardReach(
                    logic.stored_file(offsite, self.namespace, spec.object_store), runtime.snapshots, runtime.api_key
                )
            else:
                location, key = await logic.recovery(
                    source, runtime.spec.primary_url, runtime.api_key, offsite, self.namespace, spec.object_store
                )
            plan = drill.Drill(
                source,
                drill.scratch_name(runtime, self.namespace, self.uid),
                owner_marker(self.namespace, self.name, self.uid),
                f"{self.namespace}/{spec.collection_ref.name}",
                location,
                key,
                reach,
            )
            verification, reason = await drill.run(runtime, plan, logic.format_time(now))
        except (ReconcileError, QdrantError):
            self.drill_failures += 1
            self.drill_retry_at = now + timedelta(seconds=backoff(self.drill_failures, MAX_BACKOFF_SECONDS))
            raise
        finally:
            gate.release(holder)
        self.drill_failures, self.drill_retry_at = 0, None
        self.verification = verification
        self.verified = drill.condition(verification, reason)
        if self.verified.status:
            self.verified_at = verification.time
        return verification

    def _scheduled(self, due: datetime) -> SnapshotOutcome:
        return self.outcome(
            Verdict(State.READY, reasons.SCHEDULED, f"next snapshot at {logic.format_time(due)}"),
            reconciled=True,
            next_run=due,
        )

    async def _take(
        self,
        spec: CollectionSnapshotSpec,
        now: datetime,
        collections: Lookup,
        connections: ConnectionsPort,
        report: Report,
        others: Iterable[Mapping[str, Any]],
        offsite: logic.Offsite | None,
    ) -> None:
        ref = f"{self.namespace}/{spec.collection_ref.name}"
        source = collections(ref)
        if source is None:
            raise Stalling(reasons.COLLECTION_NOT_FOUND, f"VectorCollection {ref} does not exist")
        vc_status = source.get("status") or {}
        collection, connection = vc_status.get("collectionName"), vc_status.get("connection")
        not_reconciled = Waiting(reasons.COLLECTION_NOT_READY, f"VectorCollection {ref} has not been reconciled yet")
        if not collection or not connection:
            raise not_reconciled
        # First: a connection that is down is the likelier cause. Checked for this namespace, as its collection was.
        runtime = usable(connections, connection, self.namespace)
        if vc_status.get("appliedGeneration") is None:
            raise not_reconciled
        self.collection, self.connection = collection, connection
        # A cluster: the node behind the URL must hold every shard, or with several endpoints each shard is taken
        # on a node holding it; else no snapshot is taken (SnapshotRefused: a partial one is never taken, nor recorded).
        several = len(runtime.spec.endpoints or ()) > 1
        cover = await logic.check_coverage(runtime.snapshots, collection, several) if runtime.topology else None
        # Object storage is checked before Qdrant writes anything: wrong credentials or a missing bucket Stall
        # here, naming the Secret or the bucket.
        store = await self._store(spec, offsite)
        self.phase = Phase.IN_PROGRESS
        await report(
            self.outcome(Verdict(State.RECONCILING, reasons.SNAPSHOT_IN_PROGRESS, f"taking a snapshot of {collection}"))
        )
        record = await logic.take(runtime.snapshots, collection, now, cover)
        key = logic.snapshot_key(self.namespace, self.name, collection, record.name)
        if store is not None and isinstance(cover, logic.ShardWork):  # every shard file, each from its node
            record = await logic.offload_shards(runtime.snapshots, store, collection, record, key, cover.nodes)
        elif store is not None:
            record = await logic.offload(runtime.snapshots, store, collection, record, key)
        elif record.checksum is None and not record.shard_files:  # Qdrant's S3 mode: the operator's sha256
            checksum = await logic.checksum_of(runtime.snapshots, collection, record.name)
            record = record.model_copy(update={"checksum": checksum})
        self.records.append(record)
        self.last = record.created_at
        expired = logic.expired(self.records, spec.retention, now)
        own = f"{self.namespace}/{self.name}"
        names = [name for r in expired for name in logic.file_names(r)]
        shared = held_elsewhere(own, connection, collection, names, others)
        for old in expired:
            try:
                await logic.delete_record(runtime.snapshots, collection, old, keep=shared)
                for location in logic.locations(old):  # its keys name this resource: never another's
                    await delete_object(offsite, self.namespace, spec.object_store, location)
            except (QdrantError, ReconcileError) as exc:  # kept in status and tried again after the next snapshot
                log.warning("retention could not delete snapshot %s of %s: %s", old.name, collection, exc)
                continue
            self.records.remove(old)

    async def _store(self, spec: CollectionSnapshotSpec, offsite: logic.Offsite | None) -> ObjectStorePort | None:
        target = spec.object_store
        if target is None:
            return None
        assert offsite is not None, "spec.objectStore needs the handler's Offsite"
        store = await logic.open_store(offsite, self.namespace, target, target.bucket, target.prefix)
        try:
            await store.check()
        except ObjectStoreError as exc:
            raise logic.store_failure(exc, "object storage: ") from exc
        return store


def deletes_files(spec: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Only a Delete-policy resource that holds files has anything to delete in Qdrant."""
    return spec.get("deletionPolicy") == "Delete" and bool(status.get("snapshots"))


def files_of(status: Mapping[str, Any]) -> list[str]:
    """The names of every file a CollectionSnapshot's status records, shard files by their own names."""
    return [
        name
        for record in status.get("snapshots") or []
        for name in logic.file_names(SnapshotRecord.model_validate(record))
    ]


def held_elsewhere(
    own: str, connection: str | None, collection: str | None, names: Iterable[str], bodies: Iterable[Mapping[str, Any]]
) -> set[str]:
    """Those of `names` that another CollectionSnapshot (not `own`, "namespace/name") on the same connection
    and collection records too. Qdrant gives snapshots taken in one second the same name (by another client,
    or an operator before SnapshotTurns), and a file one resource still holds is never deleted for another.
    Shard files count by their own names."""
    shared: set[str] = set()
    for body in bodies:
        meta, other = body.get("metadata") or {}, body.get("status") or {}
        if f"{meta.get('namespace')}/{meta.get('name')}" == own:
            continue
        if (other.get("connection"), other.get("collectionName")) == (connection, collection):
            shared |= set(files_of(other))
    return shared & set(names)


async def delete_files(
    status: Mapping[str, Any], connections: ConnectionsPort, keep: Container[str] = ()
) -> tuple[str, list[str]]:
    """deletionPolicy Delete: remove the files a CollectionSnapshot created on the nodes (every shard file, each
    on its node) but those in `keep` (held_elsewhere); (collection, names) deleted. Those kept in object storage
    are delete_objects'."""
    collection = status.get("collectionName") or ""
    records = [SnapshotRecord.model_validate(r) for r in status.get("snapshots") or []]
    names: list[str] = []
    if on_nodes := [r for r in records if logic.on_nodes(r)]:  # none: the connection need not exist any more
        runtime = usable(connections, status.get("connection") or "")
        for record in on_nodes:
            names += await logic.delete_record(runtime.snapshots, collection, record, keep)
    return collection, names


async def delete_object(
    offsite: logic.Offsite | None, namespace: str, server: ObjectStoreServer | None, location: str
) -> None:
    store, key = await logic.stored_file(offsite, namespace, server)(location)
    try:
        await store.delete(key)
    except ObjectStoreError as exc:
        raise logic.store_failure(exc, f"deleting {location}: ") from exc


async def delete_objects(
    status: Mapping[str, Any], spec: Mapping[str, Any], namespace: str, offsite: logic.Offsite
) -> list[str]:
    """deletionPolicy Delete: remove the objects this CollectionSnapshot recorded (and only those); their
    locations."""
    server = parse(CollectionSnapshotSpec, spec).object_store
    records = [SnapshotRecord.model_validate(r) for r in status.get("snapshots") or []]
    locations = [location for record in records for location in logic.locations(record)]
    for location in locations:
        await delete_object(offsite, namespace, server, location)
    return locations
