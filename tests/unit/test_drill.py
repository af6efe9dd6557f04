"""Restore drills (CollectionSnapshot spec.verify): the point sample a snapshot records, the drill's schedule,
its verdicts, its scratch collection and the heavy-change slot, through the fakes. No sleeps, no network."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest

from collection_operator.api.collection import COLLECTION_NAME_PATTERN
from collection_operator.api.connection import QdrantConnectionSpec
from collection_operator.api.snapshot import CollectionSnapshotStatus, VerificationResult
from collection_operator.qdrant.errors import InvalidRequest, Unreachable
from collection_operator.reconcile import drill
from collection_operator.reconcile import snapshot as logic
from collection_operator.reconcile.gates import ConnectionGate
from collection_operator.reconcile.outcome import Aspect, State, Verdict
from collection_operator.reconcile.snapshot_step import Next, SnapshotRun
from collection_operator.reconcile.status import desired_wire
from tests.fakes import FakeConnection, FakeConnections

CREATED = "2030-05-01T00:00:00Z"
SPEC = {"collectionRef": {"name": "docs"}, "schedule": "0 3 * * *", "verify": {"schedule": "0 5 * * *"}}
VC = {"status": {"collectionName": "docs", "connection": "ns/main", "appliedGeneration": 1}}
SCRATCH = "~drill-uid-s"


def points(n: int, tag: str = "a") -> list[dict[str, Any]]:
    return [{"id": i, "payload": {"tag": tag, "n": i}, "vector": [i / 10, 1.0]} for i in range(n)]


def at(text: str) -> datetime:
    return logic.parse_time(text)


class Loop:
    """One CollectionSnapshot's loop over a fake connection holding collection `docs` with 150 points."""

    def __init__(self, spec: dict[str, Any] = SPEC, prefix: bool = False):
        self.main = FakeConnection()
        if prefix:
            self.main.spec = QdrantConnectionSpec(url="http://127.0.0.1:6333", collectionNames={"prefix": "Namespace"})
        self.fake = self.main.snapshots
        self.fake.points["docs"], self.fake.contents["docs"] = 150, points(150)
        self.fake.owners["docs"] = "ns/docs/uid-src"
        self.gates: dict[str, ConnectionGate] = {}
        self.run = SnapshotRun("ns", "nightly", "uid-s", CREATED, {})
        self.spec = spec
        self.connections = FakeConnections({"ns/main": self.main})

    async def step(self, now: str) -> Next:
        async def report(_: Any) -> None:
            return None

        return await self.run.step(self.spec, at(now), lambda _: VC, self.connections, report, (), gates=self.gates)

    async def snapshot_then_drill(self) -> Next:
        taken = await self.step("2030-05-01T03:00:00Z")
        assert taken.outcome.events[0][1] == "SnapshotTaken" and taken.drilled is None
        self.fake.calls.clear()
        return await self.step("2030-05-01T05:00:01Z")


def condition(nxt: Next) -> dict[str, Any]:
    wire = desired_wire(nxt.outcome.status, nxt.outcome.verdict, {}, 1, reconciled=True, aspects=nxt.outcome.aspects)
    return next(c for c in wire["conditions"] if c["type"] == "BackupVerified")


# ----- the sample a snapshot records ---------------------------------------------------------------


def test_the_digest_covers_ids_payloads_and_vectors_not_key_order():
    base = logic.digest(points(3))
    reordered = [
        {"vector": p["vector"], "payload": dict(reversed(p["payload"].items())), "id": p["id"]} for p in points(3)
    ]
    assert logic.digest(reordered) == base
    changed_payload, changed_vector, changed_id = points(3), points(3), points(3)
    changed_payload[1]["payload"]["tag"] = "b"
    changed_vector[2]["vector"][0] = 0.25
    changed_id[0]["id"] = 7
    assert len({base, *map(logic.digest, (changed_payload, changed_vector, changed_id))}) == 4


async def test_a_snapshot_records_the_sample_of_its_first_points():
    loop = Loop()
    await loop.step("2030-05-01T03:00:00Z")
    record = loop.run.records[-1]
    assert record.points_count == 150
    assert record.sample is not None and record.sample.points == logic.SAMPLE_POINTS
    assert record.sample.sha256 == logic.digest(points(150)[: logic.SAMPLE_POINTS])


