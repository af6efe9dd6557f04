"""CollectionSnapshot of a distributed collection, end to end: the operator in-process, the real API server,
the 3-node real Qdrant cluster (tests/fixtures/qdrant.py `qdrant_cluster`) behind a QdrantConnection to its
first node. The facts this relies on are proven in tests/contract/test_cluster_snapshots.py."""

from __future__ import annotations

import hashlib
import random
from contextlib import closing
from typing import Any

import httpx
import pytest
from qdrant_client import QdrantClient, models

from devenv.qdrant_real import Node
from tests.fixtures.operator import unique, wait_for
from tests.integration.test_objectstore_snapshots import credentials, no_presigned_url_shown, objects, target

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


def payload_of(i: int) -> dict[str, Any]:
    return {"doc": f"doc {i}", "rank": i % 7}


def source_collection(
    cluster: Any, connection: str, collection: str, node: Node, with_payload: bool = False
) -> tuple[dict[str, Any], dict[int, list[float]]]:
    """VectorCollection "docs": 3 shards at factor 1, filled with POINTS points through `node`; (spec, vectors)."""
    spec = {
        "connectionRef": {"name": connection},
        "collectionName": collection,
        "vectors": [{"size": DIM, "distance": "Dot"}],
        "shardNumber": 3,
        "replicationFactor": 1,
    }
    cluster.apply("VectorCollection", "docs", spec)
    cluster.wait_condition(VC, "docs", "InSync", timeout=120)
    expected = data()
    with closing(client(node)) as c:
        for start in range(0, POINTS, 1000):
            batch = [
                models.PointStruct(id=i, vector=expected[i], payload=payload_of(i) if with_payload else None)
                for i in range(start, start + 1000)
            ]
            c.upsert(collection, points=batch, wait=True)
    return spec, expected


def test_distributed_snapshot_refused_until_the_node_holds_every_shard_then_restored_point_by_point(
    cluster, cluster_connection, qdrant_cluster
):
    collection, restored = unique("dist"), unique("dist-restored")
    spec, expected = source_collection(cluster, cluster_connection, collection, qdrant_cluster[0])

    # Factor 1 over three nodes: the first node holds one shard of three, so no snapshot is taken.
    cluster.apply("CollectionSnapshot", "backup", {"collectionRef": {"name": "docs"}})
    stalled = cluster.wait_condition(PLURAL, "backup", "DistributedSnapshotUnsupported", type_="Stalled", timeout=60)
    message = cluster.condition(PLURAL, "backup", "Stalled")["message"]
    assert f"peer {peer_of(qdrant_cluster[0])}" in message and "of [0, 1, 2] only" in message, message
    assert "List every node of the cluster in the QdrantConnection's spec.endpoints" in message, message
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


def sample(url: str, collection: str, ids: list[int]) -> dict[int, tuple[list[float], dict[str, Any]]]:
    with closing(QdrantClient(url=url, prefer_grpc=False, timeout=60)) as c:
        found = c.retrieve(collection, ids=ids, with_vectors=True, with_payload=True)
    return {int(p.id): ([round(x, 4) for x in p.vector], p.payload or {}) for p in found}  # type: ignore[union-attr]


def shard_files_on(node: Node, collection: str, shard: int) -> list[str]:
    response = httpx.get(f"{node.url}/collections/{collection}/shards/{shard}/snapshots", timeout=10)
    return [s["name"] for s in response.json()["result"]] if response.status_code == 200 else []


def holders(node: Node, collection: str) -> dict[int, str]:
    """shard -> the peer holding its one replica (factor 1), as `node` sees the placement."""
    info = httpx.get(f"{node.url}/collections/{collection}/cluster", timeout=10).json()["result"]
    placed = {s["shard_id"]: str(info["peer_id"]) for s in info["local_shards"]}
    return placed | {s["shard_id"]: str(s["peer_id"]) for s in info["remote_shards"]}


