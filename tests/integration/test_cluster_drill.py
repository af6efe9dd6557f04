"""A restore drill of a distributed collection, end to end: the operator in-process, the real API server, the
3-node real Qdrant cluster (`qdrant_cluster`) behind a QdrantConnection to its first node, which holds a replica
of every shard (replicationFactor 3), so its snapshot is complete and the drill recovers it through that node."""

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
POINTS = 1000


def test_a_drill_verifies_a_snapshot_of_a_distributed_collection(cluster, operator, qdrant_cluster: list[Node]):
    cluster.apply("QdrantConnection", "main", {"url": qdrant_cluster[0].url, "environment": "Testing"})
    cluster.wait_condition("qdrantconnections", "main", "Connected")
    collection = unique("dist")
    spec = {
        "connectionRef": {"name": "main"},
        "collectionName": collection,
        "vectors": [{"size": 8, "distance": "Dot"}],
        "shardNumber": 3,
        "replicationFactor": 3,
    }
    cluster.apply("VectorCollection", "docs", spec)
    cluster.wait_condition("vectorcollections", "docs", "InSync", timeout=120)
    rng = random.Random(3)
    batch = [
        models.PointStruct(id=i, vector=[rng.uniform(-1, 1) for _ in range(8)], payload={"n": i}) for i in range(POINTS)
    ]
    with closing(QdrantClient(url=qdrant_cluster[0].url, prefer_grpc=False, timeout=60)) as client:
        client.upsert(collection, points=batch, wait=True)

    cluster.apply("CollectionSnapshot", "backup", {"collectionRef": {"name": "docs"}})
    record = cluster.wait_condition(PLURAL, "backup", "Completed", timeout=240)["status"]["snapshots"][0]
    assert record["shards"] == [0, 1, 2] and record["sample"]["points"] == 100

    spec_with_drill: dict[str, Any] = {"collectionRef": {"name": "docs"}, "verify": {"schedule": "* * * * *"}}
    cluster.apply("CollectionSnapshot", "backup", spec_with_drill)
    body = cluster.wait_condition(PLURAL, "backup", "Verified", type_="BackupVerified", timeout=240)
    verification = body["status"]["lastVerification"]
    assert (verification["pointsCount"], verification["sampledPoints"]) == (POINTS, 100), verification

    def scratch_on(node: Node) -> list[str]:
        names = httpx.get(f"{node.url}/collections", timeout=10).json()["result"]["collections"]
        return [c["name"] for c in names if c["name"].startswith("~drill-")]

    wait_for(lambda: not any(scratch_on(node) for node in qdrant_cluster), 60, "no scratch collection on any node")
    assert cluster.condition("vectorcollections", "docs")["reason"] == "InSync", "the source is left as it was"
