"""Approval in the same commit (issue 23): the plan hash covers the spec and the live state it meets, not the
generation, so it can be computed before the change is applied (kubectl qdrant plan) from the manifest and
status.planBase; an approval never carries over to another change or to a live state that moved."""

from __future__ import annotations

import copy
from typing import Any

from collection_operator.reconcile.collection import live_digest, plan_hash
from collection_operator.reconcile.collection_sync import sync
from collection_operator.reconcile.gates import ConnectionGate
from collection_operator.reconcile.target import APPROVE_PLAN, Target
from tests.fakes import FakeQdrant
from tests.unit.test_collection_sync import SPEC_REF, spec

INFO: dict[str, Any] = {
    "status": "green",
    "points_count": 10,
    "config": {"params": {"vectors": {"size": 4, "distance": "Dot"}}, "hnsw_config": {"m": 16}},
    "payload_schema": {"k": {"data_type": "keyword", "params": {"type": "keyword"}, "points": 10}},
}


def test_the_hash_is_the_spec_as_validated_the_resource_and_the_live_state():
    base = live_digest(INFO, 3)
    m32 = plan_hash("ns/docs", spec(hnsw={"m": 32}), base)
    assert m32 == plan_hash("ns/docs", spec(hnsw={"m": 32}), base), "stable"
    explicit = spec(hnsw={"m": 32}, deletionPolicy="Retain", changePolicy={"approval": "Automatic"})
    assert plan_hash("ns/docs", explicit, base) == m32, "defaults written out or left to the API server: one hash"
    assert len(m32) == 12 and int(m32, 16) >= 0
    others = {
        plan_hash("ns/docs", spec(hnsw={"m": 48}), base),  # another change
        plan_hash("ns/other", spec(hnsw={"m": 32}), base),  # another resource
        plan_hash("ns/docs", spec(hnsw={"m": 32}), live_digest(INFO, 4)),  # another generation applied since
        plan_hash("ns/docs", spec(hnsw={"m": 32}), base, kind="switch a -> b"),  # a second plan of the same state
    }
    assert m32 not in others and len(others) == 4


def test_the_live_state_is_the_configuration_and_indexes_not_the_counts():
    base = live_digest(INFO, 3)
    busy = copy.deepcopy(INFO)
    busy.update(status="yellow", points_count=99_000)
    busy["payload_schema"]["k"]["points"] = 99_000
    assert live_digest(busy, 3) == base, "writes and optimizations do not move it"
    moved = copy.deepcopy(INFO)
    moved["config"]["hnsw_config"]["m"] = 20  # changed in Qdrant behind the operator's back
    indexed = copy.deepcopy(INFO)
    indexed["payload_schema"]["n"] = {"data_type": "integer", "params": {"type": "integer"}}
    states = {base, live_digest(moved, 3), live_digest(indexed, 3), live_digest(INFO, None), live_digest(None, 3)}
    assert len(states) == 5


def target(generation: int, status: dict[str, Any], approved: str | None = None) -> Target:
    return Target("ns", "docs", "u1", generation, SPEC_REF, status, {APPROVE_PLAN: approved} if approved else {})


async def settled(q: FakeQdrant, status: dict[str, Any], generation: int, **fields: Any) -> dict[str, Any]:
    """The resource's status after `fields` were applied at `generation` and Qdrant finished optimizing."""
    gate = ConnectionGate()
    for _ in range(2):  # a re-index leaves the collection yellow: the next reconcile sees it green
        done = await sync(q, spec(**fields), target(generation, status), gate, lambda _: False)
        q.collections["docs"]["status"] = "green"
        status = {**status, **done.status.to_patch()}
    assert done.verdict.reason == "InSync"
    return status


async def test_a_change_applied_with_its_precomputed_approval_goes_ahead_at_once():
    q, manual = FakeQdrant(), {"changePolicy": {"approval": "Manual"}}
    status = await settled(q, {}, 1, hnsw={"m": 16}, **manual)
    assert status["planBase"] == live_digest(q.collections["docs"], 1), "published for kubectl qdrant plan"

    # CI, before merging: the manifest's spec and the live object's status.planBase.
    precomputed = plan_hash("ns/docs", spec(hnsw={"m": 32}, **manual), status["planBase"])
    done = await sync(q, spec(hnsw={"m": 32}, **manual), target(2, status, precomputed), ConnectionGate(), bool)
    assert done.verdict.reason != "AwaitingApproval" and q.collections["docs"]["config"]["hnsw_config"]["m"] == 32
    assert done.status.plan is not None and done.status.plan.hash == precomputed
    assert [e[1] for e in done.events] == ["PlanApproved", "Updated"]


async def test_a_precomputed_approval_of_another_change_or_a_moved_state_holds_the_plan():
    q, manual = FakeQdrant(), {"changePolicy": {"approval": "Manual"}}
    status = await settled(q, {}, 1, hnsw={"m": 16}, **manual)
    for_48 = plan_hash("ns/docs", spec(hnsw={"m": 48}, **manual), status["planBase"])
    held = await sync(q, spec(hnsw={"m": 32}, **manual), target(2, status, for_48), ConnectionGate(), bool)
    assert held.verdict.reason == "AwaitingApproval" and q.collections["docs"]["config"]["hnsw_config"]["m"] == 16
    assert f"the approve-plan annotation names {for_48}, another plan" in held.verdict.message
    assert held.status.plan_base == status["planBase"]

    # Computed for m: 32 against generation 1; generation 2 (a metadata key) is applied before the change lands.
    stale = plan_hash("ns/docs", spec(hnsw={"m": 32}, **manual), status["planBase"])
    status = await settled(q, status, 2, hnsw={"m": 16}, metadata={"team": "search"}, **manual)
    assert status["planBase"] != held.status.plan_base
    change = spec(hnsw={"m": 32}, metadata={"team": "search"}, **manual)
    waits = await sync(q, change, target(3, status, stale), ConnectionGate(), bool)
    assert waits.verdict.reason == "AwaitingApproval" and q.collections["docs"]["config"]["hnsw_config"]["m"] == 16
    assert waits.status.plan is not None and waits.status.plan.hash == plan_hash("ns/docs", change, status["planBase"])