async def test_no_sample_is_recorded_when_a_write_changes_a_sampled_point_during_the_snapshot():
    loop = Loop()
    create = loop.fake.create_snapshot

    async def racing(collection: str) -> dict[str, Any]:
        description = await create(collection)
        loop.fake.contents["docs"][5]["payload"]["tag"] = "updated"  # same count, another payload
        return description

    loop.fake.create_snapshot = racing  # type: ignore[method-assign]
    await loop.step("2030-05-01T03:00:00Z")
    assert loop.run.records[-1].points_count == 150 and loop.run.records[-1].sample is None


# ----- the scratch collection's name ----------------------------------------------------------------


def test_the_scratch_name_is_no_vectorcollection_name_and_follows_the_connection_prefix():
    plain = Loop().main
    assert drill.scratch_name(plain, "ns", "uid-s") == SCRATCH
    assert not re.match(COLLECTION_NAME_PATTERN, SCRATCH)
    assert drill.scratch_name(Loop(prefix=True).main, "team-a", "uid-s") == "team-a.~drill-uid-s"


# ----- drills ----------------------------------------------------------------------------------------


async def test_a_good_snapshot_verifies_and_its_scratch_collection_goes():
    loop = Loop()
    nxt = await loop.snapshot_then_drill()
    assert nxt.drilled is not None and nxt.drilled.result == VerificationResult.SUCCEEDED
    assert (nxt.drilled.points_count, nxt.drilled.sampled_points) == (150, logic.SAMPLE_POINTS)
    assert nxt.outcome.status.verified_at == "2030-05-01T05:00:01Z"
    assert nxt.outcome.status.last_verification == nxt.drilled
    assert condition(nxt)["status"] == "True" and condition(nxt)["reason"] == "Verified"
    assert nxt.outcome.events == [("Normal", "Verified", nxt.drilled.message)]
    assert nxt.outcome.verdict.reason == "Scheduled", "Ready stays what the snapshots make it"
    assert SCRATCH not in loop.fake.points, "the scratch collection is deleted"
    recovered = f"recover {SCRATCH} {loop.run.records[-1].name}"
    assert loop.fake.calls[0].startswith(recovered) and loop.fake.calls[-1] == f"delete {SCRATCH}"
    assert f"owner {SCRATCH} ns/nightly/uid-s" in loop.fake.calls, "marked with the operator's owner marker"
    assert not [c for c in loop.fake.calls if c.split()[1] == "docs"], "the source collection is never called"
    assert loop.fake.points["docs"] == 150 and loop.fake.contents["docs"] == points(150)


async def test_the_next_drill_waits_for_the_next_slot():
    loop = Loop()
    await loop.snapshot_then_drill()
    loop.fake.calls.clear()
    assert (await loop.step("2030-05-01T05:30:00Z")).drilled is None and loop.fake.calls == []
    assert (await loop.step("2030-05-02T05:00:00Z")).drilled is None, "the snapshot at 03:00 came first"
    again = await loop.step("2030-05-02T05:00:01Z")
    assert again.drilled is not None and again.outcome.events == [], "a pass after a pass is no news"


async def test_no_drill_before_a_snapshot_exists():
    loop = Loop()
    nxt = await loop.step("2030-05-01T02:00:00Z")
    assert nxt.drilled is None and nxt.outcome.aspects == [] and loop.fake.calls == []


@pytest.mark.parametrize(
    ("damage", "reason", "said"),
    [
        ("deleted", "SnapshotUnrestorable", "could not recover snapshot"),
        ("corrupted", "SampleMismatch", "differ from those it held when it was taken"),
        ("truncated", "RestoreVerificationFailed", "which held 150"),
    ],
)
async def test_a_damaged_snapshot_fails_its_drill(damage, reason, said):
    loop = Loop()
    await loop.step("2030-05-01T03:00:00Z")
    name = loop.run.records[-1].name
    if damage == "deleted":
        del loop.fake.snapshots[name]
    elif damage == "corrupted":
        loop.fake.contents[name][3]["vector"] = [9.0, 9.0]
    else:
        loop.fake.snapshots[name] = 120
    nxt = await loop.step("2030-05-01T05:00:01Z")
    assert nxt.drilled is not None and nxt.drilled.result == VerificationResult.FAILED
    assert said in nxt.drilled.message
    assert condition(nxt)["status"] == "False" and condition(nxt)["reason"] == reason
    assert nxt.outcome.events == [("Warning", reason, nxt.drilled.message)]
    assert nxt.outcome.status.verified_at is None
    assert SCRATCH not in loop.fake.points
    assert damage == "deleted" or loop.fake.calls[-1] == f"delete {SCRATCH}", "nothing to delete when none was made"
    assert loop.fake.points["docs"] == 150 and loop.fake.contents["docs"] == points(150)


