"""VectorCollection end to end: the operator in-process, the real API server, the dev Qdrant, real
kubectl. Every claim is checked against Qdrant's own GET /collections/{name}."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import yaml

from tests.builders import collection_spec
from tests.fixtures.operator import RESYNC_SECONDS, unique, wait_for

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PLURAL = "vectorcollections"


def qdrant_collection(qdrant_server: Any, name: str) -> dict[str, Any] | None:
    with qdrant_server.http(timeout=10) as http:
        resp = http.get(f"/collections/{name}")
        return None if resp.status_code == 404 else resp.json()["result"]


def aliases_of(qdrant_server: Any, name: str) -> list[str]:
    with qdrant_server.http(timeout=10) as http:
        return sorted(a["alias_name"] for a in http.get(f"/collections/{name}/aliases").json()["result"]["aliases"])


def example_spec(file: str, collection: str) -> dict[str, Any]:
    spec = copy.deepcopy(yaml.safe_load((EXAMPLES / file).read_text())["spec"])
    spec["collectionName"] = collection
    if "aliases" in spec:
        spec["aliases"] = [f"{collection}-current"]
    return spec


def test_complete_example_creates_every_setting(cluster, connection, qdrant_server):
    name = unique("docs")
    cluster.apply("VectorCollection", "docs", example_spec("vectorcollection-complete.yaml", name))
    body = cluster.wait_condition(PLURAL, "docs", "InSync")
    live = qdrant_collection(qdrant_server, name)
    params = live["config"]["params"]
    assert params["vectors"]["text"]["size"] == 768 and params["vectors"]["text"]["hnsw_config"]["m"] == 32
    assert params["vectors"]["title"]["quantization_config"] == {"binary": {"always_ram": True}}
    assert params["vectors"]["colbert"]["multivector_config"] == {"comparator": "max_sim"}
    assert params["sparse_vectors"]["keywords"]["modifier"] == "idf"
    assert params["sparse_vectors"]["keywords"]["index"]["datatype"] == "float16"
    assert live["config"]["strict_mode_config"]["max_query_limit"] == 1000
    assert live["config"]["metadata"]["embeddingModel"] == "e5-large-v2"
    assert params["shard_number"] == 2 and params["on_disk_payload"] is True
    assert live["config"]["hnsw_config"]["m"] == 16 and live["config"]["hnsw_config"]["payload_m"] == 16
    assert live["config"]["quantization_config"]["scalar"]["quantile"] == pytest.approx(0.99)
    assert live["config"]["optimizer_config"]["default_segment_number"] == 2
    assert sorted(live["payload_schema"]) == ["body", "created", "tenant"]
    assert live["payload_schema"]["tenant"]["params"]["is_tenant"] is True
    assert aliases_of(qdrant_server, name) == [f"{name}-current"]
    status = body["status"]
    assert status["collectionName"] == name and status["qdrantStatus"] == "green"
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert status["aliases"] == [f"{name}-current"] and status["payloadIndexes"] == ["body", "created", "tenant"]
    assert status["metadataKeys"] == ["embeddingModel", "team"]
    assert {c["type"] for c in status["conditions"]} >= {"Ready", "Reconciling", "Stalled"}


@pytest.mark.parametrize("example", ["vectorcollection-minimal.yaml", "vectorcollection-embeddings-preset.yaml"])
def test_examples_become_ready(cluster, connection, qdrant_server, example):
    name = unique("ex")
    cluster.apply("VectorCollection", "ex", example_spec(example, name))
    cluster.wait_condition(PLURAL, "ex", "InSync")
    live = qdrant_collection(qdrant_server, name)
    if "preset" in example:
        assert live["config"]["hnsw_config"]["m"] == 64 and live["config"]["hnsw_config"]["ef_construct"] == 1024
        assert live["config"]["quantization_config"]["scalar"]["always_ram"] is True
        assert live["config"]["optimizer_config"]["default_segment_number"] == 4
    columns = cluster.kubectl("get", PLURAL, "ex", "--no-headers").split()
    assert columns[1:6] == [name, "main", "True", "InSync", "0"]
    wide = cluster.kubectl("get", PLURAL, "ex", "--no-headers", "-o", "wide").split()
    assert "green" in wide[6:], "Qdrant's own status is in the wide view"


def test_in_place_changes_and_index_alias_removal(cluster, connection, qdrant_server):
    name = unique("change")
    spec = {
        "connectionRef": {"name": "main"},
        "collectionName": name,
        "vectors": [{"name": "v", "size": 8, "distance": "Cosine"}],
        "hnsw": {"m": 16},
        "optimizers": {"indexingThreshold": 20000},
        "payloadIndexes": [{"field": "tenant", "type": "Keyword"}],
        "aliases": [f"{name}-a"],
    }
    cluster.apply("VectorCollection", "change", spec)
    cluster.wait_condition(PLURAL, "change", "InSync")
    qdrant_server.reset_requests()

    changed = {
        **spec,
        "hnsw": {"m": 32},
        "optimizers": {"indexingThreshold": 30000},
        "quantization": {"scalar": {"quantile": 0.95}},
        "replicationFactor": 2,
        "payloadIndexes": [{"field": "n", "type": "Integer"}],
        "aliases": [f"{name}-b"],
    }
    cluster.apply("VectorCollection", "change", changed)

    def applied() -> dict[str, Any] | None:
        body = cluster.get(PLURAL, "change")
        done = (body.get("status") or {}).get("observedGeneration") == body["metadata"]["generation"]
        return body if done and cluster.condition(PLURAL, "change")["reason"] == "InSync" else None

    wait_for(applied, 60, "the change to be applied")
    live = qdrant_collection(qdrant_server, name)
    assert live["config"]["hnsw_config"]["m"] == 32
    assert live["config"]["optimizer_config"]["indexing_threshold"] == 30000
    assert live["config"]["quantization_config"]["scalar"]["quantile"] == pytest.approx(0.95)
    assert live["config"]["params"]["replication_factor"] == 2
    assert sorted(live["payload_schema"]) == ["n"]
    assert aliases_of(qdrant_server, name) == [f"{name}-b"]
    assert qdrant_server.count("PATCH", "/collections/{collection_name}") == 1  # it carried every changed block
    # Requeues while Qdrant re-indexes are not events: only transitions are (kopf's log lines are not posted).
    events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=change", "-o", "json")
    reasons = [e["reason"] for e in json.loads(events)["items"]]
    assert "Logging" not in reasons and reasons.count("Created") == 1 and reasons.count("Updated") == 1, reasons


def test_drift_enforced_and_reported(cluster, connection, qdrant_server):
    enforced, reported = unique("enf"), unique("rep")
    base = collection_spec(hnsw={"m": 16})
    cluster.apply("VectorCollection", "enforced", {**base, "collectionName": enforced})
    cluster.apply("VectorCollection", "reported", {**base, "collectionName": reported, "driftPolicy": "Report"})
    cluster.wait_condition(PLURAL, "enforced", "InSync")
    cluster.wait_condition(PLURAL, "reported", "InSync")
    with qdrant_server.http(timeout=10) as http:
        for name in (enforced, reported):
            http.patch(f"/collections/{name}", json={"hnsw_config": {"m": 48}}).raise_for_status()

    wait_for(
        lambda: qdrant_collection(qdrant_server, enforced)["config"]["hnsw_config"]["m"] == 16,
        60,
        "the drift sweep to set m back to 16",
    )
    body = cluster.wait_condition(PLURAL, "reported", "DriftDetected")
    assert body["status"]["drift"] == [{"field": "hnsw.m", "desired": "16", "actual": "48"}]
    assert qdrant_collection(qdrant_server, reported)["config"]["hnsw_config"]["m"] == 48
    events = cluster.kubectl("get", "events", "--field-selector", "reason=DriftCorrected", "-o", "name")
    assert events.strip(), "a DriftCorrected event marks the correction"


def test_strict_mode_metadata_and_sparse_index_change_in_place(cluster, connection, qdrant_server):
    name, owner = unique("strict"), "qdrant-collection-operator.dev/owner"
    spec = {
        "connectionRef": {"name": "main"},
        "collectionName": name,
        "vectors": [{"name": "v", "size": 4, "distance": "Dot"}],
        "sparseVectors": [{"name": "kw", "index": {"datatype": "Float16", "onDisk": True}}],
        "strictMode": {"enabled": True, "maxQueryLimit": 100},
        "metadata": {"model": "e5", "team": "search"},
    }
    cluster.apply("VectorCollection", "strict", spec)
    body = cluster.wait_condition(PLURAL, "strict", "InSync")
    live = qdrant_collection(qdrant_server, name)["config"]
    assert live["strict_mode_config"] == {"enabled": True, "max_query_limit": 100}
    assert {k: v for k, v in live["metadata"].items() if k != owner} == {"model": "e5", "team": "search"}
    assert live["metadata"][owner].startswith(f"{cluster.namespace}/strict/")
    assert live["params"]["sparse_vectors"]["kw"]["index"] == {"datatype": "float16", "on_disk": True}
    assert body["status"]["metadataKeys"] == ["model", "team"]
    with qdrant_server.http(timeout=10) as http:
        http.patch(f"/collections/{name}", json={"metadata": {"theirs": "x"}}).raise_for_status()

    changed = {
        **spec,
        "sparseVectors": [{"name": "kw", "index": {"datatype": "Uint8", "onDisk": True}}],
        "strictMode": {"enabled": True, "maxQueryLimit": 50},
        "metadata": {"model": "e5-v2"},
    }
    cluster.apply("VectorCollection", "strict", changed)

    def applied() -> dict[str, Any] | None:
        body = cluster.get(PLURAL, "strict")
        done = (body.get("status") or {}).get("observedGeneration") == body["metadata"]["generation"]
        return body if done and cluster.condition(PLURAL, "strict")["reason"] == "InSync" else None

    body = wait_for(applied, 60, "the change to be applied")
    live = qdrant_collection(qdrant_server, name)["config"]
    assert live["strict_mode_config"] == {"enabled": True, "max_query_limit": 50}
    # "team" was declared by this resource and is gone; "theirs" was not and stays; the marker stays.
    assert {k: v for k, v in live["metadata"].items() if k != owner} == {"model": "e5-v2", "theirs": "x"}
    assert live["params"]["sparse_vectors"]["kw"]["index"] == {"datatype": "uint8", "on_disk": True}
    assert body["status"]["metadataKeys"] == ["model"]

    def by_hand() -> None:
        with qdrant_server.http(timeout=10) as http:
            patch = {"strict_mode_config": {"max_query_limit": 7}, "metadata": {"model": "hand"}}
            http.patch(f"/collections/{name}", json=patch).raise_for_status()

    by_hand()
    wait_for(
        lambda: (
            (c := qdrant_collection(qdrant_server, name)["config"])["strict_mode_config"]["max_query_limit"] == 50
            and c["metadata"]["model"] == "e5-v2"
        ),
        60,
        "the drift sweep to restore the limit and the metadata",
    )
    cluster.apply("VectorCollection", "strict", {**changed, "driftPolicy": "Report"})
    wait_for(applied, 60, "driftPolicy Report to be applied")
    by_hand()
    body = cluster.wait_condition(PLURAL, "strict", "DriftDetected")
    assert body["status"]["drift"] == [
        {"field": "strictMode.maxQueryLimit", "desired": "50", "actual": "7"},
        {"field": "metadata[model]", "desired": "e5-v2", "actual": "hand"},
    ]
    live = qdrant_collection(qdrant_server, name)["config"]
    assert live["strict_mode_config"]["max_query_limit"] == 7 and live["metadata"]["model"] == "hand"


def test_collection_deleted_by_hand_is_recreated(cluster, connection, qdrant_server):
    name = unique("gone")
    cluster.apply("VectorCollection", "gone", collection_spec(collectionName=name))
    cluster.wait_condition(PLURAL, "gone", "InSync")
    with qdrant_server.http(timeout=10) as http:
        http.delete(f"/collections/{name}").raise_for_status()
    wait_for(lambda: qdrant_collection(qdrant_server, name), 60, "the collection to be re-created")


def test_a_collection_or_alias_deleted_by_hand_is_back_before_the_next_resync(
    cluster, connection, qdrant_server, operator
):
    """With drift sweeps an hour apart, the existence check (one list of collections and one of aliases per
    connection) still brings back a deleted collection and a deleted alias within seconds."""
    name = unique("exist")
    cluster.apply("VectorCollection", "exist", collection_spec(collectionName=name, aliases=[f"{name}-a"]))
    cluster.wait_condition(PLURAL, "exist", "InSync")
    ctx = operator.context
    saved = ctx.settings
    ctx.settings = saved.model_copy(update={"resync_interval_seconds": 3600, "existence_check_interval_seconds": 1})
    try:
        wait_for(lambda: qdrant_server.count("GET", "/collections") > 0, 30, "an existence check")
        time.sleep(RESYNC_SECONDS + 1)  # a sweep scheduled before the change has run: the next is an hour away
        with qdrant_server.http(timeout=10) as http:
            http.delete(f"/collections/{name}").raise_for_status()
        wait_for(lambda: qdrant_collection(qdrant_server, name), 30, "the collection to be re-created")
        wait_for(lambda: aliases_of(qdrant_server, name) == [f"{name}-a"], 30, "its alias to be back")
        with qdrant_server.http(timeout=10) as http:
            http.post(
                "/collections/aliases", json={"actions": [{"delete_alias": {"alias_name": f"{name}-a"}}]}
            ).raise_for_status()
        wait_for(lambda: aliases_of(qdrant_server, name) == [f"{name}-a"], 30, "the deleted alias to be back")
    finally:
        ctx.settings = saved


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_deletion_policy(cluster, connection, qdrant_server, policy):
    name = unique(policy.lower())
    cluster.apply("VectorCollection", "del", collection_spec(collectionName=name, deletionPolicy=policy))
    cluster.wait_condition(PLURAL, "del", "InSync")
    cluster.kubectl("delete", PLURAL, "del", "--timeout=60s")
    if policy == "Retain":
        assert qdrant_collection(qdrant_server, name) is not None
    else:
        wait_for(lambda: qdrant_collection(qdrant_server, name) is None, 30, "the collection to be deleted")


def test_immutable_change_is_stalled_and_touches_nothing(cluster, connection, qdrant_server):
    name = unique("immut")
    spec = collection_spec(collectionName=name)
    cluster.apply("VectorCollection", "immut", spec)
    cluster.wait_condition(PLURAL, "immut", "InSync")
    # CEL cannot see that the unnamed vector made a named one needs a new collection: the operator can.
    named = {**spec, "vectors": [{"name": "a", "size": 4, "distance": "Dot"}], "hnsw": {"m": 8}}
    cluster.apply("VectorCollection", "immut", named)
    body = cluster.wait_condition(PLURAL, "immut", "ImmutableFieldChanged", type_="Stalled")
    assert "vectors" in cluster.condition(PLURAL, "immut", "Stalled")["message"]
    live = qdrant_collection(qdrant_server, name)
    assert live["config"]["params"]["vectors"] == {"size": 4, "distance": "Dot"}
    assert live["config"]["hnsw_config"]["m"] == 16
    assert (body["status"]["observedGeneration"], body["status"]["appliedGeneration"]) == (2, 1)


def vector_events(cluster: Any, resource: str) -> list[tuple[str, str]]:
    events = cluster.kubectl("get", "events", "--field-selector", f"involvedObject.name={resource}", "-o", "json")
    return [(e["type"], e["message"]) for e in json.loads(events)["items"] if e["reason"] == "VectorsChanged"]


def test_named_vectors_added_and_removed_in_place(cluster, connection, qdrant_server):
    """Qdrant 1.18+ (both tiers report 1.19.0): vectors added to and removed from the spec are added to and
    removed from the collection, which keeps its points and their other vectors."""
    name = unique("vecs")
    spec = {
        "connectionRef": {"name": "main"},
        "collectionName": name,
        "vectors": [{"name": "a", "size": 4, "distance": "Dot"}, {"name": "b", "size": 3, "distance": "Cosine"}],
        "sparseVectors": [{"name": "s"}],
    }
    cluster.apply("VectorCollection", "vecs", spec)
    cluster.wait_condition(PLURAL, "vecs", "InSync")
    points = [
        {
            "id": i,
            "vector": {
                "a": [float(i), 1.0, 0.0, 0.5],
                "b": [1.0, float(i), 0.0],
                "s": {"indices": [i], "values": [0.5]},
            },
            "payload": {"n": i},
        }
        for i in (1, 2, 3)
    ]
    with qdrant_server.http(timeout=30) as http:
        http.put(f"/collections/{name}/points", params={"wait": "true"}, json={"points": points}).raise_for_status()

    def retrieved() -> dict[int, dict[str, Any]]:
        with qdrant_server.http(timeout=30) as http:
            body = {"ids": [1, 2, 3], "with_vector": True, "with_payload": True}
            reply = http.post(f"/collections/{name}/points", json=body)
            reply.raise_for_status()
            return {p["id"]: p for p in reply.json()["result"]}

    before = retrieved()

    def applied(generation: int) -> dict[str, Any] | None:
        body = cluster.get(PLURAL, "vecs")
        status = body.get("status") or {}
        done = status.get("appliedGeneration") == generation == body["metadata"]["generation"]
        return body if done and cluster.condition(PLURAL, "vecs")["reason"] == "InSync" else None

    qdrant_server.reset_requests()
    added = {
        **spec,
        "vectors": [*spec["vectors"], {"name": "c", "size": 5, "distance": "Euclid", "hnsw": {"m": 8}}],
        "sparseVectors": [{"name": "s"}, {"name": "t", "modifier": "Idf"}],
    }
    cluster.apply("VectorCollection", "vecs", added)
    wait_for(lambda: applied(2), 90, "the vectors to be added")
    params = qdrant_collection(qdrant_server, name)["config"]["params"]
    assert sorted(params["vectors"]) == ["a", "b", "c"]
    assert (params["vectors"]["c"]["size"], params["vectors"]["c"]["distance"]) == (5, "Euclid")
    assert params["vectors"]["c"]["hnsw_config"]["m"] == 8  # created bare, then tuned by the PATCH
    assert params["sparse_vectors"] == {"s": {}, "t": {"modifier": "idf"}}
    assert retrieved() == before, "the points keep every vector and payload they had"
    assert qdrant_server.count("PUT", "/collections/{collection_name}/vectors/{vector_name}") == 2
    assert qdrant_server.count("DELETE", "/collections/{collection_name}/vectors/{vector_name}") == 0
    assert vector_events(cluster, "vecs") == [("Normal", f"added vectors c, t to {name}")]

    removed = {
        **added,
        "vectors": [added["vectors"][0], added["vectors"][2]],
        "sparseVectors": [added["sparseVectors"][1]],
    }
    cluster.apply("VectorCollection", "vecs", removed)
    body = wait_for(lambda: applied(3), 90, "the vectors to be removed")
    params = qdrant_collection(qdrant_server, name)["config"]["params"]
    assert sorted(params["vectors"]) == ["a", "c"] and params["sparse_vectors"] == {"t": {"modifier": "idf"}}
    after = retrieved()
    assert {i: p["vector"] for i, p in after.items()} == {i: {"a": p["vector"]["a"]} for i, p in before.items()}
    assert {i: p["payload"] for i, p in after.items()} == {i: {"n": i} for i in (1, 2, 3)}
    assert qdrant_server.count("DELETE", "/collections/{collection_name}/vectors/{vector_name}") == 2
    assert ("Warning", f"removed vectors b, s from {name} (their data is gone)") in vector_events(cluster, "vecs")
    assert body["status"].get("drift", []) == [] and cluster.condition(PLURAL, "vecs", "Stalled")["status"] == "False"
    assert body["status"]["vectorNames"] == ["a", "c", "t"]

    # A vector added in Qdrant by hand was never declared here: Enforce leaves it, with its data, and says so.
    with qdrant_server.http(timeout=30) as http:
        http.put(
            f"/collections/{name}/vectors/manual", json={"dense": {"size": 2, "distance": "Dot"}}
        ).raise_for_status()
    wait_for(lambda: "manual" in cluster.condition(PLURAL, "vecs")["message"], 30, "the kept vector named in Ready")
    time.sleep(2 * RESYNC_SECONDS)
    assert "manual" in qdrant_collection(qdrant_server, name)["config"]["params"]["vectors"]
    assert qdrant_server.count("DELETE", "/collections/{collection_name}/vectors/{vector_name}") == 2


def test_foreign_collection_refused_unless_adopted(cluster, connection, qdrant_server):
    name = unique("foreign")
    with qdrant_server.http(timeout=10) as http:
        http.put(f"/collections/{name}", json={"vectors": {"size": 4, "distance": "Dot"}}).raise_for_status()
    spec = collection_spec(collectionName=name)
    cluster.apply("VectorCollection", "foreign", spec)
    cluster.wait_condition(PLURAL, "foreign", "AlreadyExists", type_="Stalled")
    cluster.apply("VectorCollection", "foreign", {**spec, "onExisting": "Adopt"})
    cluster.wait_condition(PLURAL, "foreign", "InSync")
    marker = qdrant_collection(qdrant_server, name)["config"]["metadata"]["qdrant-collection-operator.dev/owner"]
    assert marker.startswith(f"{cluster.namespace}/foreign/")


def test_two_resources_one_collection(cluster, connection, qdrant_server):
    name = unique("shared")
    spec = collection_spec(collectionName=name)
    cluster.apply("VectorCollection", "first", spec)
    cluster.wait_condition(PLURAL, "first", "InSync")
    cluster.apply("VectorCollection", "second", {**spec, "onExisting": "Adopt"})
    body = cluster.wait_condition(PLURAL, "second", "ResourceConflict", type_="Stalled")
    assert f"{cluster.namespace}/first" in cluster.condition(PLURAL, "second", "Stalled")["message"]
    assert cluster.condition(PLURAL, "first")["reason"] == "InSync"
    assert body["status"]["observedGeneration"] == 1 and "appliedGeneration" not in body["status"]


def qdrant_calls(connection: str) -> float:
    """Calls the in-process operator's client made for one connection (its Prometheus histogram)."""
    return sum(
        sample.value
        for metric in prometheus_client.REGISTRY.collect()
        if metric.name == "qdrant_operator_client_request_duration_seconds"
        for sample in metric.samples
        if sample.name.endswith("_count") and sample.labels.get("connection") == connection
    )


