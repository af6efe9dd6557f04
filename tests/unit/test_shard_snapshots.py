"""A distributed collection backed up shard by shard: which node takes (and recovers) each shard, the record,
deleting every shard file on its node, and the restore shard by shard, through fakes. No sleeps, no network."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from collection_operator.api.collection import VectorCollectionSpec
from collection_operator.api.connection import QdrantConnectionSpec
from collection_operator.api.snapshot import PointSample, ShardFile, SnapshotRecord
from collection_operator.qdrant import Topology
from collection_operator.reconcile import mapping, restore
from collection_operator.reconcile import snapshot as logic
from collection_operator.reconcile.outcome import State, Waiting
from collection_operator.reconcile.snapshot_step import (
    SnapshotRun,
    delete_files,
    delete_objects,
    files_of,
    held_elsewhere,
)
from collection_operator.reconcile.target import Target
from tests.builders import collection_spec
from tests.fakes import FakeConnection, FakeConnections, FakeObjectStores, FakeQdrant, FakeSecrets, FakeSnapshots

NOW = datetime(2030, 5, 1, 12, 0, 30, tzinfo=UTC)
NODES = {"11": "http://127.0.0.1:7001", "22": "http://127.0.0.1:7002", "33": "http://127.0.0.1:7003"}


def on_nodes(port: FakeSnapshots, api_key: str | None) -> logic.ShardReach:
    """Files on their nodes only: object storage is never reached."""

    async def stored(location: str) -> tuple[Any, str]:
        raise AssertionError(f"{location} read from object storage")

    return logic.ShardReach(stored, port, api_key)


def view(peer: int, replicas: dict[int, list[tuple[int, str]]], key: str | None = None) -> dict[str, Any]:
    """GET /collections/{name}/cluster as node `peer` answers it, from every shard's (peer, state) replicas."""
    extra = {"shard_key": key} if key else {}
    return {
        "peer_id": peer,
        "local_shards": [
            {"shard_id": s, "state": st, **extra} for s, reps in replicas.items() for p, st in reps if p == peer
        ],
        "remote_shards": [
            {"shard_id": s, "peer_id": p, "state": st, **extra}
            for s, reps in replicas.items()
            for p, st in reps
            if p != peer
        ],
    }


FACTOR_1 = view(11, {0: [(22, "Active")], 1: [(33, "Active")], 2: [(11, "Active")]})
FACTOR_3 = view(11, {s: [(11, "Active"), (22, "Active"), (33, "Active")] for s in range(3)})


# ----- planning (pure) -----------------------------------------------------------------------------


def test_each_shard_is_taken_on_a_node_holding_an_active_replica_of_it():
    assert logic.plan_shards(FACTOR_1, NODES) == ({0: "22", 1: "33", 2: "11"}, {})


def test_among_several_holders_the_least_loaded_node_then_the_first_listed_takes_it():
    # A replica of every shard on every node: the shards spread one per node, in spec.endpoints order.
    assert logic.plan_shards(FACTOR_3, NODES)[0] == {0: "11", 1: "22", 2: "33"}
    assert logic.plan_shards(FACTOR_3, {p: NODES[p] for p in ("33", "11", "22")})[0] == {0: "33", 1: "11", 2: "22"}


def test_ties_after_loading_are_broken_by_endpoint_order_deterministically():
    two = view(11, {0: [(22, "Active")], 1: [(11, "Active"), (22, "Active")], 2: [(11, "Active"), (22, "Active")]})
    # shard 0 -> 22 (its only holder); shard 1: 11 (load 0) before 22 (load 1); shard 2: both at 1, 11 listed first.
    assert logic.plan_shards(two, NODES)[0] == {0: "22", 1: "11", 2: "11"}


def test_a_shard_without_an_active_replica_on_an_answering_endpoint_is_missing():
    placement = view(11, {0: [(22, "Active")], 1: [(33, "Dead"), (11, "Partial")], 2: [(11, "Active")]})
    takers, missing = logic.plan_shards(placement, {"11": NODES["11"], "33": NODES["33"]})
    assert takers == {2: "11"}
    assert missing == {0: ["peer 22 (Active)"], 1: ["peer 11 (Partial)", "peer 33 (Dead)"]}


