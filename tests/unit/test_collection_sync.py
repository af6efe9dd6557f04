"""The sync of a VectorCollection against the in-memory Qdrant of tests/fakes.py (pure logic, no network)."""

from __future__ import annotations

import time
from typing import Any

from collection_operator.api import VectorCollectionSpec
from collection_operator.qdrant import Topology
from collection_operator.qdrant.errors import OutcomeUnknown, Unreachable
from collection_operator.reconcile import mapping
from collection_operator.reconcile.collection_sync import sync
from collection_operator.reconcile.gates import Cluster, ConnectionGate
from collection_operator.reconcile.outcome import State
from collection_operator.reconcile.target import APPROVE_PLAN, Target
from tests.builders import collection_spec
from tests.fakes import FakeQdrant


def spec(**fields: Any) -> VectorCollectionSpec:
    return VectorCollectionSpec.model_validate(collection_spec(**fields))


SPEC_REF = {"connectionRef": {"name": "main"}}


def target(name: str = "docs", uid: str = "u1", generation: int = 1, status: dict[str, Any] | None = None) -> Target:
    return Target("ns", name, uid, generation, SPEC_REF, status or {})


async def run(
    q: FakeQdrant,
    s: VectorCollectionSpec,
    t: Target,
    gate: ConnectionGate | None = None,
    alive: tuple[str, ...] = (),
    adoption_allowed: bool = False,
):
    return await sync(
        q,
        s,
        t,
        gate or ConnectionGate(),
        owner_alive=lambda m: m.rsplit("/", 1)[-1] in alive,
        adoption_allowed=adoption_allowed,
    )


async def test_create_then_nothing_to_do():
    q = FakeQdrant()
    first = await run(q, spec(payloadIndexes=[{"field": "k", "type": "Keyword"}], aliases=["a"]), target())
    assert first.verdict.reason == "InSync" and first.reconciled
    assert q.writes == ["create docs", "index docs k", "aliases"]
    assert [e[1] for e in first.events] == ["Created"]
    status = {"appliedGeneration": 1, **first.status.to_patch()}
    q.writes.clear()
    again = await run(q, spec(payloadIndexes=[{"field": "k", "type": "Keyword"}], aliases=["a"]), target(status=status))
    assert q.writes == [] and again.events == [] and again.qdrant_writes == 0


async def test_lost_create_reply_is_resolved_by_the_marker():
    q = FakeQdrant()
    q.fail_create = OutcomeUnknown("read timed out")
    outcome = await run(q, spec(), target())
    assert outcome.verdict.reason == "InSync"
    assert q.writes == ["create docs"]


async def test_a_new_resource_creates_without_looking_first_and_never_overwrites():
    q = FakeQdrant()
    await run(q, spec(hnsw={"m": 8}), target("first", uid="u1"))
    reads: list[str] = []
    original = q.get_collection

    async def counted(name: str) -> dict[str, Any] | None:
        reads.append(name)
        return await original(name)

    q.get_collection = counted  # type: ignore[method-assign]
    await run(q, spec(collectionName="new"), target("new", uid="u2"))
    assert reads == ["new"]  # once, after the create, for status
    refused = await run(q, spec(collectionName="first", hnsw={"m": 32}), target("other", uid="u3"))
    assert refused.verdict.reason == "AlreadyExists" and refused.create_conflicts == 1
    assert q.collections["first"]["config"]["hnsw_config"]["m"] == 8


async def test_reindexing_changes_go_one_at_a_time_per_connection():
    q, gate = FakeQdrant(), ConnectionGate()
    for name in ("a", "b"):
        await run(q, spec(collectionName=name), target(name, uid=name), gate)
    status = {"appliedGeneration": 1}
    first = await run(q, spec(collectionName="a", hnsw={"m": 32}), target("a", "a", 2, status), gate)
    assert first.verdict.reason == "Optimizing" and first.requeue_after  # Qdrant is yellow now
    second = await run(q, spec(collectionName="b", hnsw={"m": 32}), target("b", "b", 2, status), gate)
    assert second.verdict.reason == "Optimizing" and "in flight (ns/a)" in second.verdict.message
    assert q.collections["b"]["config"]["hnsw_config"]["m"] == 16  # held back
    q.collections["a"]["status"] = "green"
    assert (await run(q, spec(collectionName="a", hnsw={"m": 32}), target("a", "a", 2, status), gate)).reconciled
    assert gate.holder is None
    await run(q, spec(collectionName="b", hnsw={"m": 32}), target("b", "b", 2, status), gate)
    assert q.collections["b"]["config"]["hnsw_config"]["m"] == 32


