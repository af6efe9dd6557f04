"""Distributed Qdrant (issue 11.3): a 3-node real cluster of its own per test, the in-process operator, the
real API server. The operator keeps every shard at replicationFactor Active replicas on distinct peers,
reports Degraded when a node is lost, and repairs once a fresh node joins. Every count is read from every
node: each replica's own points_count, and the collection's exact count through each node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models as m

from devenv import ports, qdrant_real
from tests.builders import collection_spec
from tests.fixtures.operator import Cluster, unique, wait_for
from tests.fixtures.qdrant import real_binary

pytestmark = pytest.mark.integration
PLURAL = "vectorcollections"
POINTS = 5000
SHARDS = 3


def get(node: qdrant_real.Node, path: str) -> Any:
    return httpx.get(f"{node.url}{path}", timeout=30).json()["result"]


def replicas(nodes: list[qdrant_real.Node], name: str) -> dict[int, dict[int, tuple[str, int]]]:
    """{shard: {peer: (state, points_count)}}, each replica as its own node reports it."""
    out: dict[int, dict[int, tuple[str, int]]] = {}
    for node in nodes:
        view = get(node, f"/collections/{name}/cluster")
        for shard in view["local_shards"]:
            out.setdefault(shard["shard_id"], {})[view["peer_id"]] = (shard["state"], shard["points_count"])
    return out


def placed(nodes: list[qdrant_real.Node], name: str, factor: int) -> dict[int, dict[int, tuple[str, int]]] | None:
    """The placement once every shard has exactly `factor` Active replicas holding the same points."""
    view = replicas(nodes, name)
    if len(view) != SHARDS:
        return None
    for shard in view.values():
        if len(shard) != factor or {state for state, _ in shard.values()} != {"Active"}:
            return None
        if len({count for _, count in shard.values()}) != 1:
            return None
    return view


def in_sync(cluster: Cluster, name: str) -> dict[str, Any] | None:
    body = cluster.get(PLURAL, name)
    ready = next((c for c in body.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})
    current = body["status"].get("observedGeneration") == body["metadata"]["generation"]
    return body if current and ready.get("reason") == "InSync" and ready.get("status") == "True" else None


def exact_count(node: qdrant_real.Node, name: str) -> int:
    response = httpx.post(f"{node.url}/collections/{name}/points/count", json={"exact": True}, timeout=30)
    return int(response.json()["result"]["count"])


def peer_id(node: qdrant_real.Node) -> int:
    return int(get(node, "/cluster")["peer_id"])


def test_replication_factor_is_kept_and_repaired(cluster, operator, tmp_path: Path):
    nodes = qdrant_real.start_cluster(real_binary(), tmp_path / "qdrant", 3)
    fresh: qdrant_real.Node | None = None
    try:
        cluster.apply("QdrantConnection", "main", {"url": nodes[0].url, "environment": "Testing"})
        conn = cluster.wait_condition("qdrantconnections", "main", "Connected")["status"]
        peers = sorted(peer_id(n) for n in nodes)
        assert conn["distributed"] is True and conn["peers"] == 3 and conn["unreachablePeers"] == []
        assert int(conn["leader"]) in peers and conn["pendingOperations"] >= 0

        name = unique("repl")
        spec = collection_spec(collectionName=name, shardNumber=SHARDS, replicationFactor=1)
        cluster.apply("VectorCollection", name, spec)
        wait_for(lambda: in_sync(cluster, name), 60, "the collection InSync")
        client = QdrantClient(url=nodes[0].url, timeout=60)
        try:
            for start in range(0, POINTS, 1000):
                batch = [m.PointStruct(id=i, vector=[1.0, 0.5, 0.0, float(i)]) for i in range(start, start + 1000)]
                client.upsert(name, batch, wait=True)
        finally:
            client.close()

        for factor in (2, 3, 2):
            spec["replicationFactor"] = factor
            cluster.apply("VectorCollection", name, spec)
            view = wait_for(lambda f=factor: in_sync(cluster, name) and placed(nodes, name, f), 120, f"factor {factor}")
            assert sum(next(iter(shard.values()))[1] for shard in view.values()) == POINTS
            assert all(exact_count(n, name) == POINTS for n in nodes)
            status = cluster.get(PLURAL, name)["status"]
            assert status["replicationFactor"] == factor
            assert all(len(s["replicas"]) == factor for s in status["shards"]), status["shards"]

        # A node is lost while every peer holds a replica (factor 3 on 3 nodes): Degraded, nothing to repair onto.
        spec["replicationFactor"] = 3
        cluster.apply("VectorCollection", name, spec)
        wait_for(lambda: in_sync(cluster, name) and placed(nodes, name, 3), 120, "factor 3")
        lost, nodes = nodes[2], nodes[:2]
        lost_id = peer_id(lost)
        lost.stop()
        degraded = cluster.wait_condition(PLURAL, name, "Degraded", timeout=60)
        message = next(c for c in degraded["status"]["conditions"] if c["type"] == "Ready")["message"]
        assert str(lost_id) in message and "2 of 3 replicas Active" in message, message
        conn = cluster.wait_condition("qdrantconnections", "main", "Degraded", timeout=60)["status"]
        assert conn["unreachablePeers"] == [str(lost_id)]
        assert all(exact_count(n, name) == POINTS for n in nodes)  # still served by the other replicas

        # A fresh node joins: the lost replicas are re-made on it and the gone peer's replicas dropped.
        port_http, port_grpc, port_p2p = ports.free_ports(3)
        fresh = qdrant_real.Node(
            port_http, port_grpc, tmp_path / "qdrant" / "node4", p2p_port=port_p2p, bootstrap=nodes[0].p2p_url
        )
        fresh.start(real_binary())
        fresh.wait_ready(60)
        nodes.append(fresh)
        view = wait_for(lambda: in_sync(cluster, name) and placed(nodes, name, 3), 240, "repair onto the fresh node")
        assert {peer for shard in view.values() for peer in shard} == {peer_id(n) for n in nodes}
        assert sum(next(iter(shard.values()))[1] for shard in view.values()) == POINTS
        assert all(exact_count(n, name) == POINTS for n in nodes)
        shards = cluster.get(PLURAL, name)["status"]["shards"]
        assert all(str(lost_id) not in {r["peer"] for r in s["replicas"]} for s in shards), shards
        selector = f"involvedObject.name={name}"
        reasons = cluster.kubectl("get", "events", "--field-selector", selector, "-o", "jsonpath={.items[*].reason}")
        assert {"ReplicaAdding", "ReplicaDropped"} <= set(reasons.split()), reasons
    finally:
        for node in nodes + ([fresh] if fresh and fresh not in nodes else []):
            node.stop()


def test_custom_sharding_and_write_consistency_on_the_cluster(cluster, operator, tmp_path: Path):
    nodes = qdrant_real.start_cluster(real_binary(), tmp_path / "qdrant", 3)
    try:
        cluster.apply("QdrantConnection", "main", {"url": nodes[0].url, "environment": "Testing"})
        cluster.wait_condition("qdrantconnections", "main", "Connected")
        name = unique("keys")
        spec = {
            "connectionRef": {"name": "main"},
            "collectionName": name,
            "vectors": [{"size": 4, "distance": "Dot"}],
            "shardingMethod": "Custom",
            "shardKeys": ["tenant-a", "tenant-b"],
            "shardNumber": 2,
            "replicationFactor": 2,
            "writeConsistencyFactor": 2,
        }
        cluster.apply("VectorCollection", name, spec)
        body = wait_for(lambda: in_sync(cluster, name), 120, "the collection InSync")
        params = get(nodes[1], f"/collections/{name}")["config"]["params"]
        assert params["sharding_method"] == "custom" and params["write_consistency_factor"] == 2
        # Each key has shardNumber shards, each with replicationFactor Active replicas on distinct peers.
        shards = body["status"]["shards"]
        by_key: dict[str, list[dict[str, Any]]] = {}
        for shard in shards:
            by_key.setdefault(shard["key"], []).append(shard)
        assert sorted(by_key) == ["tenant-a", "tenant-b"] and all(len(s) == 2 for s in by_key.values()), shards
        for shard in shards:
            peers = [r["peer"] for r in shard["replicas"] if r["state"] == "Active"]
            assert len(set(peers)) == 2, shard

        client = QdrantClient(url=nodes[2].url, timeout=60)
        try:
            for key, first in (("tenant-a", 0), ("tenant-b", 1000)):
                batch = [m.PointStruct(id=first + i, vector=[1.0, 0.0, 0.0, float(i)]) for i in range(300)]
                client.upsert(name, batch, shard_key_selector=key, wait=True)
            for node in nodes:
                other = QdrantClient(url=node.url, timeout=60)
                try:
                    assert other.count(name, exact=True, shard_key_selector="tenant-a").count == 300
                    assert other.count(name, exact=True).count == 600
                finally:
                    other.close()
        finally:
            client.close()

        # A key added to the spec is created; the existing data stays where it is.
        spec["shardKeys"] = ["tenant-a", "tenant-b", "tenant-c"]
        cluster.apply("VectorCollection", name, spec)
        body = wait_for(lambda: in_sync(cluster, name), 120, "tenant-c created")
        assert {s.get("key") for s in body["status"]["shards"]} == {"tenant-a", "tenant-b", "tenant-c"}
        assert exact_count(nodes[0], name) == 600
    finally:
        for node in nodes:
            node.stop()