# ----- taking ---------------------------------------------------------------------------------------


def source(points: int = 9) -> FakeSnapshots:
    q = FakeSnapshots()
    q.points["src"], q.views, q.endpoints = points, [FACTOR_1], dict(NODES)
    q.shard_points = {0: 2, 1: 3, 2: 4}
    q.contents["src"] = [{"id": i, "payload": {"n": i}, "vector": [i / 10, 1.0]} for i in range(points)]
    return q


async def test_one_url_that_lacks_shards_is_refused_saying_that_endpoints_lift_it():
    q = source()
    with pytest.raises(logic.SnapshotRefused, match=r"of \[0, 1, 2\] only") as exc:
        await logic.check_coverage(q, "src")
    assert "spec.endpoints" in str(exc.value) and not q.shard_files


async def test_several_endpoints_take_every_shard_on_its_node_under_one_record():
    q = source()
    work = await logic.check_coverage(q, "src", several=True)
    assert isinstance(work, logic.ShardWork) and work.takers == {0: "22", 1: "33", 2: "11"}
    record = await logic.take(q, "src", NOW, work)
    assert record == SnapshotRecord(
        name="src-shards-2030-05-01-12-00-30",
        created_at="2030-05-01T12:00:30Z",
        size_bytes=303,
        points_count=9,
        shards=[0, 1, 2],
        shard_files=[
            ShardFile(shard=0, peer="22", name="src-shard-0-0.snapshot", checksum="sum0", size_bytes=100),
            ShardFile(shard=1, peer="33", name="src-shard-1-1.snapshot", checksum="sum1", size_bytes=101),
            ShardFile(shard=2, peer="11", name="src-shard-2-2.snapshot", checksum="sum2", size_bytes=102),
        ],
        sample=PointSample(points=9, sha256=logic.digest(q.contents["src"])),
    )
    assert sorted(q.shard_files) == [
        (NODES["11"], 2, "src-shard-2-2.snapshot"),
        (NODES["22"], 0, "src-shard-0-0.snapshot"),
        (NODES["33"], 1, "src-shard-1-1.snapshot"),
    ]


async def test_a_node_holding_every_shard_still_takes_one_collection_snapshot():
    q = source()
    q.views, q.peer = [FACTOR_3], "11"
    cover = await logic.check_coverage(q, "src", several=True)
    assert isinstance(cover, logic.Coverage)
    record = await logic.take(q, "src", NOW, cover)
    assert record.shard_files is None and record.peer == "11" and not q.shard_files


@pytest.mark.parametrize(
    ("placement", "nodes", "match"),
    [
        (FACTOR_1, {"11": NODES["11"], "22": NODES["22"]}, r"shard 1 \(replicas: peer 33 \(Active\)\)"),
        (view(11, {0: [(22, "Active")], 1: [(11, "Active")]}, key="tenant"), NODES, "custom sharding"),
    ],
)
async def test_no_partial_backup_when_a_holder_is_not_reachable_or_shards_have_keys(placement, nodes, match):
    q = source()
    q.views, q.endpoints = [placement], nodes
    with pytest.raises(logic.SnapshotRefused, match=match) as exc:
        await logic.check_coverage(q, "src", several=True)
    assert exc.value.reason == "DistributedSnapshotUnsupported" and not q.shard_files


async def test_a_failed_shard_snapshot_deletes_those_already_taken():
    q = source()
    q.fail_shard = 1
    work = await logic.check_coverage(q, "src", several=True)
    with pytest.raises(Exception, match="shard snapshot failed"):
        await logic.take(q, "src", NOW, work)
    assert q.shard_files == {}, "no part of a backup left behind"
    assert f"delete src-shard-0-0.snapshot on {NODES['22']}" in q.calls


# ----- deleting -------------------------------------------------------------------------------------


async def taken() -> tuple[FakeSnapshots, SnapshotRecord]:
    q = source()
    return q, await logic.take(q, "src", NOW, await logic.check_coverage(q, "src", several=True))


