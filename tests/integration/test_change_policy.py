"""changePolicy end to end: the plan in status, Manual approval by hash, and BlueGreen migrations (copy with
queries through the name answering all along, re-embedding switched on approval, rollback, the previous
collection deleted after the window, an operator killed mid-copy). The real API server, kubectl, qdrant-client
and the dev or real Qdrant; every claim is checked in Qdrant itself."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from typing import Any

import pytest
from qdrant_client import models

from tests.fixtures.operator import unique, wait_for
from tests.integration.test_operator_process import BIN, operator_env, solo  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration
VC = "vectorcollections"
APPROVE = "qdrant.collection-operator.dev/approve-plan"


def collection(qdrant_server: Any, name: str) -> dict[str, Any] | None:
    with qdrant_server.http(timeout=10) as http:
        resp = http.get(f"/collections/{name}")
        return None if resp.status_code == 404 else resp.json()["result"]


def aliases(qdrant_server: Any) -> dict[str, str]:
    with qdrant_server.http(timeout=10) as http:
        found = http.get("/aliases").json()["result"]["aliases"]
    return {a["alias_name"]: a["collection_name"] for a in found}


def events(cluster: Any, reason: str) -> list[str]:
    out = cluster.kubectl("get", "events", "--field-selector", f"reason={reason}", "-o", "jsonpath={.items[*].message}")
    return [m for m in out.split("\n") if m] if out else []


def fill(qdrant_server: Any, name: str, count: int, dim: int, start: int = 0) -> None:
    rng = random.Random(count + start)
    client = qdrant_server.client(timeout=60)
    for first in range(start, start + count, 1000):
        points = [
            models.PointStruct(id=i, vector=[rng.random() for _ in range(dim)], payload={"n": i, "kind": "doc"})
            for i in range(first, min(first + 1000, start + count))
        ]
        client.upsert(name, points=points, wait=True)
    client.close()


def columns(cluster: Any, name: str) -> dict[str, str]:
    """The VectorCollection's `kubectl get -o wide` row, by column."""
    return cluster.plane.admin.row(VC, name, "-n", cluster.namespace, "-o", "wide")


def base_spec(name: str, **fields: Any) -> dict[str, Any]:
    return {"connectionRef": {"name": "main"}, "collectionName": name, **fields}


def test_a_manual_plan_is_shown_held_approved_by_hash_and_applied_once(cluster, connection, qdrant_server):
    qdrant_server.require_counts()
    name = unique("plan")
    manual = {"approval": "Manual"}
    vectors = [{"size": 4, "distance": "Dot"}]
    cluster.apply("VectorCollection", "plan", base_spec(name, vectors=vectors, hnsw={"m": 16}, changePolicy=manual))
    cluster.wait_condition(VC, "plan", "InSync")
    qdrant_server.reset_requests()

    cluster.apply("VectorCollection", "plan", base_spec(name, vectors=vectors, hnsw={"m": 32}, changePolicy=manual))
    body = cluster.wait_condition(VC, "plan", "AwaitingApproval", status="False")
    plan = body["status"]["plan"]
    assert plan["phase"] == "AwaitingApproval" and plan["reindex"] is True
    assert plan["actions"] == ["set hnsw.m: 16 -> 32"] and plan["generation"] == body["metadata"]["generation"]
    assert plan["hash"] in cluster.condition(VC, "plan")["message"]
    row = columns(cluster, "plan")
    assert (row["PLAN"], row["PLAN-HASH"]) == ("AwaitingApproval", plan["hash"]), row
    assert row["MESSAGE"].startswith(f"plan {plan['hash']} waits for approval"), row
    assert wait_for(lambda: events(cluster, "PlanAwaitingApproval"), 20, "the PlanAwaitingApproval Event")
    assert collection(qdrant_server, name)["config"]["hnsw_config"]["m"] == 16

    cluster.kubectl("annotate", VC, "plan", f"{APPROVE}=0123456789ab")  # not this plan's hash
    time.sleep(4)  # a resync (3 s in tests) passes too
    assert cluster.condition(VC, "plan")["reason"] == "AwaitingApproval"
    assert collection(qdrant_server, name)["config"]["hnsw_config"]["m"] == 16

    cluster.kubectl("annotate", VC, "plan", f"{APPROVE}={plan['hash']}", "--overwrite")
    body = cluster.wait_condition(VC, "plan", "InSync")
    assert body["status"]["plan"]["phase"] == "Applied" and body["status"]["plan"]["hash"] == plan["hash"]
    assert "pendingPlan" not in body["status"]
    row = columns(cluster, "plan")
    assert (row["PLAN"], row["PLAN-HASH"]) == ("", plan["hash"]), row  # the Plan column: only what needs a look
    assert collection(qdrant_server, name)["config"]["hnsw_config"]["m"] == 32
    assert wait_for(lambda: events(cluster, "PlanApproved"), 20, "the PlanApproved Event")
    time.sleep(7)  # two resyncs: the plan is applied once
    assert qdrant_server.count("PATCH", "/collections/{collection_name}") == 1


