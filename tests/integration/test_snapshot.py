"""CollectionSnapshot and restores end to end: the operator in-process, the real API server, the dev Qdrant
(or QDRANT_URL), real kubectl. Every claim is checked against what Qdrant itself serves."""

from __future__ import annotations

import copy
import hashlib
import random
from contextlib import closing
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import yaml
from qdrant_client import models

from collection_operator.api.snapshot import human_size
from tests.builders import collection_spec
from tests.fixtures.controlplane import KubectlError
from tests.fixtures.operator import unique, wait_for

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PLURAL = "collectionsnapshots"
VC = "vectorcollections"
RESTORE_FROM = "qdrant.collection-operator.dev/restore-from"
DIM = 384  # as in examples/vectorcollection-restore.yaml


def example(file: str) -> tuple[str, dict[str, Any]]:
    doc = yaml.safe_load((EXAMPLES / file).read_text())
    return doc["metadata"]["name"], copy.deepcopy(doc["spec"])


def points(ids: range | list[int]) -> list[models.PointStruct]:
    rng = random.Random(7)
    return [
        models.PointStruct(
            id=i,
            vector=[rng.random() for _ in range(DIM)],
            payload={"n": i, "tag": f"t{i % 3}", "doc": {"title": f"doc {i}"}},
        )
        for i in ids
    ]


def source_collection(cluster: Any, qdrant_server: Any, name: str = "docs", count: int = 20) -> str:
    """A Ready VectorCollection `name` whose Qdrant collection holds `count` points with payloads."""
    collection = unique("src")
    cluster.apply(
        "VectorCollection",
        name,
        {
            "connectionRef": {"name": "main"},
            "collectionName": collection,
            "vectors": [{"size": DIM, "distance": "Cosine"}],
        },
    )
    cluster.wait_condition(VC, name, "InSync")
    with closing(qdrant_server.client()) as client:
        client.upsert(collection, points=points(range(count)), wait=True)
    return collection


def contents(qdrant_server: Any, collection: str) -> dict[Any, tuple[dict[str, Any], list[float]]]:
    with closing(qdrant_server.client()) as client:
        found, _ = client.scroll(collection, limit=1000, with_payload=True, with_vectors=True)
    return {p.id: (p.payload, [round(x, 5) for x in p.vector]) for p in found}  # type: ignore[union-attr]


def qdrant_snapshots(qdrant_server: Any, collection: str) -> list[str]:
    with closing(qdrant_server.client()) as client:
        return sorted(s.name for s in client.list_snapshots(collection))


def take_once(cluster: Any, name: str, collection_ref: str = "docs", **spec: Any) -> dict[str, Any]:
    cluster.apply("CollectionSnapshot", name, {"collectionRef": {"name": collection_ref}, **spec})
    return cluster.wait_condition(PLURAL, name, "Completed", timeout=60)["status"]


def test_one_off_snapshot_checksum_and_deletion_policy(cluster, connection, qdrant_server):
    collection = source_collection(cluster, qdrant_server, name="minimal")  # the example's collectionRef
    name, spec = example("collectionsnapshot-once.yaml")
    cluster.apply("CollectionSnapshot", name, spec)
    status = cluster.wait_condition(PLURAL, name, "Completed", timeout=60)["status"]
    assert status["phase"] == "Completed" and status["collectionName"] == collection
    [record] = status["snapshots"]
    assert record["pointsCount"] == 20 and status["lastSnapshotTime"] == record["createdAt"]
    with qdrant_server.http(timeout=30) as http:
        served = http.get(f"/collections/{collection}/snapshots/{record['name']}")
        served.raise_for_status()
    assert hashlib.sha256(served.content).hexdigest() == record["checksum"]
    assert len(served.content) == record["sizeBytes"]
    assert (status["count"], status["totalSize"]) == (1, human_size(record["sizeBytes"]))
    row = cluster.plane.admin.row(PLURAL, name, "-n", cluster.namespace)
    assert [row[c] for c in ("COLLECTION", "PHASE", "SNAPSHOTS", "SIZE", "REASON")] == [
        "minimal",
        "Completed",
        "1",
        human_size(record["sizeBytes"]),
        "Completed",
    ]

    deleted = take_once(cluster, "deleted", "minimal", deletionPolicy="Delete")["snapshots"][0]["name"]
    cluster.kubectl("delete", PLURAL, name, "deleted", "--timeout=60s")
    assert qdrant_snapshots(qdrant_server, collection) == [record["name"]], (
        "Retain keeps its file, Delete removes its own and nothing else"
    )
    assert deleted != record["name"]


