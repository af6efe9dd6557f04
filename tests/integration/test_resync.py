"""A no-op resync of a Ready VectorCollection writes nothing: not to Kubernetes, not to Qdrant."""

from __future__ import annotations

import time
import uuid

import pytest

from collection_operator.api import GROUP
from tests.builders import collection_spec
from tests.fixtures.operator import RESYNC_SECONDS, wait_for
from tests.integration.audit import AuditWindow

pytestmark = pytest.mark.integration
WRITE_METHODS = ("PUT", "POST", "PATCH", "DELETE")
WINDOW_RESYNCS = 4


def test_noop_resync_writes_nothing(cluster, control_plane, operator, qdrant_factory):
    server = qdrant_factory()  # its own server of the tier: only this test's operator work reaches it
    cluster.apply("QdrantConnection", "quiet", {"url": server.url, "environment": "Testing"})
    cluster.wait_condition("qdrantconnections", "quiet", "Connected")
    name = f"quiet-{uuid.uuid4().hex[:6]}"
    cluster.apply(
        "VectorCollection",
        "quiet",
        {
            "connectionRef": {"name": "quiet"},
            "collectionName": name,
            "vectors": [{"size": 8, "distance": "Cosine"}],
            "hnsw": {"m": 16},
            "payloadIndexes": [{"field": "tenant", "type": "Keyword"}],
            "aliases": [f"{name}-a"],
        },
    )
    cluster.wait_condition("vectorcollections", "quiet", "InSync")
    # kopf records the handled spec in an annotation after the handler: the last write of the creation.
    wait_for(
        lambda: (
            f"kopf.{GROUP}/last-handled-configuration"
            in (cluster.get("vectorcollections", "quiet")["metadata"].get("annotations") or {})
        ),
        10,
        "kopf to finish",
    )

    server.reset_requests()
    window = AuditWindow.open(control_plane.audit_log)
    time.sleep(WINDOW_RESYNCS * RESYNC_SECONDS + 1)  # deliberately idle: several drift sweeps find nothing to do

    k8s_writes = window.writes("vectorcollections", cluster.namespace, "quiet")
    assert k8s_writes == [], [(w["verb"], w["objectRef"].get("subresource"), w["userAgent"]) for w in k8s_writes]
    counts: dict[str, int] = server.requests()["counts"]
    qdrant_writes = {k: n for k, n in counts.items() if k.split()[0] in WRITE_METHODS}
    assert qdrant_writes == {}
    # The sweeps did run: each one read the collection.
    reads = counts.get("GET /collections/{collection_name}", 0)
    assert reads >= WINDOW_RESYNCS - 1, counts


def test_restart_rechecks_everything_and_writes_nothing(cluster, control_plane, operator, qdrant_factory):
    """An operator restart re-verifies every collection in Qdrant and, nothing having changed, writes nothing:
    no status (not the connection's either), no Event, no kopf annotation, no Qdrant write. (Collections
    resumed before their connection's daemon had probed Qdrant used to go ConnectionNotReady and back.)"""
    server = qdrant_factory()
    cluster.apply("QdrantConnection", "restart", {"url": server.url, "environment": "Testing"})
    cluster.wait_condition("qdrantconnections", "restart", "Connected")
    names = [f"restart-{i}" for i in range(20)]
    for name in names:
        cluster.apply(
            "VectorCollection", name, collection_spec("restart", collectionName=f"{name}-{uuid.uuid4().hex[:6]}")
        )
    for name in names:
        cluster.wait_condition("vectorcollections", name, "InSync")
        wait_for(
            lambda name=name: (
                f"kopf.{GROUP}/last-handled-configuration"
                in (cluster.get("vectorcollections", name)["metadata"].get("annotations") or {})
            ),
            10,
            "kopf to finish",
        )
    # The connection counts its collections on its next tick: what it writes then is not the restart's doing.
    wait_for(
        lambda: (cluster.get("qdrantconnections", "restart").get("status") or {}).get("collections") == len(names),
        10,
        "the connection to count its collections",
    )

    server.reset_requests()
    window = AuditWindow.open(control_plane.audit_log)
    operator.restart()
    wait_for(
        lambda: server.requests()["counts"].get("GET /collections/{collection_name}", 0) >= len(names),
        60,
        "every collection re-read in Qdrant",
    )
    time.sleep(2 * RESYNC_SECONDS)  # what a restart would write has been written by now

    writes = {n: window.writes("vectorcollections", cluster.namespace, n) for n in names}
    assert all(w == [] for w in writes.values()), {
        n: [(e["verb"], e["objectRef"].get("subresource")) for e in w] for n, w in writes.items() if w
    }
    assert window.writes("qdrantconnections", cluster.namespace, "restart") == []
    events = cluster.kubectl("get", "events", "--field-selector", "reason=ConnectionNotReady", "-o", "name")
    assert events.strip() == ""
    counts: dict[str, int] = server.requests()["counts"]
    assert {k: n for k, n in counts.items() if k.split()[0] in WRITE_METHODS} == {}