def test_shard_number_change_is_blue_green_and_queries_through_the_name_never_fail(cluster, connection, qdrant_server):
    name = unique("bg")
    blue_green = {"immutable": "BlueGreen", "rollbackWindow": "1h"}
    spec = base_spec(name, vectors=[{"size": 8, "distance": "Cosine"}], shardNumber=1, changePolicy=blue_green)
    spec["aliases"] = [f"{name}-current"]
    spec["payloadIndexes"] = [{"field": "kind", "type": "Keyword"}]
    cluster.apply("VectorCollection", "bg", spec)
    body = cluster.wait_condition(VC, "bg", "InSync")
    blue = body["status"]["physicalCollection"]
    assert blue.startswith(f"{name}-") and aliases(qdrant_server)[name] == blue
    fill(qdrant_server, name, 20_000, 8)  # written through the name, as applications do

    stop, answered, failed = threading.Event(), [0], []

    def query() -> None:
        client = qdrant_server.client(timeout=10)
        rng = random.Random(7)
        while not stop.is_set():
            try:
                hits = client.query_points(name, query=[rng.random() for _ in range(8)], limit=3).points
                answered[0] += 1
                if len(hits) != 3:
                    failed.append(f"{len(hits)} hits")
            except Exception as exc:  # every failure counts, whatever its kind
                failed.append(repr(exc))
            time.sleep(0.02)
        client.close()

    worker = threading.Thread(target=query, daemon=True)
    worker.start()
    began = time.monotonic()
    cluster.apply("VectorCollection", "bg", {**spec, "shardNumber": 2})
    body = wait_for(
        lambda: (b := cluster.get(VC, "bg"))["status"].get("physicalCollection") not in (None, blue) and b,
        300,
        "the switch",
    )
    migration_seconds = time.monotonic() - began
    cluster.wait_condition(VC, "bg", "InSync", timeout=60)
    time.sleep(1)
    stop.set()
    worker.join(15)
    green = body["status"]["physicalCollection"]
    print(
        f"\n[{qdrant_server.tier}] blue/green shard change of 20,000 points: switched after {migration_seconds:.1f} s;"
        f" {answered[0]} queries through the name answered, {len(failed)} failed"
    )
    assert not failed, failed[:5]
    assert answered[0] > 20
    live = collection(qdrant_server, green)
    assert live["config"]["params"]["shard_number"] == 2 and "kind" in live["payload_schema"]
    with qdrant_server.http(timeout=30) as http:
        counted = http.post(f"/collections/{green}/points/count", json={"exact": True}).json()["result"]["count"]
    assert counted == 20_000
    assert aliases(qdrant_server)[name] == green and aliases(qdrant_server)[f"{name}-current"] == green
    body = cluster.get(VC, "bg")
    assert body["status"]["previousCollection"] == blue and collection(qdrant_server, blue) is not None
    assert body["status"]["plan"]["migration"] == "Copy" and body["status"]["plan"]["phase"] == "Applied"
    assert "migration" not in body["status"]
    assert events(cluster, "Switched") and events(cluster, "MigrationStarted")

    cluster.apply("VectorCollection", "bg", {**spec, "shardNumber": 2, "deletionPolicy": "Delete"})
    cluster.wait_condition(VC, "bg", "InSync")
    cluster.kubectl("delete", VC, "bg", "--timeout=60s")
    assert collection(qdrant_server, green) is None and collection(qdrant_server, blue) is None
    assert name not in aliases(qdrant_server) and f"{name}-current" not in aliases(qdrant_server)


