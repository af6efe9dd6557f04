"""QdrantConnection end to end: the operator in-process, the real API server, dev Qdrant servers of its
own (started here with qdrant_server_factory, so stopping one disturbs no other test), real kubectl."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.builders import collection_spec
from tests.fixtures.controlplane import namespace_name
from tests.fixtures.operator import unique, wait_for
from tests.integration.audit import AuditWindow

pytestmark = pytest.mark.integration
PLURAL = "qdrantconnections"
KEY = "right-key-" + uuid.uuid4().hex[:8]
TICK = 1.0  # handlers/connection.py TICK_SECONDS: how often the daemon compares report and status


@pytest.fixture(scope="module")
def keyed_server(qdrant_server_factory: Any) -> Any:
    """A dev Qdrant of this module's own that requires KEY."""
    return qdrant_server_factory(api_key=KEY)


def server_version(server: Any) -> str:
    with server.http(timeout=10) as http:
        return str(http.get("/").json()["version"])


def secret(cluster: Any, name: str, value: str) -> None:
    """Create or replace a Secret holding `value` under the key api-key."""
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {"api-key": base64.b64encode(value.encode()).decode()},
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(doc))


def status(cluster: Any, name: str) -> dict[str, Any]:
    return cluster.get(PLURAL, name).get("status") or {}


def test_ready_with_server_version_and_printer_columns(cluster, operator, keyed_server):
    secret(cluster, "key", KEY)
    cluster.apply(
        "QdrantConnection",
        "main",
        {"url": keyed_server.url, "environment": "Testing", "apiKeySecretRef": {"name": "key"}},
    )
    body = cluster.wait_condition(PLURAL, "main", "Connected")
    st = body["status"]
    assert st["serverVersion"] == server_version(keyed_server)
    assert (st["health"], st["circuitBreaker"], st["distributed"], st["peers"]) == ("Healthy", "Closed", False, 1)
    assert st["observedGeneration"] == body["metadata"]["generation"]
    assert {c["type"]: c["status"] for c in st["conditions"]} == {
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
    }
    header, row = cluster.kubectl("get", PLURAL, "main").splitlines()
    assert header.split() == ["NAME", "URL", "ENVIRONMENT", "HEALTH", "VERSION", "READY", "REASON", "AGE"]
    assert row.split()[:7] == ["main", keyed_server.url, "Testing", "Healthy", st["serverVersion"], "True", "Connected"]
    # -o wide ends with Ready's message.
    wide = cluster.kubectl("get", PLURAL, "main", "-o", "wide").splitlines()[1]
    assert wide.endswith(f"Qdrant {st['serverVersion']}"), wide

    # With spec.endpoints the URL column is the first endpoint and how many more (status.url).
    second = keyed_server.url.replace("127.0.0.1", "localhost")
    spec = {"endpoints": [keyed_server.url, second], "environment": "Testing", "apiKeySecretRef": {"name": "key"}}
    cluster.apply("QdrantConnection", "pair", spec)
    assert cluster.wait_condition(PLURAL, "pair", "Connected")["status"]["url"] == f"{keyed_server.url} (+1)"
    header, row = cluster.kubectl("get", PLURAL, "pair").splitlines()
    assert row.split()[1:3] == [keyed_server.url, "(+1)"]


def test_wrong_api_key_is_unauthorized_and_never_ready(cluster, operator, keyed_server):
    secret(cluster, "key", "wrong")
    cluster.apply(
        "QdrantConnection",
        "wrong",
        {"url": keyed_server.url, "environment": "Testing", "apiKeySecretRef": {"name": "key"}},
    )
    seen: list[tuple[str | None, str | None]] = []

    def unauthorized() -> bool:
        ready = cluster.condition(PLURAL, "wrong")
        seen.append((ready.get("status"), ready.get("reason")))
        return ready.get("status") == "False" and ready.get("reason") == "Unauthorized"

    wait_for(unauthorized, 30, "Ready=False reason=Unauthorized")
    # The server answered "no": that is never Ready, not even while probes are below the failure threshold.
    assert ("True", "Degraded") not in seen and all(s != "True" for s, _ in seen), seen
    assert (
        "401" in cluster.condition(PLURAL, "wrong")["message"] or "403" in cluster.condition(PLURAL, "wrong")["message"]
    )
    # No crash: the daemon keeps its client and keeps reporting.
    assert operator._thread is not None and operator._thread.is_alive()
    assert f"{cluster.namespace}/wrong" in operator.context.connections.running