async def test_every_shard_file_is_deleted_on_its_node_but_those_kept_or_offsite():
    q, record = await taken()
    assert record.shard_files is not None
    offsite = record.shard_files[2].model_copy(update={"location": "s3://bucket/src-shard-2-2.snapshot"})
    record = record.model_copy(update={"shard_files": [*record.shard_files[:2], offsite]})
    deleted = await logic.delete_record(q, "src", record, keep={"src-shard-1-1.snapshot"})
    assert deleted == ["src-shard-0-0.snapshot"]
    assert set(q.shard_files) == {
        (NODES["33"], 1, "src-shard-1-1.snapshot"),
        (NODES["11"], 2, "src-shard-2-2.snapshot"),
    }


async def test_a_node_no_endpoint_answers_for_keeps_the_record_to_try_again():
    q, record = await taken()
    del q.endpoints["33"]
    with pytest.raises(Waiting, match="on peers 33 cannot be deleted"):
        await logic.delete_record(q, "src", record)
    assert len(q.shard_files) == 3, "nothing deleted while one node cannot be reached"


async def test_delete_policy_removes_every_shard_file_and_shares_by_file_name():
    main = FakeConnection()
    q, record = await taken()
    main.snapshots = q
    status = {"connection": "ns/main", "collectionName": "src", "snapshots": [record.model_dump(by_alias=True)]}
    names = files_of(status)
    assert names == ["src-shard-0-0.snapshot", "src-shard-1-1.snapshot", "src-shard-2-2.snapshot"]
    twin = {"metadata": {"namespace": "ns", "name": "twin"}, "status": status}
    assert held_elsewhere("ns/me", "ns/main", "src", names, [twin]) == set(names)
    collection, deleted = await delete_files(status, FakeConnections({"ns/main": main}))
    assert (collection, deleted, q.shard_files) == ("src", names, {})


# ----- restoring ------------------------------------------------------------------------------------

TARGET_NODES = {"44": "http://127.0.0.1:8004", "55": "http://127.0.0.1:8005"}
TARGET_VIEW = view(44, {0: [(55, "Active")], 1: [(44, "Active")], 2: [(55, "Active"), (44, "Dead")]})
MARKER = "ns/copy/uid-copy"


BODY = {"vectors": {"size": 4, "distance": "Dot"}, "metadata": {mapping.OWNER_KEY: MARKER}}
SINGLE = "http://127.0.0.1:8009"


async def restore_case(
    existing: dict[str, Any] | None = None, points_count: int | None = 9, standalone: bool = False
) -> tuple[FakeSnapshots, FakeQdrant, FakeSnapshots]:
    src, record = await taken()
    record = record.model_copy(update={"points_count": points_count})
    dst, collections = FakeSnapshots(), FakeQdrant()
    dst.views, dst.endpoints = [TARGET_VIEW], dict(TARGET_NODES)
    if standalone:  # one node, cluster disabled: no endpoint names a peer, the node holds every shard
        dst.views, dst.endpoints = [view(77, {s: [(77, "Active")] for s in range(3)})], {}
    dst.shard_files = src.shard_files  # the target's nodes download the files from the source's
    if existing is not None:
        collections.collections["copy"] = existing
    snap = logic.SourceSnapshot("nightly", record, "src", "ns/main")
    target = logic.RestoreTarget("copy", MARKER, existing is not None, "ns/docs")
    await logic.restore_shards(dst, collections, target, snap, on_nodes(src, "key"), BODY, SINGLE)
    return dst, collections, src


async def test_a_new_collection_gets_the_shard_number_and_each_shard_from_its_node():
    dst, collections, _ = await restore_case()
    assert collections.collections["copy"]["config"]["params"]["shard_number"] == 3
    recovers = [c for c in dst.calls if c.startswith("recover")]
    file = "/collections/src/shards/{0}/snapshots/src-shard-{0}-{0}.snapshot sum{0} key"
    assert recovers == [
        f"recover copy shard 0 on {TARGET_NODES['55']} from {NODES['22']}{file.format(0)}",
        f"recover copy shard 1 on {TARGET_NODES['44']} from {NODES['33']}{file.format(1)}",
        f"recover copy shard 2 on {TARGET_NODES['55']} from {NODES['11']}{file.format(2)}",
    ]
    assert dst.points["copy"] == 9