def test_a_plain_collection_moves_to_the_alias_layout_and_the_unresolved_moment_is_measured(
    cluster, connection, qdrant_server
):
    """A collection made under Reject is a plain collection; its first BlueGreen migration must delete it before
    its name can become an alias. Queries run through the name all along; the gap is reported."""
    import re

    name = unique("plain")
    spec = base_spec(name, vectors=[{"size": 8, "distance": "Dot"}], shardNumber=1)
    cluster.apply("VectorCollection", "plain", spec)
    cluster.wait_condition(VC, "plain", "InSync")
    fill(qdrant_server, name, 5000, 8)
    stop, answered, failed = threading.Event(), [0], []

    def query() -> None:
        client = qdrant_server.client(timeout=10)
        while not stop.is_set():
            try:
                client.query_points(name, query=[0.5] * 8, limit=1)
                answered[0] += 1
            except Exception as exc:  # every failure counts
                failed.append(f"{type(exc).__name__} {getattr(exc, 'status_code', '')} {exc}")
        client.close()

    worker = threading.Thread(target=query, daemon=True)
    worker.start()
    cluster.apply("VectorCollection", "plain", {**spec, "shardNumber": 2, "changePolicy": {"immutable": "BlueGreen"}})
    wait_for(lambda: name in aliases(qdrant_server), 180, "the name to become an alias")
    body = cluster.wait_condition(VC, "plain", "InSync", timeout=60)
    stop.set()
    worker.join(15)
    gap = re.search(r"did not resolve for (\d+) ms", " ".join(events(cluster, "NameUnresolved")))
    assert gap is not None
    print(
        f"\n[{qdrant_server.tier}] plain -> alias layout: the name did not resolve for {gap.group(1)} ms; "
        f"{len(failed)} of {answered[0] + len(failed)} back-to-back queries through the name failed"
    )
    green = body["status"]["physicalCollection"]
    assert aliases(qdrant_server)[name] == green and "previousCollection" not in body["status"]
    with qdrant_server.http(timeout=30) as http:
        assert http.post(f"/collections/{green}/points/count", json={"exact": True}).json()["result"]["count"] == 5000
    assert all(" 404 " in f for f in failed), failed[:3]  # the name missing for that moment, nothing else


def test_vector_size_change_waits_for_reembedding_is_switched_on_approval_and_rolls_back(
    cluster, connection, qdrant_server
):
    name = unique("emb")
    policy = {"immutable": "BlueGreen", "rollbackWindow": "20s"}
    spec = base_spec(name, vectors=[{"size": 4, "distance": "Dot"}], changePolicy=policy)
    cluster.apply("VectorCollection", "emb", spec)
    blue = cluster.wait_condition(VC, "emb", "InSync")["status"]["physicalCollection"]
    fill(qdrant_server, name, 50, 4)

    cluster.apply("VectorCollection", "emb", {**spec, "vectors": [{"size": 8, "distance": "Dot"}]})
    body = cluster.wait_condition(VC, "emb", "AwaitingReembedding", status="False")
    green = body["status"]["migration"]["target"]
    assert green != blue and collection(qdrant_server, green)["config"]["params"]["vectors"]["size"] == 8
    assert aliases(qdrant_server)[name] == blue, "the name stays on the old vectors"
    assert green in cluster.condition(VC, "emb")["message"]
    fill(qdrant_server, green, 10, 8)  # the re-embedding pipeline, part way
    body = wait_for(
        lambda: (b := cluster.get(VC, "emb"))["status"]["migration"].get("targetPoints") == 10 and b, 30, "progress"
    )
    assert aliases(qdrant_server)[name] == blue
    cluster.kubectl("annotate", VC, "emb", f"{APPROVE}={body['status']['plan']['hash']}", "--overwrite")
    body = cluster.wait_condition(VC, "emb", "InSync")
    assert aliases(qdrant_server)[name] == green and body["status"]["previousCollection"] == blue

    cluster.apply("VectorCollection", "emb", spec)  # reverted within the window: back without copying
    wait_for(lambda: aliases(qdrant_server).get(name) == blue, 30, "the rollback")
    # The alias moves before the status is written, and the status before it still says InSync.
    wait_for(lambda: cluster.get(VC, "emb")["status"].get("previousCollection") == green, 30, "the rollback in status")
    cluster.wait_condition(VC, "emb", "InSync")
    assert events(cluster, "RolledBack")
    with qdrant_server.http(timeout=10) as http:
        assert http.post(f"/collections/{blue}/points/count", json={"exact": True}).json()["result"]["count"] == 50
    wait_for(lambda: collection(qdrant_server, green) is None, 60, "the previous collection deleted after the window")
    body = wait_for(lambda: "previousCollection" not in (b := cluster.get(VC, "emb"))["status"] and b, 30, "status")
    assert events(cluster, "PreviousDeleted") and collection(qdrant_server, blue) is not None