def restored_on_every_node(
    cluster: Any, nodes: list[Node], spec: dict[str, Any], restored: str, ref: str, expected: dict[int, list[float]]
) -> tuple[list[int], dict[int, tuple[list[float], dict[str, Any]]]]:
    """VectorCollection "restored" (collection `restored`) from `ref` ("<CollectionSnapshot>/<record>"): every
    point on every node, 200 sampled with vectors and payloads, all of them on the second node; (ids, sample)."""
    resource = ref.split("/", 1)[0]
    source = {"snapshot": {"snapshotRef": {"name": resource}}}
    cluster.apply("VectorCollection", "restored", {**spec, "collectionName": restored, "source": source})
    body = cluster.wait_condition(VC, "restored", "InSync", timeout=300)
    assert body["status"]["restoredFrom"] == ref
    assert body["status"]["pointsCount"] == POINTS
    ids = random.Random(7).sample(range(POINTS), 200)
    want = {i: (expected[i], payload_of(i)) for i in ids}
    for node in nodes:
        assert count(node, restored) == POINTS
        assert sample(node.url, restored, ids) == want
    assert contents(nodes[1], restored) == expected
    return ids, want


def test_a_connection_to_every_node_snapshots_shard_by_shard_and_restores_every_point(
    cluster, operator, qdrant_cluster, real_qdrant_factory
):
    """Factor 1 over three nodes, a QdrantConnection listing every node: each shard is snapshotted on the node
    holding it, one record; a new VectorCollection is restored from it shard by shard, on the cluster and on a
    single node, and the source in place after losing points; every point comes back, vectors and payloads;
    Delete removes every shard file."""
    cluster.apply("QdrantConnection", "nodes", {"endpoints": [n.url for n in qdrant_cluster], "environment": "Testing"})
    cluster.wait_condition("qdrantconnections", "nodes", "Connected")
    collection, restored = unique("shards"), unique("shards-restored")
    spec, expected = source_collection(cluster, "nodes", collection, qdrant_cluster[0], with_payload=True)
    placed = holders(qdrant_cluster[0], collection)
    peers = {peer_of(n): n for n in qdrant_cluster}
    assert sorted(set(placed.values())) == sorted(peers), "one shard on each node: no node holds them all"

    cluster.apply("CollectionSnapshot", "backup", {"collectionRef": {"name": "docs"}, "deletionPolicy": "Delete"})
    done = cluster.wait_condition(PLURAL, "backup", "Completed", timeout=240)["status"]
    (record,) = done["snapshots"]
    assert record["shards"] == [0, 1, 2] and record["pointsCount"] == POINTS and "peer" not in record
    taken = record["shardFiles"]
    assert [(f["shard"], f["peer"]) for f in taken] == sorted(placed.items()), "each shard taken on its holder"
    for f in taken:
        assert shard_files_on(peers[f["peer"]], collection, f["shard"]) == [f["name"]], "the file is on its node"
        assert len(f["checksum"]) == 64 and f["sizeBytes"] > 0
    assert record["sizeBytes"] == sum(f["sizeBytes"] for f in taken)
    assert files(qdrant_cluster, collection) == [], "no collection snapshot was taken"

    ids, want = restored_on_every_node(cluster, qdrant_cluster, spec, restored, f"backup/{record['name']}", expected)

    # A single node (cluster disabled) recovers every shard itself, each downloaded from its node.
    single = real_qdrant_factory()
    cluster.apply("QdrantConnection", "single", {"url": single.url, "environment": "Testing"})
    cluster.wait_condition("qdrantconnections", "single", "Connected")
    alone = {**spec, "connectionRef": {"name": "single"}, "source": {"snapshot": {"snapshotRef": {"name": "backup"}}}}
    cluster.apply("VectorCollection", "alone", alone)
    body = cluster.wait_condition(VC, "alone", "InSync", timeout=240)
    assert body["status"]["restoredFrom"] == f"backup/{record['name']}" and body["status"]["pointsCount"] == POINTS
    assert sample(single.url, collection, ids) == want

    # Points lost from the source: an in-place restore brings every one back, shard by shard.
    with closing(client(qdrant_cluster[0])) as c:
        c.delete(collection, points_selector=models.PointIdsList(points=list(range(0, POINTS, 3))), wait=True)
    assert count(qdrant_cluster[0], collection) < POINTS
    value = f"backup/{record['name']}"
    cluster.kubectl("annotate", VC, "docs", f"qdrant.collection-operator.dev/restore-from={value}")
    wait_for(
        lambda: (cluster.get(VC, "docs").get("status") or {}).get("restoredFrom") == value,
        240,
        "status.restoredFrom to record the in-place restore",
    )
    assert count(qdrant_cluster[2], collection) == POINTS
    assert sample(qdrant_cluster[2].url, collection, ids) == want

    cluster.kubectl("delete", PLURAL, "backup", "--timeout=60s")
    for f in taken:
        assert shard_files_on(peers[f["peer"]], collection, f["shard"]) == [], "every shard file deleted on its node"