def test_connection_down_reports_without_calling_qdrant(cluster, operator):
    cluster.apply(
        "QdrantConnection",
        "down",
        {
            "url": "http://127.0.0.1:9",
            "environment": "Testing",
            "circuitBreaker": {"failureThreshold": 1, "openSeconds": 300},
        },
    )
    cluster.wait_condition("qdrantconnections", "down", "CircuitOpen", status="False")
    key = f"{cluster.namespace}/down"
    before = qdrant_calls(key)
    cluster.apply("VectorCollection", "down", collection_spec("down"))
    body = cluster.wait_condition(PLURAL, "down", "ConnectionNotReady", status="False")
    assert "circuit breaker open" in cluster.condition(PLURAL, "down")["message"]
    assert body["status"]["observedGeneration"] == 0  # the CRD's default: nothing was decided about generation 1
    assert qdrant_calls(key) == before
    # The handler requeues (kopf logs that at ERROR); one Warning marks the transition, and no log line
    # becomes an Event.
    events = json.loads(
        cluster.kubectl(
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=down,involvedObject.kind=VectorCollection",
            "-o",
            "json",
        )
    )["items"]
    assert [e["reason"] for e in events] == ["ConnectionNotReady"], [(e["reason"], e["message"]) for e in events]


def writes_to(qdrant_server: Any, collection: str) -> list[str]:
    """The write requests that touched one collection (the dev server's log, or the counting proxy's)."""
    return [
        f"{r['method']} {r['template']}"
        for r in qdrant_server.requests()["requests"]
        if r["method"] != "GET" and f"/collections/{collection}" in r["path"]
    ]