def test_an_operator_killed_twice_mid_copy_resumes_and_loses_nothing(control_plane, solo, qdrant_server, tmp_path):  # noqa: F811
    """The operator as its own process, SIGKILLed twice while it copies (pages of 100 points, progress written
    every 0.3 s, Qdrant slowed by 30 ms a request so the copy takes long enough to be killed in)."""
    qdrant_server.require_dev()
    cluster = solo
    env = operator_env(
        KUBECONFIG=str(control_plane.operator_kubeconfig),
        QDRANT_OPERATOR_METRICS_PORT="0",
        QDRANT_OPERATOR_HEALTH_PORT="0",
        QDRANT_OPERATOR_RESYNC_INTERVAL_SECONDS="3",
        QDRANT_OPERATOR_MIGRATION_PAGE_POINTS="100",
        QDRANT_OPERATOR_MIGRATION_COPY_SECONDS="0.3",
    )
    log = (tmp_path / "operator.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([str(BIN), "run", "-n", cluster.namespace], env=env, stdout=log, stderr=log)

    proc = start()
    name = unique("kill")
    spec = base_spec(name, vectors=[{"size": 4, "distance": "Dot"}], changePolicy={"immutable": "BlueGreen"})
    try:
        cluster.apply("QdrantConnection", "main", {"url": qdrant_server.url, "environment": "Testing"})
        cluster.apply("VectorCollection", "kill", spec)
        blue = cluster.wait_condition(VC, "kill", "InSync", timeout=90)["status"]["physicalCollection"]
        fill(qdrant_server, name, 6000, 4)
        qdrant_server.set_faults(latency_ms=30)
        qdrant_server.reset_requests()
        cluster.apply("VectorCollection", "kill", {**spec, "shardNumber": 2})
        progress = []
        for _ in range(2):
            seen = max(progress, default=0)

            def copied(after: int = seen) -> int | None:
                done = ((cluster.get(VC, "kill")["status"].get("migration") or {}).get("copiedPoints")) or 0
                return done if done > after else None

            progress.append(wait_for(copied, 120, "copy progress"))
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            proc = start()
        body = cluster.wait_condition(VC, "kill", "InSync", timeout=300)
    finally:
        qdrant_server.clear_faults()
        proc.terminate()
        proc.wait(30)
        log.close()
    green = body["status"]["physicalCollection"]
    assert green != blue and progress[0] < progress[1] < 6000, progress
    with qdrant_server.http(timeout=30) as http:
        count = http.post(f"/collections/{green}/points/count", json={"exact": True}).json()["result"]["count"]
    upserts = qdrant_server.count("PUT", "/collections/{collection_name}/points")
    print(f"\nkilled at {progress} copied points; {upserts} upsert pages for 60 pages of data")
    assert count == 6000 and aliases(qdrant_server)[name] == green
    assert upserts < 60 + 2 * 10, "a restart resumes from status, it does not start the copy again"
