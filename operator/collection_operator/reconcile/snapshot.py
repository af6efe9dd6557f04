"""CollectionSnapshot logic without Kubernetes: when a snapshot is due, what retention drops, taking one
snapshot, and recovering a collection from one. The handler supplies the clock, the resource's state and
a SnapshotsPort, and writes what comes back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter
from croniter.croniter import CroniterError

from ..api.objectstore import ACCESS_KEY_ID, SECRET_ACCESS_KEY, ObjectStoreServer, ObjectStoreSource
from ..api.snapshot import Phase, PointSample, Retention, SnapshotRecord
from ..objectstore import ObjectStoreError, StoreConfig, parse_location
from ..qdrant.errors import QdrantError
from . import mapping, reasons
from .outcome import Failed, ReconcileError, Stalling, Waiting
from .ports import ObjectStorePort, OpenStore, SecretsPort, SecretUnavailable, SnapshotsPort

log = logging.getLogger(__name__)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Points a snapshot's sample covers (its first by id), read before and after the snapshot and by each drill.
# One scroll page: with 1536-dimension vectors about 2 MB of JSON, well under a second, so sampling costs a
# snapshot nothing noticeable. What it adds to the exact count (lost points) and Qdrant's sha256 (a damaged
# file): that the restored points carry their payloads and vectors, unchanged, in a snapshot Qdrant accepts.
SAMPLE_POINTS = 100


class InvalidSchedule(Stalling):
    """The cron expression passed the schema's shape check but croniter cannot evaluate it."""

    def __init__(self, message: str):
        super().__init__(reasons.INVALID_SPEC, message)


class RestoreFailed(Stalling):
    """A restore that must not be retried as it is."""


class SnapshotRefused(Stalling):
    """A snapshot that would not hold the whole collection; a person must act."""


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


# ----- schedule and retention (pure) --------------------------------------------------------------


def next_run(schedule: str, after: datetime) -> datetime:
    """The first cron slot strictly after `after` (UTC)."""
    try:
        return croniter(schedule, after.astimezone(UTC)).get_next(datetime).astimezone(UTC)
    except (CroniterError, ValueError, KeyError) as exc:
        raise InvalidSchedule(f"schedule {schedule!r} is not a valid cron expression: {exc}") from exc


@dataclass(frozen=True)
class Step:
    """What the snapshot's loop does now: take one, or wait until `due` (None: nothing more to do)."""

    take: bool
    due: datetime | None = None


def plan(schedule: str | None, phase: str | None, last: str | None, created: datetime, now: datetime) -> Step:
    """A one-off snapshot is taken until it completes. A scheduled one is due at the first slot after the
    last snapshot (or after creation): after downtime that slot is in the past, so exactly one run
    catches up, however many slots were missed."""
    if schedule is None:
        return Step(take=phase != Phase.COMPLETED)
    due = next_run(schedule, parse_time(last) if last else created)
    if now >= due:
        return Step(take=True)
    return Step(take=False, due=due)


def expired(records: Sequence[SnapshotRecord], retention: Retention | None, now: datetime) -> list[SnapshotRecord]:
    """Records retention drops: beyond keepLast newest, or older than maxAgeHours. The newest snapshot
    is always kept, so a schedule that has been failing for a while never leaves no backup at all."""
    if retention is None or len(records) <= 1:
        return []
    newest_first = sorted(records, key=lambda r: r.created_at or "", reverse=True)
    keep = newest_first[: retention.keep_last] if retention.keep_last else newest_first
    if retention.max_age_hours is not None:
        cutoff = now - timedelta(hours=retention.max_age_hours)
        keep = [r for r in keep if r.created_at and parse_time(r.created_at) >= cutoff] or newest_first[:1]
    kept = {r.name for r in keep}
    return [r for r in records if r.name not in kept]