async def test_vectors_are_added_first_and_removed_last():
    q = FakeQdrant()
    a, b = ({"name": n, "size": 4, "distance": "Dot"} for n in ("a", "b"))
    first = await run(q, spec(vectors=[a, b], aliases=["x"]), target())
    status = {"appliedGeneration": 1, **first.status.to_patch()}
    q.writes.clear()
    c = {"name": "c", "size": 8, "distance": "Cosine", "hnsw": {"m": 8}}
    changed = spec(vectors=[a, c], payloadIndexes=[{"field": "k", "type": "Keyword"}], aliases=["x", "y"])

    stalled = await run(q, changed, target(generation=2, status=status))  # a server older than 1.18
    assert (stalled.verdict.state, stalled.verdict.reason) == ("Stalled", "ImmutableFieldChanged")
    assert q.writes == []

    outcome = await sync(
        q, changed, target(generation=2, status=status), ConnectionGate(), lambda _: False, in_place_vectors=True
    )
    # The PATCH sets the new vector's HNSW, so the vector exists first; nothing is deleted before all else went through.
    assert q.writes == [
        "add vector docs c",
        "update docs ['vectors']",
        "index docs k",
        "aliases",
        "remove vector docs b",
    ]
    assert outcome.qdrant_writes == 5 and outcome.verdict.reason == "InSync" and outcome.reconciled
    message = "added vector c to docs; removed vector b from docs (its data is gone)"
    assert ("Warning", "VectorsChanged", message) in outcome.events
    assert q.collections["docs"]["config"]["params"]["vectors"] == {
        "a": {"size": 4, "distance": "Dot"},
        "c": {"size": 8, "distance": "Cosine", "hnsw_config": {"m": 8}},
    }
    q.writes.clear()
    done = {"appliedGeneration": 2, **outcome.status.to_patch()}
    again = await sync(
        q, changed, target(generation=2, status=done), ConnectionGate(), lambda _: False, in_place_vectors=True
    )
    assert q.writes == [] and again.events == [] and again.verdict.reason == "InSync"


async def test_manual_approval_holds_a_plan_that_removes_a_vector():
    q = FakeQdrant()
    a, b = ({"name": n, "size": 4, "distance": "Dot"} for n in ("a", "b"))
    manual = {"changePolicy": {"approval": "Manual"}}
    first = await run(q, spec(vectors=[a, b], **manual), target())
    status = {"appliedGeneration": 1, **first.status.to_patch()}
    c = {"name": "c", "size": 8, "distance": "Cosine"}

    def gen(n: int, approved: str | None = None) -> Target:
        return Target("ns", "docs", "u1", n, SPEC_REF, status, {APPROVE_PLAN: approved} if approved else {})

    added = await sync(
        q, spec(vectors=[a, b, c], **manual), gen(2), ConnectionGate(), lambda _: False, in_place_vectors=True
    )
    assert added.verdict.reason == "InSync", "adding a vector destroys nothing: no approval"
    assert added.status.plan is not None and added.status.plan.actions == [
        "add vector c {'size': 8, 'distance': 'Cosine'}"
    ]
    status = {"appliedGeneration": 2, **added.status.to_patch()}
    q.writes.clear()
    held = await sync(
        q, spec(vectors=[a, c], **manual), gen(3), ConnectionGate(), lambda _: False, in_place_vectors=True
    )
    assert held.verdict.reason == "AwaitingApproval" and q.writes == []
    assert held.status.plan is not None and held.status.plan.actions == ["remove vector b and its data"]
    approved = held.status.plan.hash
    done = await sync(
        q, spec(vectors=[a, c], **manual), gen(3, approved), ConnectionGate(), lambda _: False, in_place_vectors=True
    )
    assert done.verdict.reason == "InSync" and q.writes == ["remove vector docs b"]
    assert [e[1] for e in done.events] == ["PlanApproved", "VectorsChanged"]


async def test_report_policy_does_not_recreate_a_deleted_collection():
    q = FakeQdrant()
    outcome = await run(q, spec(driftPolicy="Report"), target(status={"appliedGeneration": 1}))
    assert outcome.verdict.state == "Stalled" and outcome.verdict.reason == "CollectionMissing"
    assert q.writes == []


async def test_recreated_under_enforce_with_a_warning():
    q = FakeQdrant()
    outcome = await run(q, spec(), target(status={"appliedGeneration": 1}))
    assert q.writes == ["create docs"]
    assert outcome.events[0][:2] == ("Warning", "Recreated")


async def test_conflict_only_while_the_owner_lives():
    q = FakeQdrant()
    await run(q, spec(), target("first", uid="u1"))
    conflict = await run(q, spec(collectionName="first", onExisting="Adopt"), target("second", uid="u2"), alive=("u1",))
    assert conflict.verdict.reason == "ResourceConflict" and "ns/first" in conflict.verdict.message
    refused = await run(q, spec(collectionName="first"), target("second", uid="u2"))
    assert refused.verdict.reason == "AlreadyExists"
    adopted = await run(q, spec(collectionName="first", onExisting="Adopt"), target("second", uid="u2"))
    assert adopted.verdict.reason == "InSync"
    assert q.collections["first"]["config"]["metadata"][mapping.OWNER_KEY] == "ns/second/u2"


