"""The 3-node real Qdrant cluster fixture: placement and replica state as every node reports them."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from qdrant_client import QdrantClient
from qdrant_client.http import models as m

from devenv.qdrant_real import Node
from tests.contract.conftest import wait_until


def placement(node: Node, name: str) -> dict[int, dict[int, str]]:
    """{shard_id: {peer_id: state}} from one node's GET /collections/{name}/cluster."""
    info: dict[str, Any] = httpx.get(f"{node.url}/collections/{name}/cluster", timeout=10).json()["result"]
    shards: dict[int, dict[int, str]] = {}
    for shard in info["local_shards"]:
        shards.setdefault(shard["shard_id"], {})[info["peer_id"]] = shard["state"]
    for shard in info["remote_shards"]:
        shards.setdefault(shard["shard_id"], {})[shard["peer_id"]] = shard["state"]
    return shards


def test_replicas_on_distinct_peers_all_active(qdrant_cluster: list[Node]) -> None:
    peers = {httpx.get(f"{n.url}/cluster", timeout=10).json()["result"]["peer_id"] for n in qdrant_cluster}
    assert len(peers) == 3
    name = f"cluster-{uuid.uuid4().hex[:8]}"
    client = QdrantClient(url=qdrant_cluster[0].url, prefer_grpc=False, timeout=30)
    try:
        client.create_collection(
            name, vectors_config=m.VectorParams(size=4, distance=m.Distance.DOT), shard_number=3, replication_factor=2
        )

        def settled() -> list[dict[int, dict[int, str]]] | None:
            views = [placement(n, name) for n in qdrant_cluster]
            states = {s for view in views for replicas in view.values() for s in replicas.values()}
            return views if states == {"Active"} and all(len(v) == 3 for v in views) else None

        views = wait_until(settled, 60, "every replica Active on every node")
        assert all(view == views[0] for view in views), views  # the nodes agree
        assert all(len(replicas) == 2 for replicas in views[0].values()), views[0]  # two distinct peers each
        assert {p for replicas in views[0].values() for p in replicas} == peers  # every peer holds replicas

        client.upsert(name, [m.PointStruct(id=i, vector=[1.0, 0.0, 0.0, float(i)]) for i in range(30)], wait=True)
        for node in qdrant_cluster:
            other = QdrantClient(url=node.url, prefer_grpc=False, timeout=30)
            try:
                assert other.count(name, exact=True).count == 30
            finally:
                other.close()
    finally:
        client.delete_collection(name)
        client.close()