# ----- restore sources (pure) ---------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSnapshot:
    """One snapshot file a restore reads: where it lives and what it held."""

    resource: str  # the CollectionSnapshot's name
    record: SnapshotRecord
    collection: str
    connection: str  # namespace/name of the QdrantConnection it lives on

    @property
    def ref(self) -> str:
        """The value status.restoredFrom records: `<snapshotResource>/<snapshotName>`, or the file's
        s3://bucket/key for a spec.source.objectStore that no CollectionSnapshot records."""
        if not self.resource and self.record.location:
            return self.record.location
        return f"{self.resource}/{self.record.name}"

    def location(self, url: str) -> str:
        quote = urllib.parse.quote
        return f"{url.rstrip('/')}/collections/{quote(self.collection)}/snapshots/{quote(self.record.name)}"


class SourceNotReady(Waiting):
    """The referenced snapshot (or the collection to take one of) cannot be used yet."""


def parse_restore_annotation(value: str) -> tuple[str, str]:
    resource, sep, name = value.strip().partition("/")
    if not sep or not resource or not name or "/" in name:
        raise Stalling(reasons.INVALID_SPEC, f"restore-from must be <snapshotResource>/<snapshotName>, got {value!r}")
    return resource, name


def source_snapshot(resource: str, body: Mapping[str, Any] | None, snapshot_name: str | None) -> SourceSnapshot:
    """The snapshot record a restore uses: the named one, or the newest the CollectionSnapshot holds."""
    if body is None:
        raise SourceNotReady(reasons.SNAPSHOT_NOT_FOUND, f"CollectionSnapshot {resource} not found in this namespace")
    status = body.get("status") or {}
    records = [SnapshotRecord.model_validate(r) for r in status.get("snapshots") or []]
    if not records or not status.get("collectionName") or not status.get("connection"):
        raise SourceNotReady(reasons.SNAPSHOT_NOT_READY, f"CollectionSnapshot {resource} holds no snapshot yet")
    if snapshot_name is None:
        record = max(records, key=lambda r: r.created_at or "")
    else:
        found = [r for r in records if r.name == snapshot_name]
        if not found:
            raise SourceNotReady(
                reasons.SNAPSHOT_NOT_FOUND,
                f"CollectionSnapshot {resource} holds no snapshot "
                f"{snapshot_name} (it has {', '.join(r.name for r in records)})",
            )
        record = found[0]
    return SourceSnapshot(resource, record, status["collectionName"], status["connection"])