async def test_unreachable_is_connection_not_ready_and_requeued():
    class Down(FakeQdrant):
        async def get_collection(self, name: str) -> dict[str, Any] | None:
            raise Unreachable("connection refused")

    outcome = await run(Down(), spec(), target())
    assert (outcome.verdict.reason, outcome.requeue_after) == ("ConnectionNotReady", 10.0)
    assert not outcome.reconciled


async def test_a_collection_still_optimizing_after_create_is_not_created_again():
    q = FakeQdrant()
    q.created_status = "yellow"  # Qdrant still building what the create asked for
    first = await run(q, spec(), target())
    assert first.verdict.reason == "Optimizing" and not first.reconciled
    q.collections["docs"]["status"] = "green"
    second = await run(q, spec(), target(status=first.status.to_patch()))
    assert second.verdict.reason == "InSync"
    assert q.create_attempts == 1


async def test_an_alias_that_is_a_collection_name_stalls_before_any_write():
    q = FakeQdrant()
    await run(q, spec(), target("other", uid="u0"))  # a collection named "other"
    q.writes.clear()
    for alias in ("other", "docs"):  # another collection's name, and the collection's own
        outcome = await run(q, spec(aliases=[alias]), target())
        assert (outcome.verdict.state, outcome.verdict.reason) == ("Stalled", "AliasConflict")
        assert alias in outcome.verdict.message and not outcome.requeue_after
    assert q.writes == []


async def test_an_alias_held_by_another_collection_stalls_and_nothing_is_written():
    q = FakeQdrant()
    await run(q, spec(), target(status={"appliedGeneration": 1}))
    q.aliases["taken"] = "elsewhere"
    q.writes.clear()
    outcome = await run(
        q, spec(aliases=["taken"], hnsw={"m": 32}), target(generation=2, status={"appliedGeneration": 1})
    )
    assert outcome.verdict.reason == "AliasConflict" and "alias of elsewhere" in outcome.verdict.message
    assert q.writes == [], "not even the in-place change: nothing until the conflict is resolved"


async def test_a_conflicting_resource_looks_instead_of_creating_on_every_resync():
    q = FakeQdrant()
    await run(q, spec(), target("first", uid="u1"))
    conflict = await run(q, spec(collectionName="first"), target("second", uid="u2"), alive=("u1",))
    assert conflict.verdict.reason == "ResourceConflict"
    status = {"conditions": [{"type": "Ready", "status": "False", "reason": "ResourceConflict"}]}
    q.create_attempts, q.reads = 0, []
    again = await run(q, spec(collectionName="first"), target("second", uid="u2", status=status), alive=("u1",))
    assert again.verdict.reason == "ResourceConflict"
    assert q.create_attempts == 0 and q.reads == ["get first"], "one read per resync while stalled, no create"


def distributed(peers: tuple[int, ...], down: dict[int, float] | None = None) -> Cluster:
    return Cluster(Topology(peers, tuple(sorted((down or {}).items()))), ConnectionGate())


def one_shard_on(q: FakeQdrant, name: str, *peers: int) -> None:
    remote = [{"shard_id": 0, "peer_id": p, "state": "Active"} for p in peers[1:]]
    q.views[name] = {"peer_id": peers[0], "local_shards": [{"shard_id": 0, "state": "Active"}], "remote_shards": remote}


async def test_distributed_replicates_one_shard_at_a_time_and_reports_placement():
    q = FakeQdrant()
    await run(q, spec(replicationFactor=2), target())
    one_shard_on(q, "docs", 1)
    q.writes.clear()
    c = distributed((1, 2))
    outcome = await sync(q, spec(replicationFactor=2), target(), ConnectionGate(), lambda _: False, cluster=c)
    assert outcome.verdict.reason == "Replicating" and not outcome.reconciled and outcome.requeue_after
    replicate = {"replicate_shard": {"shard_id": 0, "from_peer_id": 1, "to_peer_id": 2}}
    assert q.writes == [f"placement docs {replicate}"]
    assert [e[1] for e in outcome.events] == ["ReplicaAdding"] and c.gate.holder == "ns/docs"
    assert outcome.status.to_patch()["shards"] == [{"id": 0, "replicas": [{"peer": "1", "state": "Active"}]}]
    # Another collection on the same connection waits for the gate instead of starting a second transfer.
    await run(q, spec(replicationFactor=2), target("other"))
    one_shard_on(q, "other", 2)
    q.writes.clear()
    other = await sync(q, spec(replicationFactor=2), target("other"), ConnectionGate(), lambda _: False, cluster=c)
    assert other.verdict.reason == "Replicating" and "ns/docs" in other.verdict.message and q.writes == []
    # Once shard 0 has its second replica, the first holder releases the gate: InSync.
    one_shard_on(q, "docs", 1, 2)
    done = await sync(q, spec(replicationFactor=2), target(), ConnectionGate(), lambda _: False, cluster=c)
    assert done.verdict.reason == "InSync" and done.reconciled and c.gate.holder is None


