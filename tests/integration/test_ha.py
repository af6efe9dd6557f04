"""HA: two operator processes (the `run` command, as the Deployment's replicas run it) share a kopf
peering object. Only the active one reconciles; when it is killed, the standby takes over."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devenv.ports import free_port
from tests.builders import collection_spec
from tests.fixtures.operator import Cluster, unique, wait_for
from tests.integration.test_operator_process import get, operator_env

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "qdrant-collection-operator"
PEERING = "qdrant-collection-operator"
LIFETIME_SECONDS = 6
RESUMED = "Resuming operations"  # kopf's peering log line when a replica becomes the active one
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "failover.json"


def start(
    control_plane, namespace: str, priority: int, log: Path, peering: str = PEERING, **env: str
) -> subprocess.Popen[bytes]:
    """One replica; `env` adds to its environment or overrides it (POD_ID: kopf's identity of it, as a Pod's name
    would be; QDRANT_OPERATOR_METRICS_PORT to scrape it)."""
    env = operator_env(
        **{
            "KUBECONFIG": str(control_plane.operator_kubeconfig),
            "QDRANT_OPERATOR_METRICS_PORT": "0",
            "QDRANT_OPERATOR_HEALTH_PORT": "0",
            "QDRANT_OPERATOR_PEERING_NAME": peering,
            "QDRANT_OPERATOR_PEERING_PRIORITY": str(priority),
            "QDRANT_OPERATOR_PEERING_LIFETIME_SECONDS": str(LIFETIME_SECONDS),
            **env,
        }
    )
    return subprocess.Popen(
        [str(BIN), "run", "-n", namespace], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def active_gauges(ports: dict[str, int]) -> dict[str, float]:
    """qdrant_operator_active of each replica that answers on its metrics port."""
    found = {}
    for replica, port in ports.items():
        status, text = get(f"http://127.0.0.1:{port}/metrics")
        for line in text.splitlines() if status == 200 else []:
            if line.startswith("qdrant_operator_active "):
                found[replica] = float(line.split()[1])
    return found


def reconciled(log: Path) -> int:
    """Handler runs this process logged for VectorCollections."""
    return log.read_text(errors="replace").count("Handler 'vectorcollection")


def test_one_active_replica_and_failover(control_plane, qdrant_server, tmp_path):
    namespace = unique("ha")  # outside the session operator's glob: only these two processes watch it
    control_plane.admin("create", "namespace", namespace)
    cluster = Cluster(control_plane, namespace)
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING}}),
    )
    active_log, standby_log = tmp_path / "active.log", tmp_path / "standby.log"
    ports = {"active": free_port(), "standby": free_port()}
    active = start(control_plane, namespace, 200, active_log, QDRANT_OPERATOR_METRICS_PORT=str(ports["active"]))
    standby = None
    try:
        # Every replica starts paused until it has read the peering. Two replicas that read an empty
        # peering in the same instant both resume for one keepalive (kopf's design; the create-conflict
        # check covers that window), so the standby starts once the active one is on record.
        wait_for(lambda: RESUMED in active_log.read_text(errors="replace"), 60, "the active replica to resume")
        standby = start(control_plane, namespace, 100, standby_log, QDRANT_OPERATOR_METRICS_PORT=str(ports["standby"]))
        wait_for(
            lambda: len(cluster.get("kopfpeerings", PEERING).get("status") or {}) == 2, 60, "both replicas on record"
        )
        # qdrant_operator_active: 1 on the replica kopf lets run, 0 on the standby (and the alert's query agrees).
        wait_for(lambda: active_gauges(ports) == {"active": 1.0, "standby": 0.0}, 60, "the active gauge per replica")
        cluster.apply("QdrantConnection", "main", {"url": qdrant_server.url, "environment": "Testing"})
        for i in range(3):
            cluster.apply("VectorCollection", f"c{i}", collection_spec(collectionName=unique(f"ha{i}")))
        for i in range(3):
            cluster.wait_condition("vectorcollections", f"c{i}", "InSync", timeout=60)
        # A handler logs its success after its status write: the last line may follow the InSync just seen.
        wait_for(lambda: reconciled(active_log) >= 3, 30, "the active replica's three handler runs in its log")
        assert reconciled(standby_log) == 0, "only the active replica works"
        assert RESUMED not in standby_log.read_text(errors="replace")

        active.send_signal(signal.SIGKILL)
        active.wait(10)
        killed = time.monotonic()
        cluster.apply("VectorCollection", "after", collection_spec(collectionName=unique("after")))
        cluster.wait_condition("vectorcollections", "after", "InSync", timeout=120)
        failover = time.monotonic() - killed
        assert RESUMED in standby_log.read_text(errors="replace")
        assert reconciled(standby_log) >= 1
        wait_for(lambda: active_gauges(ports) == {"standby": 1.0}, 60, "the standby's gauge after the takeover")
        RESULTS.write_text(
            json.dumps(
                {"peering_lifetime_seconds": LIFETIME_SECONDS, "kill_to_ready_seconds": round(failover, 1)}, indent=2
            )
            + "\n"
        )
    finally:
        for proc in (active, standby):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        control_plane.admin("delete", "namespace", namespace, "--wait=false", check=False)
