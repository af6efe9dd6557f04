"""CollectionSnapshot logic without Kubernetes: when a snapshot is due, what retention drops, taking one
snapshot, and recovering a collection from one. The handler supplies the clock, the resource's state and
a SnapshotsPort, and writes what comes back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter
from croniter.croniter import CroniterError

from ..api.objectstore import ACCESS_KEY_ID, SECRET_ACCESS_KEY, ObjectStoreServer, ObjectStoreSource
from ..api.snapshot import Phase, PointSample, Retention, ShardFile, SnapshotRecord
from ..objectstore import ObjectStoreError, StoreConfig, Uploaded, parse_location
from ..qdrant.errors import QdrantError
from . import mapping, reasons
from .outcome import Failed, ReconcileError, Stalling, Waiting
from .ports import CollectionsPort, ObjectStorePort, OpenStore, SecretsPort, SecretUnavailable, SnapshotsPort

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
        "the other shards, and Qdrant takes shard snapshots only on a node that holds the shard. List every node "
        "of the cluster in the QdrantConnection's spec.endpoints (each shard is then snapshotted on a node "
        "holding it), or point it at a node holding every shard (replicationFactor equal to the number of peers "
        "puts one on each node); re-checked every few seconds",
    )


async def check_coverage(gateway: SnapshotsPort, collection: str, several: bool = False) -> Coverage | ShardWork:
    """Distributed Qdrant writes a collection snapshot of the shards the node that takes it holds, nothing
    else, and takes shard snapshots only on a node holding the shard: through one URL a complete snapshot
    exists only when that node holds an Active replica of every shard. When it does, one collection snapshot
    there (Coverage); otherwise, with `several` endpoints (the nodes of the cluster), the shard by shard plan
    (ShardWork); SnapshotRefused when neither can be had."""
    if await gateway.count(collection) is None:
        raise SourceNotReady(reasons.COLLECTION_NOT_READY, f"collection {collection} does not exist in Qdrant (yet)")
    view = await gateway.placement(collection)
    cover = coverage(view)
    if cover.complete:
        return cover
    if not several:
        raise _refusal(collection, cover)
    if keyed := sorted({s["shard_id"] for s in _replicas(view) if s.get("shard_key") is not None}):
        raise SnapshotRefused(
            reasons.DISTRIBUTED_UNSUPPORTED,
            f"collection {collection} uses custom sharding (shards {keyed} have shard keys): snapshots shard by "
            "shard are taken of auto-sharded collections only",
        )
    nodes = await gateway.nodes()
    takers, missing = plan_shards(view, nodes)
    if missing:
        raise SnapshotRefused(
            reasons.DISTRIBUTED_UNSUPPORTED,
            f"collection {collection} is distributed and no endpoint of the QdrantConnection that answers now holds "
            f"an Active replica of {_lacking(missing)}: list every node of the cluster in spec.endpoints; "
            "re-checked every few seconds",
        )
    return ShardWork(takers, nodes, cover.shards)


async def point_sample(gateway: SnapshotsPort, collection: str, points: int = SAMPLE_POINTS) -> PointSample:
    """The fingerprint of the collection's first `points` points by id."""
    found = await gateway.first_points(collection, points)
    return PointSample(points=len(found), sha256=digest(found))


async def take(
    gateway: SnapshotsPort, collection: str, now: datetime, cover: Coverage | ShardWork | None = None
) -> SnapshotRecord:
    """One snapshot, with the exact point count it holds when no write raced it (restores verify it). On a
    cluster `cover` is check_coverage's answer: after the snapshot the file's name must carry that node's
    peer id and the node must still hold every shard, else the file is deleted and SnapshotRefused."""
    if isinstance(cover, ShardWork):
        return await _take_shards(gateway, collection, now, cover)
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


# ----- shard by shard: a distributed collection through the nodes of its cluster ---------------------
# Every shard file of a record is handled here: taken, deleted, recovered. A ShardFile's `location` is None
# while the file is on its node only.


@dataclass(frozen=True)
class ShardWork:
    """A snapshot taken shard by shard: which node takes each shard's snapshot."""

    takers: dict[int, str]  # shard id -> peer id
    nodes: dict[str, str]  # peer id -> URL of its endpoint
    shards: list[int]  # every shard id of the collection


