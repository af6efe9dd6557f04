"""End to end on a real node: the operator installed by its Helm chart and running as Pods, Qdrant as a
StatefulSet reached by Service DNS, everything as a user does it. The tests run in order and build on each
other: the quickstart installs what the later tests use, and its clean-up runs last."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest

from tests.docs_commands import shell_blocks
from tests.node.conftest import AUDIT_LOG, CONTAINERD, REPO, Node, wait_for

QUICKSTART = REPO / "docs" / "quickstart.md"
OPERATOR_NS = "qdrant-operator"
RELEASE = "qdrant-collection-operator"
SERVICE_ACCOUNT = f"system:serviceaccount:{OPERATOR_NS}:{RELEASE}"
GROUP = "qdrant.collection-operator.dev"


def quickstart() -> tuple[list[str], str]:
    """The quickstart's blocks: those that set up, and the clean-up (its last block)."""
    blocks = shell_blocks(QUICKSTART)
    assert len(blocks) >= 5, "docs/quickstart.md lost a step"
    return blocks[:-1], blocks[-1]


def qdrant_get(port: int, path: str, api_key: str | None = None) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"api-key": api_key} if api_key else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def qdrant_metrics(port: int, api_key: str | None = None) -> dict[tuple[str, str], float]:
    """Qdrant's REST response counters: (method, endpoint) -> responses since it started."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"api-key": api_key} if api_key else {}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    counts: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("rest_responses_total{"):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(","))
            key = (labels["method"].strip('"'), labels["endpoint"].strip('"'))
            counts[key] = counts.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def api_key(node: Node, namespace: str = "qdrant") -> str:
    import base64

    data = node.json("-n", namespace, "get", "secret", "qdrant-api-key")["data"]["api-key"]
    return base64.b64decode(data).decode()


def test_quickstart_followed_literally(node: Node):
    setup, _ = quickstart()
    for block in setup:
        node.sh(block, timeout=400)
    assert node.condition("vectorcollection", "docs", "search")["status"] == "True"
    with node.port_forward("qdrant", "svc/qdrant", 6333) as port:
        info = qdrant_get(port, "/collections/docs", api_key(node))["result"]
    assert info["config"]["params"]["vectors"]["text"]["size"] == 384
    assert info["config"]["params"]["vectors"]["text"]["distance"] == "Cosine"


def test_operator_runs_as_deployed(node: Node):
    deployment = node.json("-n", OPERATOR_NS, "get", "deployment", RELEASE)
    assert deployment["status"].get("readyReplicas") == 2
    labels = node.json("get", "namespace", OPERATOR_NS)["metadata"]["labels"]
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted"
    pods = node.json("-n", OPERATOR_NS, "get", "pods", "-l", f"app.kubernetes.io/name={RELEASE}")["items"]
    assert len(pods) == 2
    for pod in pods:
        name = pod["metadata"]["name"]
        # The root filesystem is read-only for real, not only in the spec.
        refused = node.kubectl(
            "-n",
            OPERATOR_NS,
            "exec",
            name,
            "--",
            "python3",
            "-c",
            "import sys\ntry:\n    open('/probe', 'w')\nexcept OSError as e:\n    print(e.strerror)",
        )
        assert "Read-only file system" in refused
        projected = [v for v in pod["spec"]["volumes"] if "projected" in v]
        assert any("serviceAccountToken" in s for v in projected for s in v["projected"]["sources"])

    # It logs in with its projected (Pod-bound) token: the audit log names the Pod the token is bound to.
    def bound_logins() -> set[str]:
        names = set()
        for line in AUDIT_LOG.read_text().splitlines():
            event = json.loads(line)
            if event["user"]["username"] == SERVICE_ACCOUNT:
                names.update(event["user"].get("extra", {}).get("authentication.kubernetes.io/pod-name", []))
        return names

    assert wait_for(lambda: bound_logins() & {p["metadata"]["name"] for p in pods}, 60, "a write with a bound token")

    # The kubelet probes both containers: its prober counts successful liveness and readiness probes.
    def probed() -> bool:
        metrics = node.kubectl("get", "--raw", "/api/v1/nodes/qco-node/proxy/metrics/probes")
        for pod in pods:
            for probe in ("Liveness", "Readiness"):
                wanted = (f'pod="{pod["metadata"]["name"]}"', f'probe_type="{probe}"', 'result="successful"')
                if not any(all(w in line for w in wanted) for line in metrics.splitlines()):
                    return False
        return True

    wait_for(probed, 90, "liveness and readiness probes counted by the kubelet", interval=5)
