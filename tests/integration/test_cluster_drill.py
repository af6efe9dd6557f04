"""A restore drill of a distributed collection, end to end: the operator in-process, the real API server, the
3-node real Qdrant cluster (`qdrant_cluster`). Behind a QdrantConnection to its first node, which holds a replica
of every shard (replicationFactor 3), the snapshot is complete and the drill recovers it through that node; at
factor 1 behind a QdrantConnection listing every node, the record is taken shard by shard and the drill recovers
it shard by shard, from the nodes or from the bucket (SeaweedFS)."""

from __future__ import annotations

import random
from contextlib import closing
from typing import Any

import httpx
import pytest
from qdrant_client import QdrantClient, models

from devenv.qdrant_real import Node
from tests.fixtures.operator import unique, wait_for
from tests.integration.test_cluster_snapshot import POINTS as SHARDED_POINTS
from tests.integration.test_cluster_snapshot import count, holders, peer_of, shard_files_on, source_collection
from tests.integration.test_objectstore_snapshots import credentials, no_presigned_url_shown, objects, target

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

    wait_for(lambda: not any(scratch_on(node) for node in qdrant_cluster), 60, "no scratch collection on any node")
    assert cluster.condition("vectorcollections", "docs")["reason"] == "InSync", "the source is left as it was"


def scratch_on(node: Node) -> list[str]:
    names = httpx.get(f"{node.url}/collections", timeout=10).json()["result"]["collections"]
    return [c["name"] for c in names if c["name"].startswith("~drill-")]


def drilled_shard_by_shard(cluster: Any, nodes: list[Node], resource: str, spec: dict[str, Any]) -> dict[str, Any]:
    """CollectionSnapshot `resource` (`spec`) takes its record shard by shard, then its drill verifies it:
    count and sample compared, no scratch collection left on any node; (the record)."""
    (record,) = cluster.wait_condition(PLURAL, resource, "Completed", timeout=240)["status"]["snapshots"]
    assert record["shards"] == [0, 1, 2] and len(record["shardFiles"]) == 3, record
    assert record["pointsCount"] == SHARDED_POINTS and record["sample"]["points"] == 100
    cluster.apply("CollectionSnapshot", resource, {**spec, "verify": {"schedule": "* * * * *"}})
    body = cluster.wait_condition(PLURAL, resource, "Verified", type_="BackupVerified", timeout=240)
    verification = body["status"]["lastVerification"]
    assert verification["snapshot"] == record["name"]
    assert (verification["pointsCount"], verification["sampledPoints"]) == (SHARDED_POINTS, 100), verification
    wait_for(lambda: not any(scratch_on(node) for node in nodes), 60, "no scratch collection on any node")
    return record


def test_a_drill_verifies_a_record_taken_shard_by_shard_from_its_nodes(cluster, operator, qdrant_cluster):
    """Factor 1 over three nodes, every node listed: each shard file is recovered from its node into a scratch
    collection spread over the cluster; the source and the shard files stay as they were."""
    cluster.apply("QdrantConnection", "nodes", {"endpoints": [n.url for n in qdrant_cluster], "environment": "Testing"})
    cluster.wait_condition("qdrantconnections", "nodes", "Connected")
    collection = unique("shdrill")
    source_collection(cluster, "nodes", collection, qdrant_cluster[0], with_payload=True)
    peers = {peer_of(n): n for n in qdrant_cluster}
    assert sorted(set(holders(qdrant_cluster[0], collection).values())) == sorted(peers), "one shard per node"
    spec: dict[str, Any] = {"collectionRef": {"name": "docs"}}
    cluster.apply("CollectionSnapshot", "backup", spec)
    record = drilled_shard_by_shard(cluster, qdrant_cluster, "backup", spec)
    for f in record["shardFiles"]:
        assert shard_files_on(peers[f["peer"]], collection, f["shard"]) == [f["name"]], "the file stays on its node"
    assert all(count(n, collection) == SHARDED_POINTS for n in qdrant_cluster), "the source is left as it was"


def test_a_drill_verifies_shard_files_kept_in_the_bucket(cluster, operator, qdrant_cluster, s3_server, s3_bucket):
    """Factor 1 over three nodes, every node listed, spec.objectStore on SeaweedFS: the shard files are only in the
    bucket, and the drill recovers each from a presigned URL; no URL is shown anywhere."""
    cluster.apply("QdrantConnection", "nodes", {"endpoints": [n.url for n in qdrant_cluster], "environment": "Testing"})
    cluster.wait_condition("qdrantconnections", "nodes", "Connected")
    collection = unique("shdrill-s3")
    source_collection(cluster, "nodes", collection, qdrant_cluster[0], with_payload=True)
    credentials(cluster, s3_server)
    spec = {"collectionRef": {"name": "docs"}, "objectStore": target(s3_server, s3_bucket)}
    cluster.apply("CollectionSnapshot", "offsite", spec)
    record = drilled_shard_by_shard(cluster, qdrant_cluster, "offsite", spec)
    assert all(f["location"].startswith(f"s3://{s3_bucket}/") for f in record["shardFiles"])
    assert len(objects(s3_server, s3_bucket)) == 3, "the drill reads the objects and leaves them"
    no_presigned_url_shown(cluster, (PLURAL, "offsite"))
