"""CollectionSnapshot logic: schedule evaluation with an injected clock, retention, restore sources, and
taking / restoring through a fake gateway. No sleeps, no network."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from collection_operator.api.collection import VectorCollectionSpec
from collection_operator.api.snapshot import PointSample, Retention, SnapshotRecord
from collection_operator.qdrant import Topology
from collection_operator.qdrant.calls import SnapshotTurns
from collection_operator.reconcile import restore
from collection_operator.reconcile import snapshot as logic
from collection_operator.reconcile.outcome import Stalling
from collection_operator.reconcile.snapshot_step import SnapshotRun, delete_files, held_elsewhere
from collection_operator.reconcile.target import Target
from tests.builders import collection_spec
from tests.fakes import FakeConnection, FakeConnections, FakeObjectStores, FakeSecrets, FakeSnapshots

CREATED = datetime(2030, 5, 1, 12, 0, 30, tzinfo=UTC)
OFFSITE = logic.Offsite(FakeSecrets(), FakeObjectStores().open)


def at(text: str) -> datetime:
    return logic.parse_time(text)


# ----- schedule -----------------------------------------------------------------------------------


def test_one_off_is_taken_until_completed():
    assert logic.plan(None, None, None, CREATED, CREATED) == logic.Step(take=True)
    assert logic.plan(None, "Failed", None, CREATED, CREATED) == logic.Step(take=True)
    assert logic.plan(None, "Completed", "2030-05-01T12:00:31Z", CREATED, CREATED) == logic.Step(take=False)


def test_first_scheduled_run_is_the_first_slot_after_creation():
    step = logic.plan("0 3 * * *", None, None, CREATED, CREATED + timedelta(minutes=1))
    assert step == logic.Step(take=False, due=at("2030-05-02T03:00:00Z"))
    assert logic.plan("0 3 * * *", None, None, CREATED, at("2030-05-02T03:00:00Z")).take


def test_missed_slots_after_downtime_are_caught_up_once():
    last = "2030-05-01T12:01:00Z"
    down_for_an_hour = at("2030-05-01T13:01:05Z")
    assert logic.plan("* * * * *", "Completed", last, CREATED, down_for_an_hour).take
    # The run records lastSnapshotTime = now; the next slot is then in the future, not the 59 missed ones.
    after_catch_up = logic.plan("* * * * *", "Completed", "2030-05-01T13:01:05Z", CREATED, down_for_an_hour)
    assert after_catch_up == logic.Step(take=False, due=at("2030-05-01T13:02:00Z"))


def test_macros_and_invalid_expressions():
    assert logic.next_run("@daily", CREATED) == at("2030-05-02T00:00:00Z")
    with pytest.raises(logic.InvalidSchedule, match="not a valid cron expression"):
        logic.next_run("61 * * * *", CREATED)
    with pytest.raises(logic.InvalidSchedule):
        logic.plan("* * * * mon-xyz", None, None, CREATED, CREATED)


# ----- retention ----------------------------------------------------------------------------------


def records(*hours_ago: int, now: datetime = CREATED) -> list[SnapshotRecord]:
    return [SnapshotRecord(name=f"s{h}", created_at=logic.format_time(now - timedelta(hours=h))) for h in hours_ago]


def names(rs: list[SnapshotRecord]) -> list[str]:
    return [r.name for r in rs]


def test_keep_last_drops_the_oldest():
    rs = records(1, 5, 3, 2)
    assert names(logic.expired(rs, Retention(keep_last=2), CREATED)) == ["s5", "s3"]
    assert logic.expired(rs, Retention(keep_last=10), CREATED) == []
    assert logic.expired(rs, None, CREATED) == []


def test_max_age_and_both_together():
    rs = records(1, 30, 50, 2)
    assert names(logic.expired(rs, Retention(max_age_hours=24), CREATED)) == ["s30", "s50"]
    assert names(logic.expired(rs, Retention(keep_last=3, max_age_hours=40), CREATED)) == ["s50"]


def test_the_newest_snapshot_is_always_kept():
    rs = records(100, 200)
    assert names(logic.expired(rs, Retention(max_age_hours=1), CREATED)) == ["s200"]


# ----- restore sources ----------------------------------------------------------------------------


def snapshot_body(*recs: dict[str, Any]) -> dict[str, Any]:
    return {
        "spec": {"collectionRef": {"name": "docs"}},
        "status": {"collectionName": "src", "connection": "qdrant/main", "snapshots": list(recs)},
    }


def test_restore_annotation_format():
    assert logic.parse_restore_annotation("nightly/src-1.snapshot") == ("nightly", "src-1.snapshot")
    for bad in ("nightly", "/x", "nightly/", "a/b/c"):
        with pytest.raises(Stalling, match="snapshotResource"):
            logic.parse_restore_annotation(bad)


def test_source_is_the_named_or_the_newest_snapshot():
    body = snapshot_body(
        {"name": "a", "createdAt": "2030-05-01T00:00:00Z", "pointsCount": 3},
        {"name": "b", "createdAt": "2030-05-02T00:00:00Z", "checksum": "c"},
    )
    newest = logic.source_snapshot("nightly", body, None)
    assert (newest.record.name, newest.ref, newest.collection, newest.connection) == (
        "b",
        "nightly/b",
        "src",
        "qdrant/main",
    )
    assert logic.source_snapshot("nightly", body, "a").record.points_count == 3
    assert newest.location("http://q:6333/") == "http://q:6333/collections/src/snapshots/b"


@pytest.mark.parametrize(
    ("body", "name", "reason"),
    [
        (None, None, "SnapshotNotFound"),
        ({"status": {}}, None, "SnapshotNotReady"),
        (snapshot_body({"name": "a"}), "zzz", "SnapshotNotFound"),
    ],
)
def test_unusable_sources(body, name, reason):
    with pytest.raises(logic.SourceNotReady) as err:
        logic.source_snapshot("nightly", body, name)
    assert err.value.reason == reason


# ----- Qdrant work through a fake gateway ---------------------------------------------------------


async def test_take_records_points_and_time():
    q = FakeSnapshots()
    q.points["src"] = 7
    record = await logic.take(q, "src", CREATED)
    assert record == SnapshotRecord(
        name="src-0.snapshot",
        created_at="2030-05-01T12:00:30Z",
        size_bytes=1024,
        checksum="abc",
        points_count=7,
        sample=PointSample(points=0, sha256=logic.digest([])),
    )
    q.write_during_snapshot = 1
    assert (await logic.take(q, "src", CREATED)).points_count is None, "a racing write makes the count unknown"
    with pytest.raises(logic.SourceNotReady, match="does not exist"):
        await logic.take(q, "missing", CREATED)


def cluster_view(peer: int, local: dict[int, str], remote: dict[int, list[tuple[int, str]]]) -> dict[str, Any]:
    """GET /collections/{name}/cluster as node `peer` answers it."""
    return {
        "peer_id": peer,
        "shard_count": len(set(local) | set(remote)),
        "local_shards": [{"shard_id": s, "state": state} for s, state in local.items()],
        "remote_shards": [{"shard_id": s, "peer_id": p, "state": st} for s, reps in remote.items() for p, st in reps],
    }


EVERY_SHARD = cluster_view(11, {0: "Active", 1: "Active", 2: "Active"}, {0: [(22, "Active")], 1: [(33, "Active")]})


def test_coverage_names_the_shards_the_node_lacks():
    cover = logic.coverage(cluster_view(11, {1: "Active", 2: "Partial"}, {0: [(22, "Active")], 2: [(33, "Active")]}))
    assert (cover.peer, cover.shards, cover.complete) == ("11", [0, 1, 2], False)
    assert cover.elsewhere == {0: ["22 (Active)"], 2: ["here (Partial)", "33 (Active)"]}
    assert logic.coverage(EVERY_SHARD).complete


async def test_a_distributed_snapshot_is_refused_unless_the_node_holds_every_shard():
    q = FakeSnapshots()
    q.points["src"] = 7
    q.views = [cluster_view(11, {2: "Active"}, {0: [(22, "Active")], 1: [(33, "Active")]})]
    with pytest.raises(
        logic.SnapshotRefused, match=r"peer 11\) holds Active replicas of shards \[2\] of \[0, 1, 2\]"
    ) as exc:
        await logic.check_coverage(q, "src")
    assert exc.value.reason == "DistributedSnapshotUnsupported" and "shard 0 on 22 (Active)" in str(exc.value)
    assert not q.snapshots, "nothing was taken"
    with pytest.raises(logic.SourceNotReady):
        await logic.check_coverage(q, "missing")


async def test_a_complete_distributed_snapshot_records_its_node_and_shards():
    q = FakeSnapshots()
    q.points["src"], q.peer, q.views = 7, "11", [EVERY_SHARD]
    record = await logic.take(q, "src", CREATED, await logic.check_coverage(q, "src"))
    assert (record.name, record.peer, record.shards, record.points_count) == ("src-11-0.snapshot", "11", [0, 1, 2], 7)


@pytest.mark.parametrize(
    ("peer", "after", "match"),
    [
        ("22", EVERY_SHARD, "another node wrote snapshot src-22-0.snapshot"),  # a load balancer
        ("11", cluster_view(11, {0: "Active", 1: "Active"}, {2: [(22, "Active")]}), r"shards \[0, 1\] of"),
    ],
)
async def test_a_snapshot_that_turns_out_partial_is_deleted_and_refused(peer, after, match):
    q = FakeSnapshots()
    q.points["src"], q.peer, q.views = 7, peer, [EVERY_SHARD, after]
    cover = await logic.check_coverage(q, "src")
    with pytest.raises(logic.SnapshotRefused, match=match):
        await logic.take(q, "src", CREATED, cover)
    assert not q.snapshots, "the file was deleted"


async def restore_case(q: FakeSnapshots, *, in_place: bool = False, points_count: int | None = 7) -> None:
    q.snapshots["s.snapshot"] = 7
    source = logic.SourceSnapshot(
        "nightly", SnapshotRecord(name="s.snapshot", checksum="abc", points_count=points_count), "src", "ns/main"
    )
    target = logic.RestoreTarget("copy", "ns/copy/uid-copy", in_place, "ns/docs")
    await logic.restore(q, target, source, source.location("http://q:6333"), "key")


async def test_restore_recovers_claims_and_verifies():
    q = FakeSnapshots()
    await restore_case(q)
    assert q.calls == ["recover copy s.snapshot abc key", "owner copy ns/copy/uid-copy"]
    assert q.points["copy"] == 7


async def test_restore_refuses_a_collection_that_is_not_ours():
    q = FakeSnapshots()
    q.points["copy"], q.owners["copy"] = 3, "other/thing/uid"
    with pytest.raises(logic.RestoreFailed) as err:
        await restore_case(q)
    assert err.value.reason == "AlreadyExists" and q.calls == []
    q.owners["copy"] = None  # unmarked: made by hand, not ours either
    with pytest.raises(logic.RestoreFailed, match="is not managed by this resource"):
        await restore_case(q, in_place=True)


async def test_restore_over_ours_or_an_interrupted_restore():
    q = FakeSnapshots()
    q.points["copy"], q.owners["copy"] = 3, "ns/copy/uid-copy"
    await restore_case(q, in_place=True)
    q.owners["copy"] = "ns/docs/uid-src"  # recovered, then the operator stopped before claiming it
    await restore_case(q)
    assert q.owners["copy"] == "ns/copy/uid-copy"


async def test_restore_verification_mismatch_is_reported():
    q = FakeSnapshots()
    with pytest.raises(logic.RestoreFailed) as err:
        await restore_case(q, points_count=8)
    assert err.value.reason == "RestoreVerificationFailed" and "holds 7 points" in str(err.value)
    await restore_case(FakeSnapshots(), points_count=None)  # count unknown when taken: nothing to verify


@pytest.mark.parametrize(
    ("record", "stalled"),
    [
        ({"name": "s.snapshot"}, True),  # a cluster snapshot from before the shard check: nothing to verify
        ({"name": "s.snapshot", "pointsCount": 7}, False),  # the count verifies it
        ({"name": "s.snapshot", "peer": "11", "shards": [0, 1, 2]}, False),
    ],
)
async def test_a_restore_refuses_an_unverifiable_cluster_snapshot(record, stalled):
    main = FakeConnection(topology=Topology(peers=(11, 22, 33)))
    main.snapshots.points["src"], main.snapshots.snapshots["s.snapshot"] = 7, 7
    body = {
        "spec": {"collectionRef": {"name": "docs"}},
        "status": {"collectionName": "src", "connection": "ns/main", "snapshots": [record]},
    }
    spec = VectorCollectionSpec.model_validate(
        collection_spec(source={"snapshot": {"snapshotRef": {"name": "nightly"}}})
    )
    req = Target("ns", "copy", "uid-copy", 1, {"connectionRef": {"name": "main"}})
    tracker = restore.RestoreTracker()
    outcome, _ = await restore.restore_step(
        req, spec, "copy", main, tracker, FakeConnections({"ns/main": main}), FakeSecrets(), lambda _: body, OFFSITE
    )
    try:
        assert outcome is not None
        assert (outcome.verdict.reason == "DistributedSnapshotUnsupported") is stalled, outcome.verdict
        assert bool(tracker.running) is not stalled
    finally:
        await tracker.aclose()


async def test_a_restore_reads_only_through_a_connection_its_namespace_may_use():
    """A snapshot whose status names another namespace's connection (written by hand) restores nothing."""
    main, theirs = FakeConnection(), FakeConnection(namespace="team-a", name="private")
    theirs.snapshots.points["secret"], theirs.snapshots.snapshots["s.snapshot"] = 7, 7
    body = {
        "spec": {"collectionRef": {"name": "docs"}},
        "status": {"collectionName": "secret", "connection": "team-a/private", "snapshots": [{"name": "s.snapshot"}]},
    }
    spec = VectorCollectionSpec.model_validate(
        collection_spec(source={"snapshot": {"snapshotRef": {"name": "nightly"}}})
    )
    req = Target("ns", "copy", "uid-copy", 1, {"connectionRef": {"name": "main"}})
    tracker = restore.RestoreTracker()
    connections = FakeConnections({"ns/main": main, "team-a/private": theirs})
    outcome, _ = await restore.restore_step(
        req, spec, "copy", main, tracker, connections, FakeSecrets(), lambda _: body, OFFSITE
    )
    assert outcome is not None and outcome.verdict.reason == "ConnectionNotAllowed", outcome
    assert not tracker.running and main.snapshots.calls == []