async def test_a_single_node_recovers_every_shard_itself():
    dst, _, _ = await restore_case(standalone=True)
    assert [c.split(" from ")[0] for c in dst.calls if c.startswith("recover")] == [
        f"recover copy shard {shard} on {SINGLE}" for shard in range(3)
    ]
    assert dst.points["copy"] == 9


def existing(shards: int, owner: str) -> dict[str, Any]:
    return {"config": {"params": {"shard_number": shards}, "metadata": {mapping.OWNER_KEY: owner}}}


async def test_in_place_needs_our_collection_with_as_many_shards():
    dst, collections, _ = await restore_case(existing(3, MARKER))
    assert collections.writes == [] and dst.points["copy"] == 9  # recovered in place, nothing created
    with pytest.raises(logic.RestoreFailed, match="has 2 shards and snapshot nightly/src-shards-") as exc:
        await restore_case(existing(2, MARKER))
    assert exc.value.reason == "InvalidSpec" and "shardNumber 3" in str(exc.value)
    with pytest.raises(logic.RestoreFailed, match="not managed by this resource") as exc:
        await restore_case(existing(3, "ns/other/uid"))
    assert exc.value.reason == "AlreadyExists"


async def test_a_restore_is_verified_by_its_point_count():
    with pytest.raises(logic.RestoreFailed, match="holds 9 points after recovering") as exc:
        await restore_case(points_count=10)
    assert exc.value.reason == "RestoreVerificationFailed"


async def test_a_restore_waits_for_the_source_nodes_and_the_target_replicas():
    src, record = await taken()
    del src.endpoints["33"]
    dst, collections = FakeSnapshots(), FakeQdrant()
    dst.views, dst.endpoints = [TARGET_VIEW], dict(TARGET_NODES)
    snap = logic.SourceSnapshot("nightly", record, "src", "ns/main")
    target = logic.RestoreTarget("copy", MARKER, False, "ns/docs")
    with pytest.raises(logic.SourceNotReady, match="on peers 33 cannot be read"):
        await logic.restore_shards(dst, collections, target, snap, on_nodes(src, None), BODY, SINGLE)
    src.endpoints["33"] = NODES["33"]
    dst.views = [view(44, {0: [(55, "Initializing")], 1: [(44, "Active")], 2: [(55, "Active")]})]
    with pytest.raises(logic.SourceNotReady, match=r"shard 0 \(replicas: peer 55 \(Initializing\)\)"):
        await logic.restore_shards(dst, collections, target, snap, on_nodes(src, None), BODY, SINGLE)
    assert not [c for c in dst.calls if c.startswith("recover")], "no shard recovered before every one can be"


async def test_a_scheduled_run_through_every_node_takes_shard_by_shard_and_retention_deletes_old_shard_files():
    q, old = await taken()
    main = FakeConnection(
        spec=QdrantConnectionSpec(endpoints=list(NODES.values())), topology=Topology(peers=(11, 22, 33))
    )
    main.snapshots = q
    source = {"status": {"collectionName": "src", "connection": "ns/main", "appliedGeneration": 1}}
    status = {"collectionName": "src", "connection": "ns/main", "snapshots": [old.model_dump(by_alias=True)]}
    run = SnapshotRun("ns", "nightly", "uid-n", "2030-05-01T00:00:00Z", status)
    spec = {"collectionRef": {"name": "docs"}, "schedule": "@hourly", "retention": {"keepLast": 1}}

    async def report(_: Any) -> None:
        return None

    step = await run.step(
        spec, datetime(2030, 5, 1, 13, 0, 1, tzinfo=UTC), lambda _: source, FakeConnections({"ns/main": main}), report
    )
    (record,) = step.outcome.status.snapshots
    assert record.name == "src-shards-2030-05-01-13-00-01" and record.shards == [0, 1, 2]
    assert sorted(name for _, _, name in q.shard_files) == sorted(f.name for f in record.shard_files or [])
    assert not any(key[2] in logic.file_names(old) for key in q.shard_files), (
        "the old record's files went, each on its node"
    )