def test_shard_files_kept_in_object_storage_outlive_the_source_collection(
    cluster, operator, qdrant_cluster, s3_server, s3_bucket
):
    """Factor 1 over three nodes, every node listed, spec.objectStore on the real S3 server (SeaweedFS): every
    shard file is streamed to the bucket with our sha256 and deleted from its node. The source collection is then
    deleted, so no node holds its shards any more, and a new VectorCollection is restored from the record shard
    by shard from presigned URLs: every point comes back. Delete removes the objects."""
    cluster.apply("QdrantConnection", "nodes", {"endpoints": [n.url for n in qdrant_cluster], "environment": "Testing"})
    cluster.wait_condition("qdrantconnections", "nodes", "Connected")
    collection, restored = unique("dr"), unique("dr-restored")
    spec, expected = source_collection(cluster, "nodes", collection, qdrant_cluster[0], with_payload=True)
    peers = {peer_of(n): n for n in qdrant_cluster}
    assert sorted(set(holders(qdrant_cluster[0], collection).values())) == sorted(peers), "one shard per node"
    credentials(cluster, s3_server)
    backup = {
        "collectionRef": {"name": "docs"},
        "deletionPolicy": "Delete",
        "objectStore": target(s3_server, s3_bucket),
    }
    cluster.apply("CollectionSnapshot", "offsite", backup)
    (record,) = cluster.wait_condition(PLURAL, "offsite", "Completed", timeout=240)["status"]["snapshots"]
    assert record["shards"] == [0, 1, 2] and record["pointsCount"] == POINTS and "location" not in record
    stored = objects(s3_server, s3_bucket)
    prefix = f"backups/{cluster.namespace}/offsite/{collection}/{record['name']}"
    assert sorted(stored) == sorted(f"{prefix}/shard-{f['shard']}-{f['name']}" for f in record["shardFiles"])
    for f in record["shardFiles"]:
        key = f"{prefix}/shard-{f['shard']}-{f['name']}"
        assert f["location"] == f"s3://{s3_bucket}/{key}"
        assert (f["checksum"], f["sizeBytes"]) == (hashlib.sha256(stored[key]).hexdigest(), len(stored[key]))
        assert shard_files_on(peers[f["peer"]], collection, f["shard"]) == [], "the node copy is deleted"

    # The source collection is gone: on the nodes, its shard files could no longer be served.
    cluster.kubectl("delete", VC, "docs", "--timeout=60s")
    with closing(client(qdrant_cluster[0])) as c:
        c.delete_collection(collection)
        assert not c.collection_exists(collection)

    restored_on_every_node(cluster, qdrant_cluster, spec, restored, f"offsite/{record['name']}", expected)
    no_presigned_url_shown(cluster, (PLURAL, "offsite"), (VC, "restored"))

    cluster.kubectl("delete", PLURAL, "offsite", "--timeout=60s")
    assert objects(s3_server, s3_bucket) == {}, "deletionPolicy Delete removes every shard object"