# ----- shared file names --------------------------------------------------------------------------


def _snapshot_body(ns: str, name: str, connection: str, collection: str, *files: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name},
        "status": {"connection": connection, "collectionName": collection, "snapshots": [{"name": f} for f in files]},
    }


def test_a_file_another_resource_records_is_held_elsewhere():
    bodies = [
        _snapshot_body("ns", "me", "ns/main", "src", "a", "b"),  # itself: never counts
        _snapshot_body("ns", "twin", "ns/main", "src", "b", "c"),  # same second, same name: b is shared
        _snapshot_body("other", "far", "ns/main", "src", "a"),  # another namespace, same collection: a too
        _snapshot_body("ns", "elsewhere", "ns/main", "dst", "x"),  # another collection: not the same file
        _snapshot_body("ns", "other-qdrant", "ns/backup", "src", "y"),
        {"metadata": {"namespace": "ns", "name": "new"}},  # no status yet
    ]
    assert held_elsewhere("ns/me", "ns/main", "src", ["a", "b"], bodies) == {"a", "b"}
    assert held_elsewhere("ns/twin", "ns/main", "src", ["b", "c"], bodies) == {"b"}
    assert held_elsewhere("ns/elsewhere", "ns/main", "dst", ["x"], bodies) == set()
    assert held_elsewhere("ns/other-qdrant", "ns/backup", "src", ["y"], bodies) == set()