# ----- shard files kept in object storage (spec.objectStore) ----------------------------------------

STORED_SPEC = {
    "collectionRef": {"name": "docs"},
    "schedule": "@hourly",
    "retention": {"keepLast": 1},
    "objectStore": {"bucket": "backups", "prefix": "dr", "credentialsSecretRef": {"name": "s3"}},
}


class Stored:
    """A 3-node source listed in spec.endpoints, a CollectionSnapshot with spec.objectStore (obstore's MemoryStore)."""

    def __init__(self) -> None:
        self.q = source()
        self.q.checksums = "real"
        self.main = FakeConnection(
            spec=QdrantConnectionSpec(endpoints=list(NODES.values())), topology=Topology(peers=(11, 22, 33))
        )
        self.main.snapshots = self.q
        self.stores = FakeObjectStores()
        secrets = FakeSecrets({("ns", "s3", "access-key-id"): b"AKID", ("ns", "s3", "secret-access-key"): b"SECRET"})
        self.offsite = logic.Offsite(secrets, self.stores.open)
        self.run = SnapshotRun("ns", "nightly", "uid-n", "2030-05-01T00:00:00Z", {})

    async def step(self, hour: int) -> Any:
        async def report(_: Any) -> None:
            return None

        vc = {"status": {"collectionName": "src", "connection": "ns/main", "appliedGeneration": 1}}
        now = datetime(2030, 5, 1, hour, 0, 1, tzinfo=UTC)
        connections = FakeConnections({"ns/main": self.main})
        return await self.run.step(STORED_SPEC, now, lambda _: vc, connections, report, (), self.offsite)


async def test_every_shard_file_is_streamed_to_the_bucket_with_our_checksum_and_leaves_its_node():
    world = Stored()
    step = await world.step(13)
    assert step.outcome.verdict.reason == "Scheduled", step.outcome.verdict
    (record,) = world.run.records
    prefix = "dr/ns/nightly/src/src-shards-2030-05-01-13-00-01"
    files = record.shard_files or []
    keys = [f"{prefix}/shard-{f.shard}-{f.name}" for f in files]
    assert [f.location for f in files] == [f"s3://backups/{key}" for key in keys]
    assert world.stores.keys("backups") == sorted(keys)
    for f in files:
        data = world.q.shard_bytes[f.name]
        assert (f.checksum, f.size_bytes) == (hashlib.sha256(data).hexdigest(), len(data))
    assert record.size_bytes == sum(f.size_bytes or 0 for f in files) and record.points_count == 9
    assert world.q.shard_files == {}, "every node copy deleted once every file is kept"
    assert record.location is None and logic.locations(record) == [f"s3://backups/{key}" for key in keys]


async def test_a_shard_file_that_fails_on_the_way_keeps_nothing_anywhere():
    world = Stored()
    world.q.download_fails_after = 1  # the first shard file breaks mid-way
    step = await world.step(13)
    assert step.outcome.verdict.state == State.FAILED and "connection broke" in step.outcome.verdict.message
    assert world.run.records == [] and world.stores.keys("backups") == [] and world.q.shard_files == {}


async def test_a_later_shard_file_that_mismatches_deletes_the_objects_already_kept():
    world = Stored()
    original = world.q.create_shard_snapshot

    async def lying(collection: str, shard: int, node: str) -> dict[str, Any]:
        description = await original(collection, shard, node)
        return {**description, "checksum": "0" * 64} if shard == 2 else description

    world.q.create_shard_snapshot = lying  # type: ignore[method-assign]
    step = await world.step(13)
    assert step.outcome.verdict.reason == "SnapshotChecksumMismatch"
    assert world.run.records == [] and world.stores.keys("backups") == [] and world.q.shard_files == {}


