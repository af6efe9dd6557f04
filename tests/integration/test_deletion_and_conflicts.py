"""Data safety and honest status under deletion, conflicts and outages: the operator in-process, the real
API server and controller manager, the dev Qdrant with its request counters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.builders import collection_spec
from tests.fixtures.operator import unique, wait_for

pytestmark = pytest.mark.integration
PLURAL = "vectorcollections"


def collections_in(qdrant_server: Any) -> set[str]:
    with qdrant_server.http(timeout=10) as http:
        return {c["name"] for c in http.get("/collections").json()["result"]["collections"]}


def writes(qdrant_server: Any) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in qdrant_server.requests()["requests"] if r["method"] != "GET"]


def test_namespace_deletion_deletes_every_delete_policy_collection(cluster, connection, qdrant_server, control_plane):
    """The connection is deleted together with its collections, yet stays until they have deleted theirs."""
    names = {policy: [unique(policy.lower()) for _ in range(6)] for policy in ("Delete", "Retain")}
    for policy, collections in names.items():
        for i, name in enumerate(collections):
            cluster.apply(
                "VectorCollection",
                f"{policy.lower()}-{i}",
                collection_spec(connection, collectionName=name, deletionPolicy=policy),
            )
    for policy, collections in names.items():
        for i in range(len(collections)):
            cluster.wait_condition(PLURAL, f"{policy.lower()}-{i}", "InSync")
    control_plane.admin("delete", "namespace", cluster.namespace, "--wait=false")
    wait_for(
        lambda: "NotFound" in control_plane.admin("get", "namespace", cluster.namespace, check=False),
        120,
        "the namespace to be gone",
    )
    live = collections_in(qdrant_server)
    assert not live & set(names["Delete"]), "every Delete-policy collection was deleted in Qdrant"
    assert set(names["Retain"]) <= live, "every Retain-policy collection was kept"


def test_a_deleted_connection_waits_for_the_collections_that_need_it(cluster, connection, qdrant_server):
    name = unique("needs")
    cluster.apply(
        "VectorCollection", "needs", collection_spec(connection, collectionName=name, deletionPolicy="Delete")
    )
    cluster.wait_condition(PLURAL, "needs", "InSync")
    cluster.kubectl("delete", "qdrantconnections", connection, "--wait=false")
    body = cluster.wait_condition("qdrantconnections", connection, "WaitingForDependents", status="False")
    assert (
        f"VectorCollection {cluster.namespace}/needs" in cluster.condition("qdrantconnections", connection)["message"]
    )
    assert body["metadata"].get("deletionTimestamp")
    cluster.kubectl("delete", PLURAL, "needs", "--timeout=60s")
    assert name not in collections_in(qdrant_server)
    cluster.kubectl("wait", "--for=delete", f"qdrantconnections/{connection}", "--timeout=60s")


def test_alias_conflicts_stall_without_writes(cluster, connection, qdrant_server):
    taken = unique("taken")
    cluster.apply("VectorCollection", "holder", collection_spec(connection, collectionName=taken))
    cluster.wait_condition(PLURAL, "holder", "InSync")
    name = unique("wants")
    qdrant_server.reset_requests()
    cluster.apply("VectorCollection", "wants", collection_spec(connection, collectionName=name, aliases=[taken]))
    cluster.wait_condition(PLURAL, "wants", "AliasConflict", type_="Stalled")
    assert taken in cluster.condition(PLURAL, "wants", "Stalled")["message"]
    wait_for(lambda: len(qdrant_server.requests()["requests"]) > 6, 30, "a few resyncs")  # resync every 3 s
    assert writes(qdrant_server) == [], "nothing is written while the conflict stands"
    assert name not in collections_in(qdrant_server)


def test_outage_and_recovery_reach_collection_status(cluster, operator, qdrant_server_factory):
    server = qdrant_server_factory()
    cluster.apply("QdrantConnection", "flaky", {"url": server.url, "environment": "Testing"})
    cluster.wait_condition("qdrantconnections", "flaky", "Connected")
    cluster.apply("VectorCollection", "kept", collection_spec("flaky"))
    cluster.wait_condition(PLURAL, "kept", "InSync")
    server.stop()
    cluster.wait_condition(PLURAL, "kept", "ConnectionNotReady", status="False", timeout=60)
    server.start()
    server.reset_requests()
    cluster.wait_condition(PLURAL, "kept", "InSync", timeout=60)
    assert writes(server) == [], "recovery re-checks, it does not write"
    events = json.loads(
        cluster.kubectl(
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=kept,involvedObject.kind=VectorCollection",
            "-o",
            "json",
        )
    )["items"]
    assert [e["reason"] for e in events].count("ConnectionNotReady") == 1
