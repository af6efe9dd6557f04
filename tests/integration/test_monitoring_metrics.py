"""Every metric name the alert rules and the Grafana dashboard query is served by the real operator's
/metrics (the `run` command in its own process, as in a Pod); the per-resource ready series of every kind follow
the status written and go with the resource (the operator in process)."""

from __future__ import annotations

import os
import subprocess
from functools import partial

import pytest
from prometheus_client import REGISTRY

from devenv.ports import free_port
from tests.builders import collection_spec
from tests.fixtures.operator import unique, wait_for
from tests.integration.test_operator_process import BIN, get
from tests.unit.test_monitoring import exported_names, referenced_names

pytestmark = pytest.mark.integration


def test_the_running_operator_exports_every_metric_the_bundle_queries(control_plane, namespace, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(control_plane.operator_kubeconfig),
        "QDRANT_OPERATOR_METRICS_PORT": str(port),
        "QDRANT_OPERATOR_HEALTH_PORT": str(free_port()),
    }
    with (tmp_path / "operator.log").open("wb") as log:
        proc = subprocess.Popen([str(BIN), "run", "-n", namespace], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            text = wait_for(lambda: get(f"http://127.0.0.1:{port}/metrics")[1], 60, "/metrics")
        finally:
            proc.terminate()
            proc.wait(30)
    exported = exported_names(text)
    missing = {where: names - exported for where, names in referenced_names().items() if names - exported}
    assert not missing, f"not on /metrics: {missing}"


def ready_series(kind: str, namespace: str, name: str) -> float | None:
    """The in-process operator's qdrant_operator_resource_ready sample of one resource (None: no series)."""
    return REGISTRY.get_sample_value(
        "qdrant_operator_resource_ready", {"kind": kind, "resource": f"{namespace}/{name}"}
    )


def test_every_kind_has_a_ready_series_that_goes_with_the_resource(cluster, connection, qdrant_server):
    ns = cluster.namespace
    cluster.apply("VectorCollection", "docs", collection_spec(collectionName=unique("series")))
    cluster.wait_condition("vectorcollections", "docs", "InSync")
    cluster.apply("CollectionSnapshot", "once", {"collectionRef": {"name": "docs"}})
    cluster.apply("CollectionAccessKey", "app", {"collections": [{"name": "docs"}], "secretName": "app"})
    cluster.apply("VectorCollection", "orphan", collection_spec("nowhere"))  # Ready False: no such connection
    resources = [
        ("QdrantConnection", "qdrantconnections", "main"),
        ("VectorCollection", "vectorcollections", "docs"),
        ("VectorCollection", "vectorcollections", "orphan"),
        ("CollectionSnapshot", "collectionsnapshots", "once"),
        ("CollectionAccessKey", "collectionaccesskeys", "app"),
    ]

    def as_written() -> bool:
        """Each series is 1 exactly while the resource's Ready condition is True, as written to the API server."""
        for kind, plural, name in resources:
            ready = cluster.condition(plural, name).get("status")
            if ready is None or ready_series(kind, ns, name) != (1 if ready == "True" else 0):
                return False
        return True

    wait_for(as_written, 90, "a ready series per resource, as its Ready condition")
    assert ready_series("VectorCollection", ns, "docs") == 1 and ready_series("VectorCollection", ns, "orphan") == 0

    for kind, plural, name in [*resources[1:], resources[0]]:  # the connection last: it waits for its dependents
        assert ready_series(kind, ns, name) is not None
        cluster.kubectl("delete", plural, name)  # waits until the object is gone
        wait_for(partial(no_series, kind, ns, name), 30, f"{kind} {name}'s series removed on deletion")


def no_series(kind: str, namespace: str, name: str) -> bool:
    return ready_series(kind, namespace, name) is None