async def test_retention_and_delete_policy_delete_the_shard_objects_without_the_nodes():
    world = Stored()
    await world.step(13)
    (first,) = world.run.records
    await world.step(14)
    (second,) = world.run.records
    assert second.name != first.name
    prefix = "dr/ns/nightly/src/src-shards-2030-05-01-14-00-01/"
    assert world.stores.keys("backups") and all(k.startswith(prefix) for k in world.stores.keys("backups"))
    status = {"collectionName": "src", "connection": "ns/gone", "snapshots": [second.model_dump(by_alias=True)]}
    # The source cluster's connection is gone: nothing is on a node, so it is not needed.
    assert await delete_files(status, FakeConnections({})) == ("src", [])
    deleted = await delete_objects(status, STORED_SPEC, "ns", world.offsite)
    assert deleted == logic.locations(second) and world.stores.keys("backups") == []


async def test_a_restore_recovers_each_shard_from_a_presigned_url_with_its_checksum_and_no_api_key():
    world = Stored()
    await world.step(13)
    (record,) = world.run.records
    status = {"collectionName": "src", "connection": "ns/gone", "snapshots": [record.to_wire()]}
    body = {"spec": STORED_SPEC, "status": status}
    target = FakeConnection(name="dr")
    dst = target.snapshots
    dst.views, dst.endpoints = [TARGET_VIEW], dict(TARGET_NODES)
    dst.shard_bytes = world.q.shard_bytes  # what the objects hold (the fake Qdrant reads them by file name)
    spec = VectorCollectionSpec.model_validate(
        collection_spec(source={"snapshot": {"snapshotRef": {"name": "nightly"}}})
    )
    req = Target("ns", "copy", "uid-copy", 1, {"connectionRef": {"name": "dr"}})
    tracker = restore.RestoreTracker()
    # No connection of the source cluster exists: the files are reached in the bucket only.
    args = (req, spec, "copy", target, tracker, FakeConnections({}), FakeSecrets({}), lambda _: body, world.offsite)
    first, _ = await restore.restore_step(*args)
    assert first is not None and first.verdict.reason == "Restoring", first
    await tracker.running[req.key].task
    done, restored = await restore.restore_step(*args)
    assert done is None and restored == f"nightly/{record.name}"
    assert target.collections.collections["copy"]["config"]["params"]["shard_number"] == 3
    recovers = [c for c in dst.calls if c.startswith("recover")]
    assert len(recovers) == 3 and dst.points["copy"] == 9
    for line, f in zip(recovers, record.shard_files or [], strict=True):
        key = f"dr/ns/nightly/src/{record.name}/shard-{f.shard}-{f.name}"
        assert line.startswith(f"recover copy shard {f.shard} on ") and f"https://s3.example/backups/{key}?" in line
        assert line.endswith(f"&X-Amz-Signature=SIGNATURE {f.checksum} None"), "our checksum, no api_key"
    assert "SIGNATURE" not in first.verdict.message


# ----- restore drills of a record taken shard by shard (spec.verify) ---------------------------------

VERIFIED_AT = datetime(2030, 5, 1, 13, 30, 1, tzinfo=UTC)
SRC_VECTORS = {"size": 2, "distance": "Cosine"}


def with_drill(spec: dict[str, Any]) -> dict[str, Any]:
    return {**spec, "verify": {"schedule": "30 * * * *"}}


async def drilled(world: Stored, spec: dict[str, Any]) -> Any:
    """One snapshot at 13:00, then its drill at 13:30, on the source's own connection (`world.main`)."""

    async def report(_: Any) -> None:
        return None

    vc = {"status": {"collectionName": "src", "connection": "ns/main", "appliedGeneration": 1}}
    connections = FakeConnections({"ns/main": world.main})
    await world.run.step(
        spec, datetime(2030, 5, 1, 13, 0, 1, tzinfo=UTC), lambda _: vc, connections, report, (), world.offsite
    )
    assert world.run.records and world.run.records[-1].shard_files
    world.main.collections.collections["src"] = {"config": {"params": {"vectors": SRC_VECTORS, "shard_number": 3}}}
    world.q.calls.clear()
    return await world.run.step(spec, VERIFIED_AT, lambda _: vc, connections, report, (), world.offsite)