def digest(points: Sequence[Mapping[str, Any]]) -> str:
    """sha256 of the points' ids, payloads and vectors, independent of key order in Qdrant's JSON."""
    shape = [[p["id"], p.get("payload"), p.get("vector")] for p in points]
    return hashlib.sha256(json.dumps(shape, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ----- Qdrant work --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Coverage:
    """Which shards of a distributed collection the node behind the connection URL holds Active replicas of."""

    peer: str
    shards: list[int]  # every shard id of the collection
    elsewhere: dict[int, list[str]]  # shard id -> the peers (and their replica states) that hold it instead

    @property
    def complete(self) -> bool:
        return not self.elsewhere


def coverage(view: Mapping[str, Any]) -> Coverage:
    """From GET /collections/{name}/cluster as one node answers it."""
    local = {s["shard_id"]: s.get("state") for s in view.get("local_shards") or []}
    remote: dict[int, list[str]] = {}
    for shard in view.get("remote_shards") or []:
        remote.setdefault(shard["shard_id"], []).append(f"{shard['peer_id']} ({shard.get('state')})")
    elsewhere = {
        shard: ([f"here ({local[shard]})"] if shard in local else []) + remote.get(shard, [])
        for shard in sorted(set(local) | set(remote))
        if local.get(shard) != "Active"
    }
    return Coverage(str(view["peer_id"]), sorted(set(local) | set(remote)), elsewhere)


def _refusal(collection: str, cover: Coverage) -> SnapshotRefused:
    held = sorted(set(cover.shards) - set(cover.elsewhere))
    missing = "; ".join(f"shard {shard} on {', '.join(peers)}" for shard, peers in cover.elsewhere.items())
    return SnapshotRefused(
        reasons.DISTRIBUTED_UNSUPPORTED,
        f"collection {collection} is distributed and the node behind the connection URL (peer {cover.peer}) holds "
        f"Active replicas of shards {held} of {cover.shards} only ({missing}): a snapshot through it would miss "
        "the other shards, and Qdrant takes shard snapshots only on a node that holds the shard. Point the "
        "QdrantConnection at a node holding every shard (replicationFactor equal to the number of peers puts "
        "one on each node); re-checked every few seconds",
    )


async def check_coverage(gateway: SnapshotsPort, collection: str) -> Coverage:
    """Distributed Qdrant writes a collection snapshot of the shards the node that takes it holds, nothing
    else, and takes shard snapshots only on a node holding the shard: through one URL a complete snapshot
    exists only when that node holds an Active replica of every shard. SnapshotRefused otherwise."""
    if await gateway.count(collection) is None:
        raise SourceNotReady(reasons.COLLECTION_NOT_READY, f"collection {collection} does not exist in Qdrant (yet)")
    cover = coverage(await gateway.placement(collection))
    if not cover.complete:
        raise _refusal(collection, cover)
    return cover


async def point_sample(gateway: SnapshotsPort, collection: str, points: int = SAMPLE_POINTS) -> PointSample:
    """The fingerprint of the collection's first `points` points by id."""
    found = await gateway.first_points(collection, points)
    return PointSample(points=len(found), sha256=digest(found))


async def take(gateway: SnapshotsPort, collection: str, now: datetime, cover: Coverage | None = None) -> SnapshotRecord:
    """One snapshot, with the exact point count it holds when no write raced it (restores verify it). On a
    cluster `cover` is check_coverage's answer: after the snapshot the file's name must carry that node's
    peer id and the node must still hold every shard, else the file is deleted and SnapshotRefused."""
    before = await gateway.count(collection)
    if before is None:
        raise SourceNotReady(reasons.COLLECTION_NOT_READY, f"collection {collection} does not exist in Qdrant (yet)")
    first = await point_sample(gateway, collection)
    description = await gateway.create_snapshot(collection)
    after = await gateway.count(collection)
    unchanged = before == after and first == await point_sample(gateway, collection)
    if cover is not None:
        await _confirm(gateway, collection, cover, description["name"])
    return SnapshotRecord(
        name=description["name"],
        created_at=format_time(now),
        size_bytes=description.get("size"),
        checksum=description.get("checksum"),
        points_count=before if before == after else None,
        peer=cover.peer if cover else None,
        shards=cover.shards if cover else None,
        sample=first if unchanged else None,
    )


async def _confirm(gateway: SnapshotsPort, collection: str, cover: Coverage, name: str) -> None:
    """The node that wrote `name` is the one checked, and still holds every shard; else the file goes."""
    again = coverage(await gateway.placement(collection))
    problem = None
    if not name.startswith(f"{collection}-{cover.peer}-"):
        problem = SnapshotRefused(
            reasons.DISTRIBUTED_UNSUPPORTED,
            f"the connection URL reached peer {cover.peer} for the shard check but another node wrote snapshot "
            f"{name} (a load balancer in front of several nodes?); point the QdrantConnection at one node",
        )
    elif not again.complete:
        problem = _refusal(collection, again)
    elif (again.peer, again.shards) != (cover.peer, cover.shards):
        problem = SnapshotRefused(
            reasons.DISTRIBUTED_UNSUPPORTED,
            f"the shards of {collection} changed while snapshot {name} was taken ({cover.shards} on peer "
            f"{cover.peer}, then {again.shards} on peer {again.peer}); re-checked every few seconds",
        )
    if problem is not None:
        try:  # never leave a partial file behind that looks like a backup
            await gateway.delete_snapshot(collection, name)
        except QdrantError as exc:
            raise SnapshotRefused(problem.reason, f"{problem}; deleting {name} failed too ({exc})") from exc
        raise problem


@dataclass(frozen=True)
class RestoreTarget:
    collection: str
    marker: str  # the restoring VectorCollection's owner marker
    in_place: bool
    source_owner: str  # "<namespace>/<name>" of the VectorCollection the snapshot was taken of


async def restore(
    gateway: SnapshotsPort, target: RestoreTarget, source: SourceSnapshot, location: str, api_key: str | None
) -> None:
    """Recover, claim, verify. The snapshot carries its source's owner marker, so the restored collection
    is marked as this resource's before anything else looks at it."""
    metadata = await gateway.metadata(target.collection)
    exists, owner = metadata is not None, (metadata or {}).get(mapping.OWNER_KEY)
    # Never overwrite data that is not ours; a collection still bearing the source's marker is a
    # restore that was interrupted after Qdrant created it, and is recovered again.
    if exists and owner != target.marker and not (owner and owner.rsplit("/", 1)[0] == target.source_owner):
        why = "is not managed by this resource" if target.in_place else "already exists"
        raise RestoreFailed(reasons.ALREADY_EXISTS, f"collection {target.collection} {why}; nothing was restored")
    await gateway.recover(target.collection, location, source.record.checksum, api_key)
    await gateway.set_metadata(target.collection, {mapping.OWNER_KEY: target.marker})
    expected = source.record.points_count
    if expected is not None and (count := await gateway.count(target.collection)) != expected:
        raise RestoreFailed(
            reasons.RESTORE_VERIFICATION_FAILED,
            f"collection {target.collection} holds {count} points after recovering {source.ref}, which held {expected}",
        )


# ----- object storage -----------------------------------------------------------------------------

# A recovery starts its download within seconds of the signing; a retry (30 s later) signs anew. The URL is
# a credential until it expires, so it lives minutes, not hours, and is never shown (docs/security.md).
PRESIGN_LIFETIME = timedelta(minutes=15)


@dataclass(frozen=True)
class Offsite:
    """What object-storage work reaches: the Secrets holding the credentials, and how a store is opened."""

    secrets: SecretsPort
    open_store: OpenStore


def store_failure(exc: ObjectStoreError, context: str = "") -> ReconcileError:
    """An ObjectStoreError as the error policy reads it: retryable is Failed (backoff), the rest Stalls."""
    kind = Failed if exc.retryable else Stalling
    return kind(exc.reason, f"{context}{exc}")


async def open_store(
    offsite: Offsite, namespace: str, server: ObjectStoreServer, bucket: str, prefix: str
) -> ObjectStorePort:
    """The store with the credentials its Secret holds now (read at each use: rotation needs no restart).
    Stalled SecretNotFound naming the Secret and the keys it needs."""
    ref = server.credentials_secret_ref.name
    try:
        key_id = (await offsite.secrets.read_secret_key(namespace, ref, ACCESS_KEY_ID)).decode().strip()
        secret = (await offsite.secrets.read_secret_key(namespace, ref, SECRET_ACCESS_KEY)).decode().strip()
    except LookupError as exc:
        raise Stalling(
            reasons.SECRET_NOT_FOUND,
            f"object storage credentials: {exc} (Secret {namespace}/{ref} needs the keys {ACCESS_KEY_ID} and "
            f"{SECRET_ACCESS_KEY})",
        ) from exc
    except SecretUnavailable as exc:
        raise Waiting(reasons.SECRET_NOT_FOUND, f"Secret {namespace}/{ref} could not be read now: {exc}") from exc
    try:
        return offsite.open_store(StoreConfig(bucket, prefix, server.endpoint, server.region, key_id, secret))
    except ObjectStoreError as exc:
        raise store_failure(exc) from exc


async def record_store(
    offsite: Offsite, namespace: str, server: ObjectStoreServer | None, location: str
) -> tuple[ObjectStorePort, str]:
    """The store and key of a record kept at `location` (s3://bucket/key), reached with `server`'s endpoint
    and credentials (the CollectionSnapshot's spec.objectStore)."""
    if server is None:
        raise Stalling(
            reasons.INVALID_SPEC,
            f"{location} is in object storage but the CollectionSnapshot no longer has spec.objectStore, whose "
            "endpoint and credentials reach it",
        )
    bucket, key = parse_location(location)
    return await open_store(offsite, namespace, server, bucket, ""), key


def snapshot_key(namespace: str, resource: str, collection: str, name: str) -> str:
    """Where a CollectionSnapshot's file goes under the store's prefix."""
    return f"{namespace}/{resource}/{collection}/{name}"


async def _discard(gateway: SnapshotsPort, collection: str, name: str) -> None:
    try:
        await gateway.delete_snapshot(collection, name)
    except QdrantError as exc:  # a leftover file on the node, not a backup anyone counts on
        log.warning("could not delete snapshot %s of %s from the node: %s", name, collection, exc)


async def offload(
    gateway: SnapshotsPort, store: ObjectStorePort, collection: str, record: SnapshotRecord, key: str
) -> SnapshotRecord:
    """Stream the node's file to `key`, check it against what Qdrant said it wrote, then delete the node's
    copy. Whatever fails, the node's copy is deleted too (and the upload aborted, by obstore or, when the store
    was unreachable, by the next attempt): the retry takes a new snapshot (one holding the
    points as they are then), so a kept file would be one more untracked file on the node per failed
    attempt, filling its disk through a long outage of the store. Nothing is recorded unless all succeeded."""
    try:
        # An earlier attempt cut off while the store was down could not abort its upload; only this
        # resource's loop writes under this prefix, one upload at a time.
        if aborted := await store.abort_incomplete(key.rsplit("/", 1)[0]):
            log.info("aborted unfinished uploads of %s", ", ".join(aborted))
        uploaded = await store.upload(key, gateway.download_snapshot(collection, record.name))
    except ObjectStoreError as exc:
        await _discard(gateway, collection, record.name)
        raise store_failure(exc, f"snapshot {record.name} could not be kept in object storage: ") from exc
    except QdrantError:
        await _discard(gateway, collection, record.name)
        raise
    expected = (record.checksum, record.size_bytes)
    if (record.checksum or uploaded.sha256, record.size_bytes or uploaded.size) != (uploaded.sha256, uploaded.size):
        try:
            await store.delete(key)
        except ObjectStoreError as exc:
            log.warning("could not delete the mismatching object %s: %s", store.location(key), exc)
        await _discard(gateway, collection, record.name)
        raise Failed(
            reasons.SNAPSHOT_CHECKSUM_MISMATCH,
            f"snapshot {record.name} streamed to object storage as sha256 {uploaded.sha256} ({uploaded.size} "
            f"bytes), but Qdrant wrote {expected[0] or '?'} ({expected[1] or '?'} bytes); nothing was kept",
        )
    await _discard(gateway, collection, record.name)
    return record.model_copy(
        update={"location": store.location(key), "checksum": uploaded.sha256, "size_bytes": uploaded.size}
    )


async def checksum_of(gateway: SnapshotsPort, collection: str, name: str) -> str:
    """sha256 of a file on the node, streamed. Qdrant's own S3 mode (storage.snapshots_config) records no
    checksum, and a restore without one could not detect a damaged file."""
    digest = hashlib.sha256()
    async for chunk in gateway.download_snapshot(collection, name):
        digest.update(chunk)
    return digest.hexdigest()


def object_source(source: ObjectStoreSource) -> SourceSnapshot:
    """A spec.source.objectStore as the restore reads it: no resource, no point count to verify against."""
    location = f"s3://{source.bucket}/{source.key}"
    record = SnapshotRecord(name=source.key.rsplit("/", 1)[-1], checksum=source.checksum, location=location)
    return SourceSnapshot("", record, "", "")


async def presigned(store: ObjectStorePort, key: str) -> str:
    try:
        return await store.presign_get(key, PRESIGN_LIFETIME)
    except ObjectStoreError as exc:
        raise store_failure(exc) from exc


async def recovery(
    source: SourceSnapshot,
    qdrant_url: str,
    api_key: str | None,
    offsite: Offsite | None,
    namespace: str,
    server: ObjectStoreServer | None,
) -> tuple[str, str | None]:
    """(location, api_key) Qdrant recovers `source` from: the node's own file URL with the connection's key,
    or for a file in object storage (reached with `server`, the CollectionSnapshot's spec.objectStore) a
    presigned GET and no key: Qdrant sends api_key to the location as a header, which S3 would refuse beside
    a signature."""
    if source.record.location is None:
        return source.location(qdrant_url), api_key
    assert offsite is not None, "a record in object storage needs the handler's Offsite"
    store, key = await record_store(offsite, namespace, server, source.record.location)
    return await presigned(store, key), None