def test_missing_secret_then_created_recovers(cluster, operator, keyed_server):
    cluster.apply(
        "QdrantConnection",
        "nosecret",
        {"url": keyed_server.url, "environment": "Testing", "apiKeySecretRef": {"name": "later"}},
    )
    cond = cluster.wait_condition(PLURAL, "nosecret", "SecretNotFound", status="False")
    assert "later" in cluster.condition(PLURAL, "nosecret")["message"]
    assert cond["status"]["observedGeneration"] == 0  # the CRD's default: no verdict on generation 1 yet
    secret(cluster, "later", KEY)
    body = cluster.wait_condition(PLURAL, "nosecret", "Connected", timeout=30)
    assert body["status"]["serverVersion"] == server_version(keyed_server)


def test_server_stop_opens_breaker_and_start_closes_it(cluster, operator, qdrant_server_factory):
    server = qdrant_server_factory()
    interval, health_failures, breaker_failures, open_seconds = 1, 2, 3, 2
    cluster.apply(
        "QdrantConnection",
        "flaky",
        {
            "url": server.url,
            "environment": "Testing",
            "healthCheck": {"intervalSeconds": interval, "timeoutSeconds": 1, "failureThreshold": health_failures},
            "circuitBreaker": {"failureThreshold": breaker_failures, "openSeconds": open_seconds},
        },
    )
    cluster.wait_condition(PLURAL, "flaky", "Connected")
    server.stop()
    stopped = time.monotonic()
    # Each probe fails at once (connection refused); the daemon writes what it sees within one tick.
    budget = interval * max(health_failures, breaker_failures) + TICK + 3
    wait_for(lambda: status(cluster, "flaky").get("health") == "Unhealthy", budget, "health Unhealthy")
    wait_for(lambda: status(cluster, "flaky").get("circuitBreaker") == "Open", budget, "breaker Open")
    assert time.monotonic() - stopped <= budget
    ready = cluster.condition(PLURAL, "flaky")
    assert ready["status"] == "False" and ready["reason"] in ("CircuitOpen", "Unreachable"), ready

    server.start()
    started = time.monotonic()
    body = cluster.wait_condition(PLURAL, "flaky", "Connected", timeout=open_seconds + interval * 2 + TICK + 5)
    assert body["status"]["circuitBreaker"] == "Closed" and body["status"]["health"] == "Healthy"
    assert time.monotonic() - started <= open_seconds + interval * 2 + TICK + 5


def test_secret_rotation_recovers_without_restart(cluster, operator, keyed_server):
    secret(cluster, "rotating", "old-wrong-key")
    cluster.apply(
        "QdrantConnection",
        "rot",
        {
            "url": keyed_server.url,
            "environment": "Testing",
            "apiKeySecretRef": {"name": "rotating"},
            "healthCheck": {"intervalSeconds": 1},
        },
    )
    cluster.wait_condition(PLURAL, "rot", "Unauthorized", status="False", timeout=30)
    thread, gateway = operator._thread, operator.context.connections.running[f"{cluster.namespace}/rot"].gateway
    secret(cluster, "rotating", KEY)
    cluster.wait_condition(PLURAL, "rot", "Connected", timeout=15)
    # Same operator, same client object (breaker and metrics carried over): only its credentials changed.
    assert operator._thread is thread
    assert operator.context.connections.running[f"{cluster.namespace}/rot"].gateway is gateway


def _collection(cluster: Any, name: str, connection: dict[str, str]) -> None:
    cluster.apply(
        "VectorCollection",
        name,
        collection_spec(connectionRef=connection, collectionName=f"{name}-{uuid.uuid4().hex[:6]}"),
    )


def test_steady_connection_writes_no_status_and_counts_its_collections(cluster, control_plane, operator, keyed_server):
    secret(cluster, "key", KEY)
    interval = 1
    cluster.apply(
        "QdrantConnection",
        "steady",
        {
            "url": keyed_server.url,
            "environment": "Testing",
            "apiKeySecretRef": {"name": "key"},
            "healthCheck": {"intervalSeconds": interval},
        },
    )
    cluster.wait_condition(PLURAL, "steady", "Connected")
    for name in ("a", "b", "c"):
        _collection(cluster, name, {"name": "steady"})
    for name in ("a", "b", "c"):
        cluster.wait_condition("vectorcollections", name, "InSync")
    wait_for(lambda: status(cluster, "steady").get("collections") == 3, 10, "collections == 3")

    window = AuditWindow.open(control_plane.audit_log)
    time.sleep(6 * interval)  # deliberately idle: six health probes and Secret re-reads, no change to report
    writes = window.writes(PLURAL, cluster.namespace, "steady", subresource="status")
    assert writes == [], [w["requestReceivedTimestamp"] for w in writes]

    using = [vc for vc in cluster.kubectl("get", "vectorcollections", "-o", "name").split()]
    assert status(cluster, "steady")["collections"] == len(using) == 3
    cluster.kubectl("delete", "vectorcollections", "c")
    wait_for(lambda: status(cluster, "steady").get("collections") == 2, 10, "collections == 2 after a delete")