async def test_a_scratch_collection_left_by_a_crash_is_removed_first():
    for left_by in ("ns/nightly/uid-s", "ns/docs/uid-src"):  # marked, or recovered before the marker was set
        loop = Loop()
        loop.fake.points[SCRATCH], loop.fake.owners[SCRATCH] = 3, left_by
        nxt = await loop.snapshot_then_drill()
        assert loop.fake.calls[0] == f"delete {SCRATCH}", left_by
        assert nxt.drilled is not None and nxt.drilled.result == VerificationResult.SUCCEEDED


async def test_a_collection_not_the_drills_under_the_scratch_name_is_left_alone():
    loop = Loop()
    loop.fake.points[SCRATCH], loop.fake.owners[SCRATCH] = 3, "other/thing/uid-x"
    nxt = await loop.snapshot_then_drill()
    assert nxt.drilled is not None and condition(nxt)["reason"] == "ScratchCollectionTaken"
    assert loop.fake.points[SCRATCH] == 3 and loop.fake.owners[SCRATCH] == "other/thing/uid-x"
    assert not [c for c in loop.fake.calls if c.startswith(("recover", "delete"))]


async def test_a_drill_waits_for_the_connections_heavy_change_slot():
    loop = Loop()
    await loop.step("2030-05-01T03:00:00Z")
    loop.gates["ns/main"] = ConnectionGate(holder="ns/reindexing")
    assert (await loop.step("2030-05-01T05:00:01Z")).drilled is None
    assert not [c for c in loop.fake.calls if c.startswith("recover")]
    loop.gates["ns/main"].release("ns/reindexing")
    assert (await loop.step("2030-05-01T05:00:06Z")).drilled is not None
    assert loop.gates["ns/main"].holder is None, "released after the drill"


async def test_a_connection_outage_is_no_verdict_and_is_retried_after_a_backoff():
    loop = Loop()
    await loop.step("2030-05-01T03:00:00Z")
    loop.main.problem = "Qdrant unreachable"
    loop.fake.calls.clear()
    nxt = await loop.step("2030-05-01T05:00:01Z")
    assert nxt.drilled is None and nxt.outcome.verdict.reason == "ConnectionNotReady" and loop.fake.calls == []
    loop.main.problem = None
    recover = loop.fake.recover

    async def cut_off(collection: str, *args: Any) -> None:
        loop.fake.points[collection], loop.fake.owners[collection] = 0, None  # part way
        raise Unreachable("connection reset")

    loop.fake.recover = cut_off  # type: ignore[method-assign]
    nxt = await loop.step("2030-05-01T05:00:02Z")
    assert nxt.drilled is None and nxt.outcome.aspects == [] and nxt.outcome.verdict.reason == "ConnectionNotReady"
    assert loop.fake.calls[-1] == f"delete {SCRATCH}" and SCRATCH not in loop.fake.points, "it goes on this path too"
    loop.fake.recover = recover  # type: ignore[method-assign]
    assert (await loop.step("2030-05-01T05:00:03Z")).drilled is None, "not before its backoff"
    assert (await loop.step("2030-05-01T05:10:00Z")).drilled is not None


async def test_the_verdict_survives_a_restart_of_the_loop():
    loop = Loop()
    nxt = await loop.snapshot_then_drill()
    wire = desired_wire(nxt.outcome.status, nxt.outcome.verdict, {}, 1, reconciled=True, aspects=nxt.outcome.aspects)
    again = SnapshotRun("ns", "nightly", "uid-s", CREATED, wire)
    assert again.verified == Aspect("BackupVerified", True, "Verified", nxt.drilled.message if nxt.drilled else "")
    assert again.verification == nxt.drilled and again.verified_at == "2030-05-01T05:00:01Z"
    plan = logic.plan(
        "0 5 * * *",
        None,
        again.verification.time if again.verification else None,
        at(CREATED),
        at("2030-05-01T06:00:00Z"),
    )
    assert not plan.take


