"""The operator as users run it: the `qdrant-collection-operator run` command in its own process,
with its metrics endpoint, kopf's liveness probe and a hot-reloaded settings file, scoped to one namespace."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.ports import free_port
from tests.builders import collection_spec
from tests.fixtures.operator import Cluster, unique, wait_for

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "qdrant-collection-operator"


def operator_env(**settings: str) -> dict[str, str]:
    """The process environment without the in-process operator fixture's QDRANT_OPERATOR_* variables, which
    would otherwise override what the test sets (environment beats the settings file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QDRANT_OPERATOR_")}
    return {**env, "PYTHONUNBUFFERED": "1", **settings}


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except OSError:
        return 0, ""


@pytest.fixture
def solo(control_plane) -> Iterator[Cluster]:
    """A namespace outside the session operator's glob: only the process a test starts reconciles it."""
    namespace = unique("solo")
    control_plane.admin("create", "namespace", namespace)
    yield Cluster(control_plane, namespace)
    control_plane.admin("delete", "namespace", namespace, "--wait=false", check=False)


def test_run_command_serves_metrics_liveness_and_reloads_settings(control_plane, solo, qdrant_server, tmp_path):
    cluster = solo
    metrics_port, health_port = free_port(), free_port()
    env = operator_env(
        KUBECONFIG=str(control_plane.operator_kubeconfig),
        QDRANT_OPERATOR_METRICS_PORT=str(metrics_port),
        QDRANT_OPERATOR_HEALTH_PORT=str(health_port),
    )
    settings = tmp_path / "settings.toml"
    settings.write_text("settings_poll_seconds = 0.5\nresync_interval_seconds = 300\n")
    log = (tmp_path / "operator.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN), "run", "-n", cluster.namespace, "--log-format", "json", "--settings", str(settings)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        cluster.apply("QdrantConnection", "main", {"url": qdrant_server.url, "environment": "Testing"})
        cluster.wait_condition("qdrantconnections", "main", "Connected")
        assert wait_for(lambda: get(f"http://127.0.0.1:{health_port}/healthz")[0] == 200, 30, "liveness")
        key = f'connection="{cluster.namespace}/main"'
        _, metrics = get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert f'qdrant_operator_connection_health{{{key},qdrant_operator_connection_health="Healthy"}} 1.0' in metrics
        assert f"qdrant_operator_health_probe_duration_seconds_count{{{key}" in metrics
        assert proc.poll() is None
        settings.write_text("settings_poll_seconds = 0.5\nresync_interval_seconds = 60\n")  # hot reload
        wait_for(lambda: "reloaded" in (tmp_path / "operator.log").read_text(), 30, "the settings file reloaded")
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert '"correlation_id"' in (tmp_path / "operator.log").read_text()  # JSON logs carry it


def test_annotations_act_at_once_without_a_resync(control_plane, solo, qdrant_server, tmp_path):
    """Pause and unpause reach status through their own handler, not the drift sweep (resync 600 s here)."""
    cluster, namespace = solo, solo.namespace
    env = operator_env(
        KUBECONFIG=str(control_plane.operator_kubeconfig),
        QDRANT_OPERATOR_METRICS_PORT="0",
        QDRANT_OPERATOR_HEALTH_PORT="0",
        QDRANT_OPERATOR_RESYNC_INTERVAL_SECONDS="600",
    )
    log = (tmp_path / "operator.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN), "run", "-n", namespace, "--verbose"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        cluster.apply("QdrantConnection", "main", {"url": qdrant_server.url, "environment": "Testing"})
        cluster.apply("VectorCollection", "docs", collection_spec(collectionName=unique("solo")))
        cluster.wait_condition("vectorcollections", "docs", "InSync", timeout=60)
        cluster.kubectl("annotate", "vectorcollections", "docs", "qdrant.collection-operator.dev/paused=true")
        body = cluster.wait_condition("vectorcollections", "docs", "Paused", type_="Paused", timeout=20)
        assert body["status"]["observedGeneration"] == body["metadata"]["generation"]  # kstatus: Current
        cluster.kubectl("annotate", "vectorcollections", "docs", "qdrant.collection-operator.dev/paused-")
        cluster.wait_condition("vectorcollections", "docs", "InSync", timeout=20)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
