"""CollectionSnapshot of a distributed collection, end to end: the operator in-process, the real API server,
the 3-node real Qdrant cluster (tests/fixtures/qdrant.py `qdrant_cluster`) behind a QdrantConnection to its
first node. The facts this relies on are proven in tests/contract/test_cluster_snapshots.py."""

from __future__ import annotations

import random
from contextlib import closing
from typing import Any

import httpx
import pytest
from qdrant_client import QdrantClient, models

from devenv.qdrant_real import Node
from tests.fixtures.operator import unique, wait_for

pytestmark = pytest.mark.integration
PLURAL = "collectionsnapshots"
VC = "vectorcollections"
POINTS = 5000
DIM = 8


@pytest.fixture
def cluster_connection(cluster: Any, operator: Any, qdrant_cluster: list[Node]) -> str:
    """QdrantConnection "main" to the cluster's first node (one URL, as users configure it)."""
    cluster.apply("QdrantConnection", "main", {"url": qdrant_cluster[0].url, "environment": "Testing"})
    cluster.wait_condition("qdrantconnections", "main", "Connected")
    return "main"


def client(node: Node) -> QdrantClient:
    return QdrantClient(url=node.url, prefer_grpc=False, timeout=60)


def data() -> dict[int, list[float]]:
    rng = random.Random(5)
    return {i: [round(rng.uniform(-1, 1), 4) for _ in range(DIM)] for i in range(POINTS)}


def contents(node: Node, collection: str) -> dict[int, list[float]]:
    found: dict[int, list[float]] = {}
    offset = None
    with closing(client(node)) as c:
        while True:
            page, offset = c.scroll(collection, limit=1000, offset=offset, with_vectors=True)
            found.update({int(p.id): [round(x, 4) for x in p.vector] for p in page})  # type: ignore[union-attr]
            if offset is None:
                return found


def count(node: Node, collection: str) -> int:
    with closing(client(node)) as c:
        return c.count(collection, exact=True).count


def files(nodes: list[Node], collection: str) -> list[str]:
    """Snapshot files of `collection` on every node of the cluster."""
    names = []
    for node in nodes:
        response = httpx.get(f"{node.url}/collections/{collection}/snapshots", timeout=10).json()
        names += [s["name"] for s in response["result"]]
    return sorted(names)


def peer_of(node: Node) -> str:
    return str(httpx.get(f"{node.url}/cluster", timeout=10).json()["result"]["peer_id"])


def test_distributed_snapshot_refused_until_the_node_holds_every_shard_then_restored_point_by_point(
    cluster, cluster_connection, qdrant_cluster
):
    collection, restored = unique("dist"), unique("dist-restored")
    spec = {
        "connectionRef": {"name": cluster_connection},
        "collectionName": collection,
        "vectors": [{"size": DIM, "distance": "Dot"}],
        "shardNumber": 3,
        "replicationFactor": 1,
    }
    cluster.apply("VectorCollection", "docs", spec)
    cluster.wait_condition(VC, "docs", "InSync", timeout=120)
    expected = data()
    with closing(client(qdrant_cluster[0])) as c:
        for start in range(0, POINTS, 1000):
            batch = [models.PointStruct(id=i, vector=expected[i]) for i in range(start, start + 1000)]
            c.upsert(collection, points=batch, wait=True)

    # Factor 1 over three nodes: the first node holds one shard of three, so no snapshot is taken.
    cluster.apply("CollectionSnapshot", "backup", {"collectionRef": {"name": "docs"}})
    stalled = cluster.wait_condition(PLURAL, "backup", "DistributedSnapshotUnsupported", type_="Stalled", timeout=60)
    message = cluster.condition(PLURAL, "backup", "Stalled")["message"]
    assert f"peer {peer_of(qdrant_cluster[0])}" in message and "of [0, 1, 2] only" in message, message
    assert not (stalled.get("status") or {}).get("snapshots"), "nothing recorded"
    assert files(qdrant_cluster, collection) == [], "no partial file left on any node"

    # A replica of every shard on every node: the refusal is re-checked and the snapshot goes ahead.
    cluster.apply("VectorCollection", "docs", {**spec, "replicationFactor": 3})
    done = cluster.wait_condition(PLURAL, "backup", "Completed", timeout=240)["status"]
    (record,) = done["snapshots"]
    assert record["shards"] == [0, 1, 2] and record["peer"] == peer_of(qdrant_cluster[0])
    assert record["pointsCount"] == POINTS
    assert files(qdrant_cluster, collection) == [record["name"]], "one file, on the node that took it"

    cluster.apply(
        "VectorCollection",
        "restored",
        {
            **spec,
            "collectionName": restored,
            "replicationFactor": 3,
            "source": {"snapshot": {"snapshotRef": {"name": "backup"}}},
        },
    )
    body = cluster.wait_condition(VC, "restored", "InSync", timeout=240)
    assert body["status"]["restoredFrom"] == f"backup/{record['name']}"
    assert body["status"]["pointsCount"] == POINTS

    def every_node_complete() -> bool:
        with closing(client(qdrant_cluster[0])) as c:
            info = c.http.distributed_api.collection_cluster_info(restored).result
        states = {s.state for s in info.local_shards + info.remote_shards}  # type: ignore[union-attr]
        return states == {models.ReplicaState.ACTIVE} and all(count(n, restored) == POINTS for n in qdrant_cluster)

    wait_for(every_node_complete, 120, "every replica of the restored collection Active with every point")
    for node in qdrant_cluster:  # point by point, as every node serves it
        assert contents(node, restored) == expected
