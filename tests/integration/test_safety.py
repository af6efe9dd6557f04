"""Issue 9, items 2-4, end to end: the `run` command in its own process (as the identity bound to exactly the
shipped ClusterRole) against the real control plane, the dev Qdrant and a loopback server that is not Qdrant.

- no Secret material (clear or base64) in the operator's DEBUG logs, Events, status or metrics;
- the address policy refuses a URL outside the allow list before any request (Qdrant counts zero);
- a peer that is not Qdrant never has its reply copied into status or Events;
- RBAC: the operator cannot list or watch Secrets, and every rule of the role names the code that uses it.

Each operator here watches a namespace of its own, outside the session's test-namespace pattern, so the
in-process session operator never reconciles these objects.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv import controlplane as cp
from devenv.ports import free_port
from tests.builders import collection_spec
from tests.fixtures.operator import Cluster, wait_for
from tests.integration.audit import AuditWindow

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "qdrant-collection-operator"
REPO = Path(__file__).resolve().parents[2]
SECRET_MARKER = f"s3cret-{uuid.uuid4().hex}"
BODY_MARKER = f"peer-body-{uuid.uuid4().hex}"


class RunningOperator:
    """`qdrant-collection-operator run -n NS --verbose` in its own process; stopped by its PID."""

    def __init__(self, control_plane: Any, tmp_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.namespace = f"safety-{uuid.uuid4().hex[:6]}"
        self.cluster = Cluster(control_plane, self.namespace)
        self.metrics_port = free_port()
        self.log_path = tmp_path / f"operator-{self.namespace}.log"
        control_plane.admin("create", "namespace", self.namespace)
        env = {
            **os.environ,
            "KUBECONFIG": str(control_plane.operator_kubeconfig),
            "QDRANT_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "QDRANT_OPERATOR_HEALTH_PORT": "0",
            "QDRANT_OPERATOR_RESYNC_INTERVAL_SECONDS": "3",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        env.pop("QDRANT_OPERATOR_SETTINGS_FILE", None)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(BIN), "run", "-n", self.namespace, "--verbose", "--log-format", "text"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._plane = control_plane

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        self._plane.admin("delete", "namespace", self.namespace, "--wait=false", check=False)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def everything_visible(self) -> str:
        """Logs, Events, every resource (status included) and metrics of this operator, as one text."""
        events = self.cluster.kubectl("get", "events", "-o", "json")
        objects = self.cluster.kubectl("get", "qdrantconnections,vectorcollections", "-o", "json")
        return "\n".join([self.log_path.read_text(errors="replace"), events, objects, self.metrics()])


@pytest.fixture
def run_operator(control_plane: Any, tmp_path: Path) -> Iterator[Any]:
    started: list[RunningOperator] = []

    def start(extra_env: dict[str, str] | None = None) -> RunningOperator:
        op = RunningOperator(control_plane, tmp_path, extra_env)
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()


class _NotQdrant(http.server.BaseHTTPRequestHandler):
    """Answers every request with an arbitrary body carrying BODY_MARKER (status chosen by the server)."""

    status = 500
    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        body = f"<html><body>metadata: {BODY_MARKER}</body></html>".encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST = do_PATCH = do_DELETE = do_GET

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def not_qdrant() -> Iterator[Any]:
    servers = []

    def start(status: int) -> tuple[str, type[_NotQdrant]]:
        handler = type(f"NotQdrant{status}", (_NotQdrant,), {"status": status, "requests": 0})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", handler

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_no_secret_material_and_no_foreign_reply_in_logs_events_status_or_metrics(
    run_operator: Any, qdrant_server_factory: Any, not_qdrant: Any
) -> None:
    qdrant = qdrant_server_factory(api_key=SECRET_MARKER)
    op = run_operator()
    c = op.cluster
    c.kubectl("create", "secret", "generic", "qdrant-key", f"--from-literal=api-key={SECRET_MARKER}")
    c.apply(
        "QdrantConnection",
        "main",
        {"url": qdrant.url, "environment": "Testing", "apiKeySecretRef": {"name": "qdrant-key"}},
    )
    c.apply("VectorCollection", "docs", collection_spec())
    # A key that is wrong for this server: the 401 path must not show it either.
    c.kubectl("create", "secret", "generic", "wrong-key", f"--from-literal=api-key={SECRET_MARKER}-wrong")
    c.apply(
        "QdrantConnection",
        "wrong",
        {"url": qdrant.url, "environment": "Testing", "apiKeySecretRef": {"name": "wrong-key"}},
    )
    for status in (500, 200):  # peers that are not Qdrant: an error page, and a 200 with HTML
        url, _handler = not_qdrant(status)
        c.apply("QdrantConnection", f"not-qdrant-{status}", {"url": url, "environment": "Testing"})
    c.wait_condition("qdrantconnections", "main", "Connected", timeout=90)
    c.wait_condition("vectorcollections", "docs", "InSync", timeout=90)
    c.wait_condition("qdrantconnections", "wrong", "Unauthorized", status="False", timeout=60)
    for status in (500, 200):
        failed = c.wait_condition("qdrantconnections", f"not-qdrant-{status}", status="False", timeout=60)
        ready = next(x for x in failed["status"]["conditions"] if x["type"] == "Ready")
        assert "Qdrant" in ready["message"], ready  # our own words say what is wrong
    # The Secret is re-read every health interval (5 s in Testing): let that happen several times.
    log_text = lambda: op.log_path.read_text(errors="replace")  # noqa: E731
    wait_for(lambda: log_text().count("[DEBUG") > 20, 30, "DEBUG logging")
    time.sleep(12)
    # The URL with a password is refused at admission, pointing at apiKeySecretRef.
    doc = {
        "apiVersion": "qdrant.collection-operator.dev/v1alpha1",
        "kind": "QdrantConnection",
        "metadata": {"name": "inline"},
        "spec": {"url": f"http://admin:{SECRET_MARKER}@127.0.0.1:1"},
    }
    refused = c.kubectl("apply", "-f", "-", stdin=json.dumps(doc), check=False)
    assert "apiKeySecretRef" in refused
    assert op.proc.poll() is None, log_text()[-3000:]

    seen = op.everything_visible()
    assert "[DEBUG" in seen  # it really ran at DEBUG
    encoded = base64.b64encode(SECRET_MARKER.encode()).decode()
    for secret in (SECRET_MARKER, encoded, base64.b64encode(f"{SECRET_MARKER}-wrong".encode()).decode()):
        assert secret not in seen
    statuses_and_events = "\n".join(
        [c.kubectl("get", "events", "-o", "json"), c.kubectl("get", "qdrantconnections", "-o", "json")]
    )
    assert BODY_MARKER not in statuses_and_events


def test_a_url_outside_the_allow_list_is_refused_before_any_request(run_operator: Any, qdrant_server_factory: Any):
    qdrant = qdrant_server_factory()
    assert qdrant.url.startswith("http://127.0.0.1:")
    op = run_operator({"QDRANT_OPERATOR_ALLOWED_HOSTS": '["127.0.0.2/32"]'})
    qdrant.reset_requests()
    c = op.cluster
    c.apply("QdrantConnection", "main", {"url": qdrant.url, "environment": "Testing"})
    c.apply("VectorCollection", "docs", collection_spec())
    body = c.wait_condition("qdrantconnections", "main", "AddressNotAllowed", status="False", timeout=60)
    ready = next(x for x in body["status"]["conditions"] if x["type"] == "Ready")
    assert "127.0.0.1" in ready["message"] and "allowed_hosts" in ready["message"], ready
    c.wait_condition("vectorcollections", "docs", "ConnectionNotReady", status="False", timeout=60)
    events = json.loads(c.kubectl("get", "events", "-o", "json"))["items"]
    assert any(e["reason"] == "AddressNotAllowed" for e in events), [e["reason"] for e in events]
    time.sleep(6)  # at least one more health interval
    assert sum(qdrant.requests()["counts"].values()) == 0, qdrant.requests()["counts"]


# ----------------------------------------------------------------------------------------------- RBAC

# Every (apiGroup, resource, verb) the shipped ClusterRole grants, with the code that uses it. A verb in the
# role that is not here fails the test (nobody uses it: remove it), and so does an entry here the role lacks.
RULE_USES = {
    ("qdrant.collection-operator.dev", "qdrantconnections", "list"): "kopf: initial listing of watched kinds",
    ("qdrant.collection-operator.dev", "qdrantconnections", "watch"): "kopf: watch stream per kind",
    ("qdrant.collection-operator.dev", "qdrantconnections", "patch"): "kopf: finalizer and progress annotations",
    ("qdrant.collection-operator.dev", "vectorcollections", "list"): "kopf: initial listing; k8s/api.py KubeApi.names "
    "(a deleted connection re-checks that its dependents still exist)",
    ("qdrant.collection-operator.dev", "vectorcollections", "watch"): "kopf: watch stream per kind",
    ("qdrant.collection-operator.dev", "vectorcollections", "patch"): "kopf: finalizer and progress annotations",
    ("qdrant.collection-operator.dev", "collectionsnapshots", "list"): "kopf: listing; k8s/api.py KubeApi.names",
    ("qdrant.collection-operator.dev", "collectionsnapshots", "watch"): "kopf: watch stream per kind",
    ("qdrant.collection-operator.dev", "collectionsnapshots", "patch"): "kopf: finalizer and progress annotations",
    ("qdrant.collection-operator.dev", "qdrantconnections/status", "patch"): "k8s/api.py KubeApi.patch_status",
    ("qdrant.collection-operator.dev", "vectorcollections/status", "patch"): "k8s/api.py KubeApi.patch_status",
    ("qdrant.collection-operator.dev", "collectionsnapshots/status", "patch"): "k8s/api.py KubeApi.patch_status",
    ("qdrant.collection-operator.dev", "collectionaccesskeys", "list"): "kopf: initial listing of watched kinds",
    ("qdrant.collection-operator.dev", "collectionaccesskeys", "watch"): "kopf: watch stream per kind",
    ("qdrant.collection-operator.dev", "collectionaccesskeys", "patch"): "kopf: progress annotations",
    ("qdrant.collection-operator.dev", "collectionaccesskeys/status", "patch"): "k8s/api.py KubeApi.patch_status",
    ("", "secrets", "get"): "k8s/api.py KubeApi.read_secret_key (API key, CA bundle), KubeApi.get_secret (a "
    "CollectionAccessKey's own Secret, read back)",
    ("", "secrets", "create"): "k8s/api.py KubeApi.create_secret (a CollectionAccessKey's Secret, owned by it)",
    ("", "secrets", "patch"): "k8s/api.py KubeApi.patch_secret (a new token in a Secret the key owns)",
    ("", "events", "create"): "handlers/context.py kopf_event -> kopf.event (core v1 events)",
    ("events.k8s.io", "events", "create"): "kopf.event: selector v1/events may resolve to events.k8s.io",
    ("", "namespaces", "list"): "kopf: namespace observation (cluster-wide or pattern scope)",
    ("", "namespaces", "watch"): "kopf: namespace observation (cluster-wide or pattern scope)",
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"): "kopf: resource observation",
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"): "kopf: resource observation",
    ("kopf.dev", "clusterkopfpeerings", "list"): "kopf peering (HA): the cluster-wide peering object",
    ("kopf.dev", "clusterkopfpeerings", "watch"): "kopf peering (HA): other replicas' keep-alives",
    ("kopf.dev", "clusterkopfpeerings", "patch"): "kopf peering (HA): this replica's keep-alive",
    ("kopf.dev", "kopfpeerings", "list"): "kopf peering (HA) of an operator restricted to namespaces",
    ("kopf.dev", "kopfpeerings", "watch"): "kopf peering (HA) of an operator restricted to namespaces",
    ("kopf.dev", "kopfpeerings", "patch"): "kopf peering (HA) of an operator restricted to namespaces",
    ("kopf.dev", "clusterkopfpeerings", "create"): "k8s/api.py KubeApi.create_kopf_peering (k8s/peering.py)",
    ("kopf.dev", "kopfpeerings", "create"): "k8s/api.py KubeApi.create_kopf_peering (k8s/peering.py)",
}
# Code references above that must exist (so the table cannot name code that is gone).
CODE_REFERENCES = {
    "operator/collection_operator/k8s/api.py": (
        "def patch_status",
        "def read_secret_key",
        "def get_secret",
        "def create_secret",
        "def patch_secret",
        "def names",
        "def create_kopf_peering",
    ),
    "operator/collection_operator/handlers/context.py": ("kopf.event(",),
}


def role_rules() -> set[tuple[str, str, str]]:
    docs = yaml.safe_load_all((REPO / "manifests/base/rbac.yaml").read_text())
    role = next(d for d in docs if d and d["kind"] == "ClusterRole")
    return {
        (g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }


def test_every_rule_of_the_role_names_the_code_that_uses_it():
    assert role_rules() == set(RULE_USES)
    for path, needles in CODE_REFERENCES.items():
        text = (REPO / path).read_text()
        assert all(n in text for n in needles), (path, needles)
    # The operator's own Kubernetes calls are exactly these (kopf does the rest).
    api = (REPO / "operator/collection_operator/k8s/api.py").read_text()
    calls = re.findall(r'_call\(\s*"(\w+)",\s*(f"[^"]+"|\w+\([^)]*\))', api)
    assert sorted(calls) == sorted(
        [
            ("GET", "kopf_peerings(namespace)"),
            ("GET", 'f"/api/v1/namespaces/{_quote(namespace)}/secrets/{_quote(name)}"'),
            ("GET", 'f"/api/v1/namespaces/{_quote(namespace)}/secrets/{_quote(name)}"'),
            ("GET", 'f"/apis/{GROUP}/{VERSION}/namespaces/{_quote(namespace, plural)}"'),
            ("PATCH", 'f"/api/v1/namespaces/{_quote(namespace)}/secrets/{_quote(name)}"'),
            ("PATCH", 'f"/apis/{GROUP}/{VERSION}/namespaces/{_quote(namespace, plural, name)}/status"'),
            ("POST", "kopf_peerings(namespace)"),
            ("POST", 'f"/api/v1/namespaces/{_quote(namespace)}/secrets"'),
        ]
    )


def can_i(control_plane: Any, *args: str) -> bool:
    out = control_plane.operator("auth", "can-i", *args, check=False).strip()
    return out.splitlines()[-1] == "yes" if out else False


def test_the_operator_identity_cannot_list_or_watch_secrets(control_plane: Any):
    assert control_plane.operator("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}") == cp.OPERATOR_USER
    assert not can_i(control_plane, "list", "secrets", "--all-namespaces")
    assert not can_i(control_plane, "watch", "secrets", "--all-namespaces")
    assert not can_i(control_plane, "list", "secrets", "-n", "default")
    assert can_i(control_plane, "get", "secrets", "-n", "default")  # by name: an API key it was pointed at
    # A CollectionAccessKey's Secret is created and patched; never replaced or deleted (the garbage collector is).
    for verb in ("create", "patch"):
        assert can_i(control_plane, verb, "secrets", "-n", "default")
    for verb in ("update", "delete"):
        assert not can_i(control_plane, verb, "secrets", "-n", "default")
    for verb in ("create", "update", "delete"):
        assert not can_i(control_plane, verb, "vectorcollections.qdrant.collection-operator.dev", "-n", "default")
    assert can_i(control_plane, "patch", "vectorcollections.qdrant.collection-operator.dev/status", "-n", "default")
    assert not can_i(control_plane, "get", "pods", "-n", "default")


def test_the_operator_used_its_write_rights_as_that_identity(
    control_plane: Any, run_operator: Any, qdrant_server_factory: Any
):
    """The writes of the role, seen in the audit log as the operator's identity (reads are not audited)."""
    qdrant = qdrant_server_factory()
    op = run_operator({"QDRANT_OPERATOR_ALLOWED_HOSTS": '["127.0.0.2/32"]'})  # a Warning Event for sure
    window = AuditWindow.open(control_plane.audit_log)
    op.cluster.apply("QdrantConnection", "main", {"url": qdrant.url, "environment": "Testing"})
    op.cluster.wait_condition("qdrantconnections", "main", "AddressNotAllowed", status="False", timeout=60)

    def used() -> set[tuple[str, str, str]]:
        lines = control_plane.audit_log.read_bytes()[window.offset :].splitlines()
        found = set()
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            ref = event.get("objectRef") or {}
            if event.get("user", {}).get("username") == cp.OPERATOR_USER and ref.get("namespace") == op.namespace:
                resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
                found.add((ref.get("apiGroup", ""), resource, event.get("verb")))
        return found

    wanted = {
        ("qdrant.collection-operator.dev", "qdrantconnections", "patch"),
        ("qdrant.collection-operator.dev", "qdrantconnections/status", "patch"),
    }
    got = wait_for(lambda: (u := used()) >= wanted and any(r == "events" for _, r, _ in u) and u, 30, "writes")
    assert got <= set(RULE_USES), got - set(RULE_USES)