async def test_delete_files_keeps_what_another_resource_holds():
    main = FakeConnection()
    main.snapshots.snapshots.update({"a": 1, "b": 1})
    status = {"connection": "ns/main", "collectionName": "src", "snapshots": [{"name": "a"}, {"name": "b"}]}
    collection, deleted = await delete_files(status, FakeConnections({"ns/main": main}), keep={"b"})
    assert (collection, deleted) == ("src", ["a"]) and set(main.snapshots.snapshots) == {"b"}


async def test_snapshots_of_one_collection_take_turns_a_spacing_apart():
    turns, spacing = SnapshotTurns(spacing=0.05), 0.05
    loop = asyncio.get_running_loop()
    spans: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}

    async def snapshot(collection: str) -> None:
        async with turns.turn(collection):
            start = loop.time()
            await asyncio.sleep(0.01)
            spans[collection].append((start, loop.time()))

    await asyncio.gather(*(snapshot(c) for c in "aaab"))
    a = sorted(spans["a"])
    assert all(nxt[0] >= prev[1] + spacing for prev, nxt in itertools.pairwise(a)), a
    assert spans["b"][0][0] < a[1][0], "another collection does not wait for this one's turns"
    await asyncio.sleep(spacing)
    async with turns.turn("c"):
        pass
    assert set(turns._turns) == {"c"}, "collections idle past their spacing are forgotten"


async def test_a_snapshot_is_taken_only_through_a_connection_its_namespace_may_use():
    """A VectorCollection status naming a connection its namespace may not use (written by hand) is no way in."""
    theirs = FakeConnection(namespace="team-a", name="private")
    theirs.snapshots.points["secret"] = 7
    source = {"status": {"collectionName": "secret", "connection": "team-a/private", "appliedGeneration": 1}}
    run = SnapshotRun("ns", "nightly", "uid-n", "2026-01-01T00:00:00Z", {})
    reports: list[Any] = []

    async def report(outcome: Any) -> None:
        reports.append(outcome)

    step = await run.step(
        {"collectionRef": {"name": "docs"}},
        at("2026-01-01T00:00:01Z"),
        lambda _: source,
        FakeConnections({"team-a/private": theirs}),
        report,
    )
    assert step.outcome.verdict.reason == "ConnectionNotAllowed" and reports == []
    assert theirs.snapshots.calls == []