async def test_distributed_with_a_peer_down_is_degraded_but_ready():
    q = FakeQdrant()
    await run(q, spec(replicationFactor=2), target())
    one_shard_on(q, "docs", 1, 2)
    c = distributed((1, 2), down={2: time.time()})
    outcome = await sync(q, spec(replicationFactor=2), target(), ConnectionGate(), lambda _: False, cluster=c)
    assert outcome.verdict.state == State.READY and outcome.verdict.reason == "Degraded"
    assert "shard 0: 1 of 2 replicas Active; peer 2 not answering" in outcome.verdict.message


async def test_shard_keys_are_created_once_and_never_dropped():
    q = FakeQdrant()
    custom = spec(shardingMethod="Custom", shardKeys=["a", "b"])
    first = await run(q, custom, target())
    assert q.writes == ["create docs", "shard key docs a", "shard key docs b"]
    assert [e[1] for e in first.events] == ["Created", "ShardKeysCreated"] and first.verdict.reason == "InSync"
    q.writes.clear()
    status = {"appliedGeneration": 1, **first.status.to_patch()}
    await run(q, spec(shardingMethod="Custom", shardKeys=["b"]), target(status=status))
    assert q.writes == []


async def test_metadata_keys_are_remembered_and_a_dropped_one_is_removed():
    q = FakeQdrant()
    first = await run(q, spec(metadata={"a": "1", "b": "2"}), target())
    assert first.status.metadata_keys == ["a", "b"]
    q.collections["docs"]["config"]["metadata"]["theirs"] = "3"
    status = {"appliedGeneration": 1, **first.status.to_patch()}
    q.writes.clear()
    second = await run(q, spec(metadata={"a": "1"}), target(generation=2, status=status))
    assert q.writes == ["update docs ['metadata']"]
    assert q.collections["docs"]["config"]["metadata"] == {"a": "1", mapping.OWNER_KEY: "ns/docs/u1", "theirs": "3"}
    assert second.status.metadata_keys == ["a"] and [e[1] for e in second.events] == ["Updated"]


async def test_another_namespace_adopts_only_where_the_connection_lets_it():
    """Issue 22: an unmarked collection, or one a deleted resource of another namespace made, is adopted from a
    namespace only when the connection allows it; one a deleted resource of the same namespace made always is."""
    q = FakeQdrant()
    await q.create_collection("unmarked", {"vectors": {"size": 4, "distance": "Dot"}, "metadata": {}})
    await run(q, spec(collectionName="theirs"), Target("team-a", "docs", "a1", 1, SPEC_REF))
    q.writes.clear()
    for name, made in (("unmarked", "bears no owner marker"), ("theirs", "VectorCollection team-a/docs")):
        refused = await run(q, spec(collectionName=name, onExisting="Adopt"), target("mine", uid="b1"))
        assert refused.verdict.state == State.STALLED and refused.verdict.reason == "AdoptionNotAllowed"
        assert made in refused.verdict.message and "spec.adoption.namespaces" in refused.verdict.message
        assert not refused.reconciled
    assert q.writes == [], "nothing is written to a collection that may not be adopted"
    assert q.collections["theirs"]["config"]["metadata"][mapping.OWNER_KEY] == "team-a/docs/a1"
    # A live holder is never taken, whatever the connection allows.
    held = await run(
        q,
        spec(collectionName="theirs", onExisting="Adopt"),
        target("mine", uid="b1"),
        alive=("a1",),
        adoption_allowed=True,
    )
    assert held.verdict.reason == "ResourceConflict" and q.writes == []

    allowed = spec(collectionName="theirs", onExisting="Adopt")
    adopted = await run(q, allowed, target("mine", uid="b1"), adoption_allowed=True)
    assert adopted.verdict.reason == "InSync" and adopted.events[0][:2] == ("Normal", "Adopted")
    assert q.collections["theirs"]["config"]["metadata"][mapping.OWNER_KEY] == "ns/mine/b1"
    # Its own namespace's deleted resource made it: adopted without the connection's leave.
    again = await run(q, allowed, target("successor", uid="b2"))
    assert again.verdict.reason == "InSync"
    assert q.collections["theirs"]["config"]["metadata"][mapping.OWNER_KEY] == "ns/successor/b2"