@pytest.fixture
def other_namespace(control_plane: Any) -> Iterator[str]:
    name = namespace_name()  # watched by this session's operator
    control_plane.admin("create", "namespace", name)
    yield name
    control_plane.admin("delete", "namespace", name, "--wait=false", check=False)


def test_allowed_namespaces(cluster, operator, keyed_server, other_namespace):
    from tests.fixtures.operator import Cluster

    secret(cluster, "key", KEY)
    spec = {"url": keyed_server.url, "environment": "Testing", "apiKeySecretRef": {"name": "key"}}
    cluster.apply("QdrantConnection", "shared", spec)
    cluster.wait_condition(PLURAL, "shared", "Connected")
    other = Cluster(cluster.plane, other_namespace)
    ref = {"name": "shared", "namespace": cluster.namespace}
    _collection(other, "outsider", ref)
    cond = other.wait_condition("vectorcollections", "outsider", "ConnectionNotAllowed", type_="Stalled")
    assert other_namespace in other.condition("vectorcollections", "outsider", "Stalled")["message"]
    # Stalled is the final verdict on this generation (kstatus reads Failed); nothing was applied.
    assert cond["status"]["observedGeneration"] == cond["metadata"]["generation"]
    assert "appliedGeneration" not in cond["status"]
    # It does not use the connection, so the connection does not count it.
    assert status(cluster, "shared").get("collections") == 0

    cluster.apply("QdrantConnection", "shared", {**spec, "allowedNamespaces": [other_namespace]})
    other.wait_condition("vectorcollections", "outsider", "InSync", timeout=30)
    wait_for(lambda: status(cluster, "shared").get("collections") == 1, 10, "collections == 1")

    # Its own namespace is always allowed, whatever the list says.
    _collection(cluster, "insider", {"name": "shared"})
    cluster.wait_condition("vectorcollections", "insider", "InSync")


def test_read_only_key_is_stalled_and_a_read_write_key_recovers(cluster, operator, qdrant_server_factory):
    """Issue 9.7: a key Qdrant lets read but not write is said on the connection, not discovered write by
    write by its collections; the check changes nothing in Qdrant and is made once per key."""
    server = qdrant_server_factory(api_key=KEY, read_only_api_key="ro-" + KEY)
    secret(cluster, "ro", "ro-" + KEY)
    cluster.apply(
        "QdrantConnection", "ro", {"url": server.url, "environment": "Testing", "apiKeySecretRef": {"name": "ro"}}
    )
    stalled = cluster.wait_condition(PLURAL, "ro", "ReadOnlyKey", type_="Stalled")
    assert cluster.condition(PLURAL, "ro")["status"] == "False"
    assert "read-only" in next(c for c in stalled["status"]["conditions"] if c["type"] == "Stalled")["message"]
    collection = unique("ro")
    cluster.apply("VectorCollection", "docs", collection_spec("ro", collectionName=collection))
    waiting = cluster.wait_condition("vectorcollections", "docs", "ConnectionNotReady", status="False")
    assert "ReadOnlyKey" in next(c for c in waiting["status"]["conditions"] if c["type"] == "Ready")["message"]
    with server.http(timeout=10) as http:
        assert http.get("/collections").json()["result"]["collections"] == []  # nothing was created
    probes = [r for r in server.requests()["requests"] if r["method"] != "GET"]
    assert [f"{r['method']} {r['template']}" for r in probes] == ["POST /collections/aliases"]  # asked once

    secret(cluster, "ro", KEY)  # rotated to the read-write key: re-read, asked again, Ready
    cluster.wait_condition(PLURAL, "ro", "Connected", timeout=60)
    cluster.wait_condition("vectorcollections", "docs", "InSync", timeout=60)
