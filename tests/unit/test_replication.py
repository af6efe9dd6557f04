"""The replica planner (reconcile/replication.py): one placement change at a time towards the factor."""

from __future__ import annotations

from typing import Any

from collection_operator.qdrant import Topology
from collection_operator.reconcile.replication import REPAIR_GRACE_SECONDS, Action, plan_replicas

NOW = 1_000_000.0
A, B, C, D = 11, 22, 33, 44


def view(placement: dict[int, dict[int, str]], transfers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """GET /collections/{name}/cluster as peer A answers it: {shard: {peer: state}}."""
    local = [
        {"shard_id": s, "state": st, "points_count": 0} for s, r in placement.items() for p, st in r.items() if p == A
    ]
    remote = [{"shard_id": s, "peer_id": p, "state": st} for s, r in placement.items() for p, st in r.items() if p != A]
    return {"peer_id": A, "shard_count": len(placement), "local_shards": local, "remote_shards": remote,
            "shard_transfers": transfers or []}  # fmt: skip


def topology(*peers: int, down: dict[int, float] | None = None) -> Topology:
    return Topology(peers=tuple(sorted(peers)), down_since=tuple(sorted((down or {}).items())))


def test_in_place_nothing_to_do():
    plan = plan_replicas(view({0: {A: "Active", B: "Active"}}), topology(A, B, C), 2, NOW)
    assert plan.action is None and not plan.short and not plan.unavailable


def test_raising_the_factor_replicates_onto_the_least_loaded_free_peer():
    placement = {0: {A: "Active"}, 1: {B: "Active"}, 2: {C: "Active", A: "Active"}}
    plan = plan_replicas(view(placement), topology(A, B, C), 2, NOW)
    # shard 0 needs a second replica: B and C hold one replica each of this collection, A two: B (lower id).
    assert plan.action == Action(0, B, source=A)
    assert plan.action.body == {"replicate_shard": {"shard_id": 0, "from_peer_id": A, "to_peer_id": B}}
    assert plan.short == ["shard 0: 1 of 2 replicas Active", "shard 1: 1 of 2 replicas Active"]


def test_one_transfer_at_a_time():
    transfer = {"shard_id": 0, "from": A, "to": B, "sync": True}
    plan = plan_replicas(view({0: {A: "Active", B: "Partial"}, 1: {B: "Active"}}, [transfer]), topology(A, B), 2, NOW)
    assert plan.action is None and plan.transfers == [f"shard 0 from peer {A} to peer {B}"]


def test_a_recovering_replica_is_waited_for_not_copied_again():
    plan = plan_replicas(view({0: {A: "Active", B: "Dead"}}), topology(A, B, C), 2, NOW)
    assert plan.action is None and plan.short == ["shard 0: 1 of 2 replicas Active"]


def test_lowering_the_factor_drops_from_the_busiest_peer():
    placement = {0: {A: "Active", B: "Active", C: "Active"}, 1: {A: "Active", B: "Active"}}
    plan = plan_replicas(view(placement), topology(A, B, C), 2, NOW)
    assert plan.action == Action(0, B)  # A and B hold two replicas each; the higher id goes first
    assert plan.action.body == {"drop_replica": {"shard_id": 0, "peer_id": B}}


def test_a_peer_just_down_is_waited_for_and_reported():
    placement = {0: {A: "Active", C: "Active"}}
    plan = plan_replicas(view(placement), topology(A, B, C, down={C: NOW - 5}), 2, NOW)
    assert plan.action is None
    assert plan.short == [f"shard 0: 1 of 2 replicas Active; peer {C} not answering"]


def test_a_peer_gone_past_the_grace_has_its_replicas_made_elsewhere_then_dropped():
    gone = {C: NOW - REPAIR_GRACE_SECONDS - 1}
    plan = plan_replicas(view({0: {A: "Active", C: "Active"}}), topology(A, B, C, down=gone), 2, NOW)
    assert plan.action == Action(0, B, source=A)
    plan = plan_replicas(view({0: {A: "Active", B: "Active", C: "Active"}}), topology(A, B, C, down=gone), 2, NOW)
    assert plan.action == Action(0, C) and not plan.short


def test_no_free_peer_leaves_it_degraded():
    gone = {C: NOW - REPAIR_GRACE_SECONDS - 1}
    plan = plan_replicas(view({0: {A: "Active", B: "Active", C: "Active"}}), topology(A, B, C, down=gone), 3, NOW)
    assert plan.action is None and not plan.unavailable
    assert plan.short == [
        f"shard 0: 2 of 3 replicas Active; peer {C} not answering and no other reachable peer to place a replica on"
    ]
    # A fresh node joins: the shard is copied there first; the gone replica is dropped only afterwards.
    plan = plan_replicas(view({0: {A: "Active", B: "Active", C: "Active"}}), topology(A, B, C, D, down=gone), 3, NOW)
    assert plan.action == Action(0, D, source=A)


def test_a_shard_without_a_live_replica_is_unavailable():
    plan = plan_replicas(view({0: {C: "Active"}, 1: {A: "Active"}}), topology(A, C, down={C: NOW - 1}), 1, NOW)
    assert plan.unavailable == [0] and plan.action is None


def test_status_lists_shards_with_keys_and_string_peer_ids():
    v = view({0: {A: "Active"}})
    v["local_shards"][0]["shard_key"] = "tenant-a"
    plan = plan_replicas(v, topology(A), 1, NOW)
    assert [s.as_status() for s in plan.shards] == [
        {"id": 0, "key": "tenant-a", "replicas": [{"peer": str(A), "state": "Active"}]}
    ]