def test_operator_restart_converges_without_duplicate_work(cluster, connection, qdrant_server, operator):
    qdrant_server.require_counts()
    changed, created = unique("restart-a"), unique("restart-b")
    base = collection_spec(hnsw={"m": 16})
    cluster.apply("VectorCollection", "changed", {**base, "collectionName": changed})
    cluster.wait_condition(PLURAL, "changed", "InSync")
    qdrant_server.reset_requests()
    operator.stop()
    try:  # while the operator is down: one spec change and one new resource
        cluster.apply("VectorCollection", "changed", {**base, "collectionName": changed, "hnsw": {"m": 24}})
        cluster.apply(
            "VectorCollection",
            "created",
            {**base, "collectionName": created, "payloadIndexes": [{"field": "k", "type": "Keyword"}]},
        )
    finally:
        operator.start()
    for name in ("changed", "created"):
        wait_for(
            lambda n=name: (
                cluster.get(PLURAL, n).get("status", {}).get("observedGeneration")
                == cluster.get(PLURAL, n)["metadata"]["generation"]
            ),
            60,
            f"{name} to converge",
        )
    cluster.wait_condition(PLURAL, "created", "InSync")
    assert qdrant_collection(qdrant_server, changed)["config"]["hnsw_config"]["m"] == 24
    assert writes_to(qdrant_server, changed) == ["PATCH /collections/{collection_name}"]
    assert writes_to(qdrant_server, created) == [
        "PUT /collections/{collection_name}",
        "PUT /collections/{collection_name}/index",
    ]