def test_snapshots_of_one_collection_at_once_keep_their_own_files(cluster, connection, qdrant_server):
    """Qdrant names snapshot files by the second: two taken at once must still be two files, each with the
    checksum its record carries, and deleting one resource must leave the other's file alone."""
    collection = source_collection(cluster, qdrant_server)
    kept, dropped = "kept", "dropped"
    for name, policy in ((kept, "Retain"), (dropped, "Delete")):
        cluster.apply("CollectionSnapshot", name, {"collectionRef": {"name": "docs"}, "deletionPolicy": policy})
    records = {
        n: cluster.wait_condition(PLURAL, n, "Completed", timeout=60)["status"]["snapshots"] for n in (kept, dropped)
    }
    [keep], [drop] = records[kept], records[dropped]
    assert keep["name"] != drop["name"]
    assert qdrant_snapshots(qdrant_server, collection) == sorted([keep["name"], drop["name"]])
    with qdrant_server.http(timeout=30) as http:
        for record in (keep, drop):
            served = http.get(f"/collections/{collection}/snapshots/{record['name']}")
            assert hashlib.sha256(served.raise_for_status().content).hexdigest() == record["checksum"]
    cluster.kubectl("delete", PLURAL, dropped, "--timeout=60s")
    assert qdrant_snapshots(qdrant_server, collection) == [keep["name"]]


def test_restore_example_into_new_collection(cluster, connection, qdrant_server):
    source = source_collection(cluster, qdrant_server, name="minimal")
    snapshot, spec = example("collectionsnapshot-once.yaml")
    cluster.apply("CollectionSnapshot", snapshot, spec)
    taken = cluster.wait_condition(PLURAL, snapshot, "Completed", timeout=60)["status"]["snapshots"][0]["name"]

    name, spec = example("vectorcollection-restore.yaml")
    restored = unique("restored")
    cluster.apply("VectorCollection", name, {**spec, "collectionName": restored})
    body = cluster.wait_condition(VC, name, "InSync", timeout=90)
    assert body["status"]["restoredFrom"] == f"{snapshot}/{taken}"
    assert body["status"]["pointsCount"] == 20
    assert contents(qdrant_server, restored) == contents(qdrant_server, source)
    with closing(qdrant_server.client()) as client:
        hits = client.query_points(restored, query=points(range(4))[3].vector, limit=1, with_payload=True).points
        marker = client.get_collection(restored).config.metadata["qdrant-collection-operator.dev/owner"]
    assert hits[0].id == 3 and hits[0].payload["doc"] == {"title": "doc 3"}
    assert marker == f"{cluster.namespace}/{name}/{body['metadata']['uid']}", "the restored copy is its own"
    assert cluster.condition(VC, "minimal")["reason"] == "InSync", "the source keeps its collection"
    events = cluster.kubectl(
        "get", "events", "--field-selector", f"reason=Restored,involvedObject.name={name}", "-o", "name"
    )
    assert events.strip()


def reconciles() -> float:
    return sum(
        sample.value
        for metric in prometheus_client.REGISTRY.collect()
        if metric.name == "qdrant_operator_reconciles"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("kind") == "VectorCollection"
    )


def test_in_place_restore_runs_once_across_restart(cluster, connection, qdrant_server, operator):
    collection = source_collection(cluster, qdrant_server)
    record = take_once(cluster, "before")["snapshots"][0]
    original = contents(qdrant_server, collection)
    with closing(qdrant_server.client()) as client:
        client.delete(collection, points_selector=models.PointIdsList(points=list(range(10))), wait=True)
        client.upsert(collection, points=points([100]), wait=True)

    value = f"before/{record['name']}"
    cluster.kubectl("annotate", VC, "docs", f"{RESTORE_FROM}={value}")
    wait_for(
        lambda: (cluster.get(VC, "docs").get("status") or {}).get("restoredFrom") == value,
        90,
        "status.restoredFrom to record the restore",
    )
    cluster.wait_condition(VC, "docs", "InSync")
    assert contents(qdrant_server, collection) == original

    with closing(qdrant_server.client()) as client:
        client.upsert(collection, points=points([200]), wait=True)
    recovers = qdrant_server.count("PUT", "/collections/{collection_name}/snapshots/recover")
    operator.restart()
    before = reconciles()
    wait_for(lambda: reconciles() >= before + 2, 60, "the operator to resume and sweep the collection again")
    assert 200 in contents(qdrant_server, collection), "the restore ran again after the restart"
    assert qdrant_server.count("PUT", "/collections/{collection_name}/snapshots/recover") == recovers
    assert cluster.get(VC, "docs")["status"]["restoredFrom"] == value


