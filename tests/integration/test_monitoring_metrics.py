"""Every metric name the alert rules and the Grafana dashboard query is served by the real operator's
/metrics (the `run` command in its own process, as in a Pod)."""

from __future__ import annotations

import os
import subprocess

import pytest

from devenv.ports import free_port
from tests.fixtures.operator import wait_for
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