def test_create_whose_reply_is_lost_is_not_repeated(cluster, operator, qdrant_server):
    qdrant_server.require_dev()
    cluster.apply(
        "QdrantConnection",
        "slow",
        {"url": qdrant_server.url, "environment": "Testing", "timeouts": {"requestSeconds": 1}},
    )
    cluster.wait_condition("qdrantconnections", "slow", "Connected")
    name = unique("lost")
    qdrant_server.reset_requests()
    qdrant_server.set_faults(create_timeout_but_applies=3)
    try:
        cluster.apply("VectorCollection", "lost", collection_spec("slow", collectionName=name))
        cluster.wait_condition(PLURAL, "lost", "InSync")
    finally:
        qdrant_server.clear_faults()
    assert writes_to(qdrant_server, name) == ["PUT /collections/{collection_name}"]


def test_paused_and_unmanaged_annotations(cluster, connection, qdrant_server):
    name = unique("paused")
    spec = collection_spec(collectionName=name, hnsw={"m": 16})
    cluster.apply("VectorCollection", "paused", spec)
    cluster.wait_condition(PLURAL, "paused", "InSync")
    cluster.kubectl("annotate", PLURAL, "paused", "qdrant.collection-operator.dev/paused=true")
    cluster.wait_condition(PLURAL, "paused", "Paused", type_="Paused")
    cluster.apply(
        "VectorCollection",
        "paused",
        {**spec, "hnsw": {"m": 20}},
        annotations={"qdrant.collection-operator.dev/paused": "true"},
    )
    # Paused is the verdict on generation 2 too: kstatus reads the resource as Current, not InProgress.
    wait_for(
        lambda: cluster.get(PLURAL, "paused")["status"].get("observedGeneration") == 2,
        30,
        "the paused verdict on generation 2",
    )
    assert cluster.condition(PLURAL, "paused")["reason"] == "InSync", "Ready keeps the last verdict while paused"
    assert qdrant_collection(qdrant_server, name)["config"]["hnsw_config"]["m"] == 16
    cluster.kubectl("annotate", PLURAL, "paused", "qdrant.collection-operator.dev/paused-")
    wait_for(
        lambda: qdrant_collection(qdrant_server, name)["config"]["hnsw_config"]["m"] == 20,
        60,
        "the change held back by the pause to be applied",
    )
    cluster.wait_condition(PLURAL, "paused", "InSync")

    cluster.kubectl("annotate", PLURAL, "paused", "qdrant.collection-operator.dev/managed=false")
    cluster.wait_condition(PLURAL, "paused", "Unmanaged", type_="Unmanaged")
    cluster.kubectl("patch", PLURAL, "paused", "--type=merge", "-p", '{"spec":{"deletionPolicy":"Delete"}}')
    cluster.kubectl("delete", PLURAL, "paused", "--timeout=60s")
    assert qdrant_collection(qdrant_server, name) is not None, "managed=false never touches Qdrant, even on delete"
