"""QdrantConnection.spec.endpoints end to end: the API server's CEL rules, and the in-process operator on the
session's real 3-node cluster with one node stopped and restarted while collections change."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from devenv import qdrant_real
from tests.builders import collection_spec
from tests.fixtures.controlplane import KubectlError
from tests.fixtures.nodes import ensure_running, restart
from tests.fixtures.operator import Cluster, unique, wait_for

pytestmark = pytest.mark.integration
PLURAL = "qdrantconnections"
COLLECTIONS = "vectorcollections"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"url": "http://127.0.0.1:1", "endpoints": ["http://127.0.0.1:2"]}, "set exactly one of spec.url and"),
        ({}, "set exactly one of spec.url and spec.endpoints"),
        ({"endpoints": ["http://127.0.0.1:2", "http://u:p@127.0.0.1:3"]}, "spec.endpoints must not contain credent"),
        ({"endpoints": ["http://127.0.0.1:2/?api_key=x"]}, "spec.endpoints must not contain credentials"),
        ({"endpoints": []}, "should have at least 1 items"),
        ({"endpoints": ["http://127.0.0.1:2", "http://127.0.0.1:2"]}, "Duplicate value"),
    ],
    ids=["both", "neither", "userinfo", "key-param", "empty", "repeated"],
)
def test_endpoints_rules_are_enforced_by_the_api_server(cluster: Cluster, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(KubectlError) as err:
        cluster.apply("QdrantConnection", "bad", spec)
    assert message in err.value.stderr


class Watch:
    """Polls Ready of some resources in a thread and keeps every (kind/name, status, reason) it sees."""

    def __init__(self, cluster: Cluster, resources: list[tuple[str, str]]) -> None:
        self.cluster, self.resources = cluster, resources
        self.seen: set[tuple[str, str | None, str | None]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for plural, name in self.resources:
                ready = self.cluster.condition(plural, name)
                self.seen.add((f"{plural}/{name}", ready.get("status"), ready.get("reason")))
            self._stop.wait(0.5)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


def applied(cluster: Cluster, name: str) -> bool:
    """Ready=True about the current generation."""
    body = cluster.get(COLLECTIONS, name)
    generation = body["metadata"]["generation"]
    ready = next((c for c in body.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})
    return body["status"].get("observedGeneration") == generation and ready.get("status") == "True"


def endpoint(cluster: Cluster, name: str, index: int) -> dict[str, Any]:
    return dict(cluster.get(PLURAL, name)["status"]["endpoints"][index])


def test_cluster_node_down_and_back_keeps_collections_ready(
    cluster: Cluster, operator: Any, qdrant_cluster: list[qdrant_real.Node]
) -> None:
    nodes = qdrant_cluster
    ensure_running(nodes)
    urls = [n.url for n in nodes]
    cluster.apply(
        "QdrantConnection",
        "nodes",
        {
            "endpoints": urls,
            "environment": "Testing",
            "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 2, "failureThreshold": 2},
            "circuitBreaker": {"failureThreshold": 3, "openSeconds": 2},
            "retry": {"maxAttempts": 3, "initialDelaySeconds": 0.2, "maxDelaySeconds": 1},
        },
    )
    st = cluster.wait_condition(PLURAL, "nodes", "Connected", timeout=60)["status"]
    assert st["health"] == "Healthy" and st["distributed"] is True and st["peers"] == 3
    assert [(e["url"], e["health"], e["circuitBreaker"], e["inRotation"]) for e in st["endpoints"]] == [
        (url, "Healthy", "Closed", True) for url in urls
    ]
    assert all(e["serverVersion"] == st["serverVersion"] for e in st["endpoints"])
    header = cluster.kubectl("get", PLURAL, "nodes", "-o", "wide").splitlines()[0].split()
    assert "ENDPOINTS" in header

    steady, changing = unique("steady"), unique("changing")
    # Every node holds every shard: the cluster serves with one node down.
    base = collection_spec("nodes", shardNumber=3, replicationFactor=3)
    cluster.apply("VectorCollection", steady, {**base, "collectionName": steady})
    cluster.apply("VectorCollection", changing, {**base, "collectionName": changing})
    for name in (steady, changing):
        cluster.wait_condition(COLLECTIONS, name, "InSync", timeout=90)

    victim = nodes[1]
    with Watch(cluster, [(PLURAL, "nodes"), (COLLECTIONS, steady)]) as watch:
        victim.stop()
        try:
            wait_for(
                lambda: endpoint(cluster, "nodes", 1)["health"] == "Unhealthy",
                30,
                "the stopped node's endpoint Unhealthy in status",
            )
            down = endpoint(cluster, "nodes", 1)
            assert down["inRotation"] is False and down["reason"] == "Unreachable", down
            ready = cluster.condition(PLURAL, "nodes")
            assert (ready["status"], ready["reason"]) == ("True", "Degraded"), ready
            assert urls[1] in ready["message"], ready
            # Collection changes go through the other nodes while this one is down.
            cluster.apply(
                "VectorCollection", changing, {**base, "collectionName": changing, "hnsw": {"efConstruct": 123}}
            )
            wait_for(lambda: applied(cluster, changing), 90, "the change applied while the node is down")
            info = nodes[0].get(f"/collections/{changing}") or {}
            assert info["result"]["config"]["hnsw_config"]["ef_construct"] == 123
        finally:
            restart(victim)
        st = cluster.wait_condition(PLURAL, "nodes", "Connected", timeout=120)["status"]
        assert all(e["health"] == "Healthy" and e["inRotation"] for e in st["endpoints"]), st["endpoints"]
    assert not [s for s in watch.seen if s[1] != "True"], sorted(watch.seen, key=str)
    assert ("qdrantconnections/nodes", "True", "Degraded") in watch.seen
    for name in (steady, changing):
        cluster.kubectl("delete", COLLECTIONS, name, "--wait=true", "--timeout=60s")