def on_node_world() -> Stored:
    world = Stored()
    world.main.api_key = "key"
    return world


async def test_a_drill_recovers_each_shard_from_its_node_into_a_scratch_with_the_sources_vectors():
    world = on_node_world()
    spec = with_drill({k: v for k, v in STORED_SPEC.items() if k != "objectStore"})
    step = await drilled(world, spec)
    (record,) = world.run.records
    verification = step.drilled
    assert verification is not None and verification.result == "Succeeded", verification
    assert (verification.points_count, verification.sampled_points) == (9, 9), "count and sample compared"
    scratch = "~drill-uid-n"
    created = world.main.collections.collections[scratch]["config"]
    assert created["params"]["vectors"] == SRC_VECTORS and created["params"]["shard_number"] == 3
    assert created["metadata"] == {mapping.OWNER_KEY: "ns/nightly/uid-n"}
    recovers = [c for c in world.q.calls if c.startswith("recover")]
    assert recovers == [
        f"recover {scratch} shard {f.shard} on {NODES[f.peer]} from {logic.shard_location(NODES[f.peer], 'src', f)} "
        f"{f.checksum} key"
        for f in record.shard_files or []
    ], "each file from its node, with the connection's key"
    assert world.q.calls[-1] == f"delete {scratch}" and scratch not in world.q.points, "the scratch goes"
    assert world.main.collections.writes == [f"create {scratch}"], "the source is only read"
    assert world.q.points["src"] == 9


async def test_a_drill_of_shard_files_in_the_bucket_recovers_them_from_presigned_urls_without_a_key():
    world = on_node_world()
    step = await drilled(world, with_drill(STORED_SPEC))
    assert step.drilled is not None and step.drilled.result == "Succeeded", step.drilled
    recovers = [c for c in world.q.calls if c.startswith("recover")]
    assert len(recovers) == 3 and all("X-Amz-Signature=SIGNATURE" in c and c.endswith(" None") for c in recovers)
    assert "SIGNATURE" not in step.drilled.message and "~drill-uid-n" not in world.q.points


@pytest.mark.parametrize(("damage", "reason"), [("lost", "SnapshotUnrestorable"), ("corrupted", "SampleMismatch")])
async def test_a_drill_of_a_damaged_shard_record_fails_and_still_deletes_its_scratch(damage, reason):
    world = on_node_world()
    spec = with_drill({k: v for k, v in STORED_SPEC.items() if k != "objectStore"})
    original = world.q.create_shard_snapshot

    async def damaging(collection: str, shard: int, node: str) -> dict[str, Any]:
        description = await original(collection, shard, node)
        if shard == 1 and damage == "lost":  # the file went from its node after the record was made
            world.q.shard_files.pop((node, shard, description["name"]))
        elif shard == 1:  # same count, another vector
            world.q.contents[description["name"]][0]["vector"] = [9.0, 9.0]
        return description

    world.q.create_shard_snapshot = damaging  # type: ignore[method-assign]
    step = await drilled(world, spec)
    assert step.drilled is not None and step.drilled.result == "Failed"
    assert [a.reason for a in step.outcome.aspects] == [reason], step.drilled.message
    assert world.q.calls[-1] == "delete ~drill-uid-n" and "~drill-uid-n" not in world.q.points
    assert world.q.points["src"] == 9


async def test_a_drill_without_the_source_collection_to_read_its_vectors_from_is_no_verdict():
    world = on_node_world()
    spec = with_drill({k: v for k, v in STORED_SPEC.items() if k != "objectStore"})
    world.main.collections.collections.clear()
    original = world.main.collections.get_collection

    async def gone(name: str) -> dict[str, Any] | None:
        return None if name == "src" else await original(name)

    world.main.collections.get_collection = gone  # type: ignore[method-assign]
    step = await drilled(world, spec)
    assert step.drilled is None and step.outcome.verdict.reason == "CollectionNotReady", step.outcome.verdict
    assert "vectors of collection src" in step.outcome.verdict.message
    assert not [c for c in world.q.calls if c.startswith("recover")]