def _replicas(view: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every replica of GET /collections/{name}/cluster, the answering node's own with its peer_id."""
    local = [{**s, "peer_id": view["peer_id"]} for s in view.get("local_shards") or []]
    return local + list(view.get("remote_shards") or [])


def plan_shards(view: Mapping[str, Any], nodes: Mapping[str, str]) -> tuple[dict[int, str], dict[int, list[str]]]:
    """Which node takes (or recovers) each shard: one holding an Active replica of it that is in `nodes` (the
    connection's endpoints that answer, in spec.endpoints order). Among several, the one given the fewest
    shards so far, so the work and the files spread over the nodes; on a tie the one listed first, so one
    placement always gives one plan. (shard -> peer, shard -> its replicas for shards no such node holds)."""
    holders: dict[int, list[tuple[str, str | None]]] = {}
    for replica in _replicas(view):
        holders.setdefault(replica["shard_id"], []).append((str(replica["peer_id"]), replica.get("state")))
    order = list(nodes)
    load = dict.fromkeys(order, 0)
    takers: dict[int, str] = {}
    missing: dict[int, list[str]] = {}
    for shard, replicas in sorted(holders.items()):
        able = [peer for peer, state in replicas if state == "Active" and peer in load]
        if not able:
            missing[shard] = [f"peer {peer} ({state})" for peer, state in replicas]
            continue
        chosen = min(able, key=lambda peer: (load[peer], order.index(peer)))
        load[chosen] += 1
        takers[shard] = chosen
    return takers, missing


def _lacking(missing: Mapping[int, list[str]]) -> str:
    return "; ".join(f"shard {shard} (replicas: {', '.join(peers) or 'none'})" for shard, peers in missing.items())


async def _take_shards(gateway: SnapshotsPort, collection: str, now: datetime, work: ShardWork) -> SnapshotRecord:
    """One shard snapshot per shard, each on its taker; all of them or none (files already taken are deleted
    when one fails). The point count and the sample (what drills compare) are recorded when no write raced the
    whole set."""
    before = await gateway.count(collection)
    first = await point_sample(gateway, collection)
    files: list[ShardFile] = []
    try:
        for shard, peer in sorted(work.takers.items()):
            description = await gateway.create_shard_snapshot(collection, shard, work.nodes[peer])
            files.append(
                ShardFile(
                    shard=shard,
                    peer=peer,
                    name=description["name"],
                    checksum=description.get("checksum"),
                    size_bytes=description.get("size"),
                )
            )
    except QdrantError:
        for taken in files:  # never leave part of a backup behind that looks like one
            try:
                await gateway.delete_shard_snapshot(collection, taken.shard, taken.name, work.nodes[taken.peer])
            except QdrantError as exc:
                log.warning("could not delete shard snapshot %s of %s: %s", taken.name, collection, exc)
        raise
    after = await gateway.count(collection)
    unchanged = before is not None and before == after and first == await point_sample(gateway, collection)
    return SnapshotRecord(
        name=f"{collection}-shards-{now.astimezone(UTC).strftime('%Y-%m-%d-%H-%M-%S')}",
        created_at=format_time(now),
        size_bytes=sum(f.size_bytes or 0 for f in files),
        points_count=before if before is not None and before == after else None,
        shards=work.shards,
        shard_files=files,
        sample=first if unchanged else None,
    )


def file_names(record: SnapshotRecord) -> list[str]:
    """The names a record's files have in Qdrant: its own, or its shard files'."""
    return [f.name for f in record.shard_files] if record.shard_files else [record.name]


def on_nodes(record: SnapshotRecord) -> bool:
    """Whether some file of the record is on a Qdrant node (not kept in object storage)."""
    if record.shard_files:
        return any(f.location is None for f in record.shard_files)
    return record.location is None


def locations(record: SnapshotRecord) -> list[str]:
    """Where the record's files are kept in object storage (s3://bucket/key): its own, or its shard files'."""
    if record.shard_files:
        return [f.location for f in record.shard_files if f.location is not None]
    return [record.location] if record.location is not None else []


async def delete_record(
    gateway: SnapshotsPort, collection: str, record: SnapshotRecord, keep: Container[str] = ()
) -> list[str]:
    """Delete a record's files but those in `keep`, each shard file on its node: the names deleted. A node
    that no endpoint answers for fails the deletion (Waiting), so the record is kept and tried again."""
    if not record.shard_files:
        if record.name in keep or record.location is not None:
            return []
        await gateway.delete_snapshot(collection, record.name)
        return [record.name]
    files = [f for f in record.shard_files if f.location is None and f.name not in keep]
    nodes = await gateway.nodes() if files else {}
    if gone := sorted({f.peer for f in files if f.peer not in nodes}):
        raise Waiting(
            reasons.QDRANT_UNAVAILABLE,
            f"the shard files of snapshot {record.name} on peers {', '.join(gone)} cannot be deleted: no endpoint "
            "of the QdrantConnection answers for those nodes now",
        )
    for f in files:
        await gateway.delete_shard_snapshot(collection, f.shard, f.name, nodes[f.peer])
    return [f.name for f in files]


def shard_location(url: str, collection: str, file: ShardFile) -> str:
    """Where Qdrant serves a shard snapshot file: on its node, while that node holds the shard."""
    quote = urllib.parse.quote
    return f"{url.rstrip('/')}/collections/{quote(collection)}/shards/{file.shard}/snapshots/{quote(file.name)}"


StoredFile = Callable[[str], Awaitable[tuple[ObjectStorePort, str]]]


def stored_file(offsite: Offsite | None, namespace: str, server: ObjectStoreServer | None) -> StoredFile:
    """How files a CollectionSnapshot keeps in object storage are reached: location -> (store, key), with
    `server` (its spec.objectStore) read at each use."""

    async def stored(location: str) -> tuple[ObjectStorePort, str]:
        assert offsite is not None, "a record in object storage needs the handler's Offsite"
        return await record_store(offsite, namespace, server, location)

    return stored


@dataclass(frozen=True)
class ShardReach:
    """How a restore reads a record's shard files: those in object storage through `stored` (location -> store
    and key), from a presigned URL and without an api_key; those on their nodes through the source connection
    (`port`, sending its `api_key`)."""

    stored: StoredFile
    port: SnapshotsPort | None = None
    api_key: str | None = None


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
    await _verify(gateway, target, source)


async def restore_shards(
    gateway: SnapshotsPort,
    collections: CollectionsPort,
    target: RestoreTarget,
    source: SourceSnapshot,
    reach: ShardReach,
    create: dict[str, Any],
    url: str,
) -> None:
    """Recover a record taken shard by shard, shard by shard, then verify. Qdrant recovers a shard snapshot only
    into the same shard of an existing collection, on a node holding a replica of it: the collection is created
    first (`create`, the target's create body) with the record's shard number, or must already have it. `url`
    is the target connection's (first) URL: a single node, not distributed, holds every shard itself. `reach`
    says where each file is read: on its source node, or in object storage (then the source need not exist)."""
    files = source.record.shard_files or []
    number = len(source.record.shards or files)
    on_nodes = [f for f in files if f.location is None]
    sources = await reach.port.nodes() if reach.port is not None and on_nodes else {}
    if away := sorted({f.peer for f in on_nodes if f.peer not in sources}):
        raise SourceNotReady(
            reasons.SNAPSHOT_NOT_READY,
            f"the shard files of {source.ref} on peers {', '.join(away)} cannot be read: no endpoint of the source "
            "QdrantConnection answers for those nodes now",
        )
    info = await collections.get_collection(target.collection)
    if info is None:
        await collections.create_collection(target.collection, {**create, "shard_number": number})
    else:
        config = info.get("config") or {}
        owner = (config.get("metadata") or {}).get(mapping.OWNER_KEY)
        if owner != target.marker:
            why = "is not managed by this resource" if target.in_place else "already exists"
            raise RestoreFailed(reasons.ALREADY_EXISTS, f"collection {target.collection} {why}; nothing was restored")
        if (have := (config.get("params") or {}).get("shard_number")) != number:
            raise RestoreFailed(
                reasons.INVALID_SPEC,
                f"collection {target.collection} has {have} shards and snapshot {source.ref} holds {number}: Qdrant "
                "recovers a shard snapshot only into the same shard of a collection with as many shards; restore "
                f"into a new VectorCollection with shardNumber {number}",
            )
    view = await gateway.placement(target.collection)
    targets = await gateway.nodes() or {str(view["peer_id"]): url}
    takers, missing = plan_shards(view, targets)
    if missing:
        raise SourceNotReady(
            reasons.COLLECTION_NOT_READY,
            f"collection {target.collection} has no Active replica on an endpoint that answers for "
            f"{_lacking(missing)}; its shards are recovered once it has",
        )
    for file in files:
        if file.location is None:
            location, api_key = shard_location(sources[file.peer], source.collection, file), reach.api_key
        else:  # signed now, just before its recovery: the URL lives minutes
            store, key = await reach.stored(file.location)
            location, api_key = await presigned(store, key), None
        await gateway.recover_shard(
            target.collection, file.shard, targets[takers[file.shard]], location, file.checksum, api_key
        )
    await _verify(gateway, target, source)


async def _verify(gateway: SnapshotsPort, target: RestoreTarget, source: SourceSnapshot) -> None:
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
        await _abort_earlier(store, key)
        chunks = gateway.download_snapshot(collection, record.name)
        uploaded = await _keep(store, key, record.name, chunks, record.checksum, record.size_bytes)
    except ObjectStoreError as exc:
        await _discard(gateway, collection, record.name)
        raise store_failure(exc, f"snapshot {record.name} could not be kept in object storage: ") from exc
    except (QdrantError, Failed):
        await _discard(gateway, collection, record.name)
        raise
    await _discard(gateway, collection, record.name)
    return record.model_copy(
        update={"location": store.location(key), "checksum": uploaded.sha256, "size_bytes": uploaded.size}
    )


def shard_key(key: str, file: ShardFile) -> str:
    """Where a shard file of the record kept at `key` goes: `<key>/shard-<id>-<file name>`."""
    return f"{key}/shard-{file.shard}-{file.name}"


async def offload_shards(
    gateway: SnapshotsPort,
    store: ObjectStorePort,
    collection: str,
    record: SnapshotRecord,
    key: str,
    nodes: Mapping[str, str],
) -> SnapshotRecord:
    """offload for a record taken shard by shard: every shard file streamed from its node (`nodes`: peer id ->
    URL) to shard_key, checked, its location and our sha256 recorded; then every node copy deleted. All or
    nothing: whatever fails, the objects already kept and every node copy are deleted, nothing is recorded. Kept
    in object storage, a shard file outlives its node (on the node, it is served only while the node holds the
    shard)."""
    files = record.shard_files or []
    kept: list[ShardFile] = []
    try:
        await _abort_earlier(store, key)
        for file in files:
            chunks = gateway.download_shard_snapshot(collection, file.shard, file.name, nodes[file.peer])
            uploaded = await _keep(store, shard_key(key, file), file.name, chunks, file.checksum, file.size_bytes)
            update = {"location": store.location(shard_key(key, file)), "checksum": uploaded.sha256}
            kept.append(file.model_copy(update={**update, "size_bytes": uploaded.size}))
    except (ObjectStoreError, QdrantError, Failed) as exc:
        for done in kept:
            try:
                await store.delete(shard_key(key, done))
            except ObjectStoreError as problem:
                log.warning("could not delete %s: %s", done.location, problem)
        await _discard_shards(gateway, collection, files, nodes)
        if isinstance(exc, ObjectStoreError):
            raise store_failure(exc, f"snapshot {record.name} could not be kept in object storage: ") from exc
        raise
    await _discard_shards(gateway, collection, files, nodes)
    return record.model_copy(update={"shard_files": kept, "size_bytes": sum(f.size_bytes or 0 for f in kept)})


async def _abort_earlier(store: ObjectStorePort, key: str) -> None:
    # An earlier attempt cut off while the store was down could not abort its upload; only this
    # resource's loop writes under this prefix, one upload at a time.
    if aborted := await store.abort_incomplete(key.rsplit("/", 1)[0]):
        log.info("aborted unfinished uploads of %s", ", ".join(aborted))


async def _keep(
    store: ObjectStorePort,
    key: str,
    name: str,
    chunks: AsyncIterator[bytes],
    checksum: str | None,
    size: int | None,
) -> Uploaded:
    """Upload `chunks` to `key` and check them against what Qdrant said it wrote (`checksum`, `size`); a
    mismatching object is deleted and Failed SnapshotChecksumMismatch raised."""
    uploaded = await store.upload(key, chunks)
    if (checksum or uploaded.sha256, size or uploaded.size) != (uploaded.sha256, uploaded.size):
        try:
            await store.delete(key)
        except ObjectStoreError as exc:
            log.warning("could not delete the mismatching object %s: %s", store.location(key), exc)
        raise Failed(
            reasons.SNAPSHOT_CHECKSUM_MISMATCH,
            f"snapshot {name} streamed to object storage as sha256 {uploaded.sha256} ({uploaded.size} "
            f"bytes), but Qdrant wrote {checksum or '?'} ({size or '?'} bytes); nothing was kept",
        )
    return uploaded


async def _discard_shards(
    gateway: SnapshotsPort, collection: str, files: Sequence[ShardFile], nodes: Mapping[str, str]
) -> None:
    for file in files:
        try:
            await gateway.delete_shard_snapshot(collection, file.shard, file.name, nodes[file.peer])
        except QdrantError as exc:  # a leftover file on the node, not a backup anyone counts on
            log.warning("could not delete shard snapshot %s of %s from its node: %s", file.name, collection, exc)


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
    store, key = await stored_file(offsite, namespace, server)(source.record.location)
    return await presigned(store, key), None