def test_an_aspect_keeps_its_transition_time_while_its_status_holds():
    verdict, status = Verdict(State.READY, "Scheduled"), CollectionSnapshotStatus()
    first = desired_wire(status, verdict, {}, 1, reconciled=True, aspects=[Aspect("BackupVerified", False, "X", "m")])
    again = desired_wire(
        status, verdict, first, 1, reconciled=True, aspects=[Aspect("BackupVerified", False, "Y", "n")]
    )
    stamp = [c["lastTransitionTime"] for c in first["conditions"] if c["type"] == "BackupVerified"]
    assert [c["lastTransitionTime"] for c in again["conditions"] if c["type"] == "BackupVerified"] == stamp
    assert "BackupVerified" not in [
        c["type"] for c in desired_wire(status, verdict, first, 1, reconciled=True)["conditions"]
    ]


async def test_a_presigned_location_quoted_by_qdrant_is_masked():
    loop = Loop()
    await loop.step("2030-05-01T03:00:00Z")
    signed = "https://s3.example/b/k.snapshot?X-Amz-Credential=AK%2F1&X-Amz-Signature=0123456789abcdef"

    async def refused(*args: Any) -> None:
        raise InvalidRequest(f"Wrong input: Failed to download snapshot from {signed}: 403")

    loop.fake.recover = refused  # type: ignore[method-assign]
    nxt = await loop.step("2030-05-01T05:00:01Z")
    assert nxt.drilled is not None and "Failed to download snapshot" in nxt.drilled.message
    assert "0123456789abcdef" not in nxt.drilled.message and "AK%2F1" not in nxt.drilled.message


async def test_a_snapshot_without_count_or_sample_says_what_it_could_not_compare():
    loop = Loop()
    await loop.step("2030-05-01T03:00:00Z")
    loop.run.records[-1] = loop.run.records[-1].model_copy(update={"points_count": None, "sample": None})
    nxt = await loop.step("2030-05-01T05:00:01Z")
    assert nxt.drilled is not None and nxt.drilled.result == VerificationResult.SUCCEEDED
    assert "150 points (no count recorded" in nxt.drilled.message and "no sample recorded" in nxt.drilled.message
    assert nxt.drilled.sampled_points is None


async def test_a_collection_made_under_the_scratch_name_during_the_drill_is_not_deleted():
    """restore() refuses a collection it did not make (AlreadyExists); the clean-up must not delete it either."""
    loop = Loop()
    await loop.step("2030-05-01T03:00:00Z")
    metadata = loop.fake.metadata
    calls = 0

    async def raced(collection: str) -> dict[str, Any] | None:
        nonlocal calls
        calls += 1
        if collection == SCRATCH and calls == 2:  # after the drill's own check, before restore() looks
            loop.fake.points[SCRATCH], loop.fake.owners[SCRATCH] = 1, "other/thing/uid-x"
        return await metadata(collection)

    loop.fake.metadata = raced  # type: ignore[method-assign]
    nxt = await loop.step("2030-05-01T05:00:01Z")
    assert nxt.drilled is not None and condition(nxt)["reason"] == "ScratchCollectionTaken"
    assert loop.fake.owners[SCRATCH] == "other/thing/uid-x" and f"delete {SCRATCH}" not in loop.fake.calls


async def test_an_unmarked_scratch_left_by_a_failed_recovery_is_deleted():
    loop = Loop()
    await loop.step("2030-05-01T03:00:00Z")

    async def half_done(collection: str, *args: Any) -> None:
        loop.fake.points[collection], loop.fake.owners[collection] = 0, None
        raise InvalidRequest("Wrong input: snapshot archive is truncated")

    loop.fake.recover = half_done  # type: ignore[method-assign]
    nxt = await loop.step("2030-05-01T05:00:01Z")
    assert nxt.drilled is not None and condition(nxt)["reason"] == "SnapshotUnrestorable"
    assert SCRATCH not in loop.fake.points


async def test_an_invalid_verify_schedule_stalls_and_takes_nothing_away():
    loop = Loop({**SPEC, "verify": {"schedule": "61 * * * *"}})
    await loop.step("2030-05-01T03:00:00Z")
    nxt = await loop.step("2030-05-01T05:00:01Z")
    assert nxt.outcome.verdict.state == State.STALLED and "not a valid cron expression" in nxt.outcome.verdict.message
    assert not [c for c in loop.fake.calls if c.startswith("recover")]


async def test_removing_verify_removes_the_condition():
    loop = Loop()
    await loop.snapshot_then_drill()
    loop.spec = {k: v for k, v in SPEC.items() if k != "verify"}
    nxt = await loop.step("2030-05-01T05:00:02Z")
    assert nxt.outcome.aspects == [] and loop.run.verified is None
    assert nxt.outcome.status.last_verification is not None, "the last drill's record stays"