def test_schedule_and_retention(cluster, connection, qdrant_server):
    collection = source_collection(cluster, qdrant_server)
    name, spec = example("collectionsnapshot-scheduled.yaml")
    cluster.apply("CollectionSnapshot", name, spec)
    status = cluster.wait_condition(PLURAL, name, "Scheduled")["status"]
    assert status["phase"] == "Pending" and status["nextScheduleTime"].endswith("T03:00:00Z")
    assert "snapshots" not in status or status["snapshots"] == []

    cluster.apply("CollectionSnapshot", name, {**spec, "schedule": "* * * * *", "retention": {"keepLast": 1}})

    def records() -> list[str]:
        return [r["name"] for r in (cluster.get(PLURAL, name).get("status") or {}).get("snapshots") or []]

    [first] = wait_for(records, 75, "the first scheduled snapshot")
    [second] = wait_for(lambda: [r for r in records() if r != first], 75, "the second scheduled snapshot")
    assert records() == [second], "keepLast 1 keeps exactly one record"
    assert qdrant_snapshots(qdrant_server, collection) == [second], "the older file is deleted in Qdrant"
    status = cluster.get(PLURAL, name)["status"]
    assert status["nextScheduleTime"] > status["lastSnapshotTime"] and status["phase"] == "Completed"

    cluster.kubectl("delete", PLURAL, name, "--timeout=60s")  # the example's deletionPolicy is Delete
    assert qdrant_snapshots(qdrant_server, collection) == []


def test_connection_down_fails_with_reason_then_retries(cluster, operator, qdrant_server_factory):
    server = qdrant_server_factory()
    # The Testing profile's breaker stays open 30 s: each retry inside it fails again, doubling the backoff.
    breaker = {"openSeconds": 2}
    cluster.apply("QdrantConnection", "flaky", {"url": server.url, "environment": "Testing", "circuitBreaker": breaker})
    cluster.wait_condition("qdrantconnections", "flaky", "Connected")
    cluster.apply("VectorCollection", "docs", collection_spec("flaky"))
    cluster.wait_condition(VC, "docs", "InSync")
    server.stop()
    try:
        cluster.apply("CollectionSnapshot", "down", {"collectionRef": {"name": "docs"}})
        body = cluster.wait_condition(PLURAL, "down", "ConnectionNotReady", status="False", timeout=60)
        assert body["status"]["phase"] == "Failed"
        assert "retrying in" in cluster.condition(PLURAL, "down")["message"]
    finally:
        server.start()
    cluster.wait_condition(PLURAL, "down", "Completed", timeout=90)


def test_bad_input(cluster, connection):
    cluster.apply("CollectionSnapshot", "nothing", {"collectionRef": {"name": "nothing"}})
    cluster.wait_condition(PLURAL, "nothing", "CollectionNotFound", type_="Stalled")
    assert "VectorCollection" in cluster.condition(PLURAL, "nothing", "Stalled")["message"]
    assert cluster.get(PLURAL, "nothing")["status"]["phase"] == "Failed"

    cluster.apply("CollectionSnapshot", "badcron", {"collectionRef": {"name": "nothing"}, "schedule": "61 * * * *"})
    cluster.wait_condition(PLURAL, "badcron", "InvalidSpec", type_="Stalled")
    assert "not a valid cron expression" in cluster.condition(PLURAL, "badcron", "Stalled")["message"]

    with pytest.raises(KubectlError, match=r"spec\.schedule"):
        cluster.apply("CollectionSnapshot", "shape", {"collectionRef": {"name": "x"}, "schedule": "every minute"})
    with pytest.raises(KubectlError, match="keepLast"):
        cluster.apply(
            "CollectionSnapshot",
            "zero",
            {"collectionRef": {"name": "x"}, "schedule": "@daily", "retention": {"keepLast": 0}},
        )
    cluster.apply(
        "VectorCollection", "restore", collection_spec(source={"snapshot": {"snapshotRef": {"name": "nothing"}}})
    )
    cluster.wait_condition(VC, "restore", "SnapshotNotReady", status="False")
