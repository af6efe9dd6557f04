"""Shared machinery of the fault-injection tier: the operator as its own process (so it can be SIGKILLed),
one namespace of VectorCollections per scenario, the invariants every scenario ends with, and the control
plane restart. Scenarios stay a few lines each; every wait polls with a deadline (wait_for)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devenv import controlplane as cp
from devenv import ports
from tests.builders import collection_spec
from tests.fixtures.controlplane import SESSION_PREFIX, ControlPlane
from tests.fixtures.operator import GROUP, wait_for
from tests.fixtures.qdrant import QdrantServer

BIN = Path(sys.executable).parent / "qdrant-collection-operator"
PLURAL = "vectorcollections"
OWNER_KEY = "qdrant-collection-operator.dev/owner"
# The API key of the faults tier's dev Qdrant: a marker that must never show up in logs, Events or status.
SECRET = f"faults-api-key-{uuid.uuid4().hex}"
POINTS = 3  # written into every collection once it is Ready, and expected back at the end
RESYNC_SECONDS = 10
# Faster than the Testing profile's 30 s so a scenario's convergence is not mostly breaker wait.
CONNECTION_SPEC = {
    "environment": "Testing",
    "apiKeySecretRef": {"name": "qdrant-key"},
    "circuitBreaker": {"openSeconds": 5},
    "healthCheck": {"intervalSeconds": 2},
}


# Not under the in-process operator's pattern (t-xxxx-*): only the tier's own operator process reconciles them.
NAMESPACES = f"f{SESSION_PREFIX}*"


def namespace_name() -> str:
    return f"f{SESSION_PREFIX}{uuid.uuid4().hex[:6]}"


def secret_forms(secret: str) -> list[str]:
    """The secret and its base64 form as a Secret or an Authorization header would carry it."""
    return [secret, base64.b64encode(secret.encode()).decode().rstrip("=")]


@dataclass
class OperatorProcess:
    """`qdrant-collection-operator run --verbose -n NS...`: DEBUG logs, appended to one file across restarts."""

    plane: ControlPlane
    namespaces: list[str]
    log_path: Path
    log_format: str = "text"
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        health = ports.free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.plane.operator_kubeconfig),
            "QDRANT_OPERATOR_METRICS_PORT": "0",
            "QDRANT_OPERATOR_HEALTH_PORT": str(health),
            "QDRANT_OPERATOR_RESYNC_INTERVAL_SECONDS": str(RESYNC_SECONDS),
        }
        scope = [arg for ns in self.namespaces for arg in ("-n", ns)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN), "run", "--verbose", "--log-format", self.log_format, *scope],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        wait_for(lambda: self._healthy(health), 60, "the operator's liveness endpoint")

    def _healthy(self, port: int) -> bool:
        assert self.proc is not None and self.proc.poll() is None, f"operator exited: {self.log()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no cleanup handlers, no finalizer bookkeeping, connections cut mid-request."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def restart_control_plane() -> None:
    """SIGKILL kube-apiserver and etcd by their recorded PIDs, then start the control plane again on the same
    data (the controller manager is restarted with them)."""
    for name in ("kube-apiserver", "etcd"):
        pid = cp._pid(name)
        assert pid is not None, f"{name} is not running from {cp.RUN}"
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda name=name: cp._pid(name) is None, 30, f"{name} to exit")
    # The same ports again, or every client that read its kubeconfig before (the operators, watchers) is
    # stranded: up() would move to free ports if one were still held, so wait until all four are free.
    cp.down(quiet=True)
    held = (cp.ETCD_PORT, cp.ETCD_PEER_PORT, cp.API_PORT, cp.KCM_PORT)
    wait_for(lambda: all(ports.bindable(p) for p in held), 60, f"ports {held} to be free again")
    cp.up()
    assert cp.API_PORT == held[2], f"the control plane moved to port {cp.API_PORT}"


@dataclass
class Scenario:
    """One namespace with a QdrantConnection "main" to the faults Qdrant and VectorCollections named c-NNN,
    each on the Qdrant collection <namespace>-<name>. Remembers every policy and point count it set, so
    converge() can tell what must still be there, what must be gone and who must own it."""

    plane: ControlPlane
    qdrant: QdrantServer
    namespace: str
    operator: OperatorProcess
    policies: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # Qdrant names other than <namespace>-<name>
    points: dict[str, int] = field(default_factory=dict)
    row: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ Kubernetes side

    def kubectl(self, *args: str, **kw: Any) -> str:
        return self.plane.admin(*args, "-n", self.namespace, **kw)

    def apply(self, docs: Iterable[dict[str, Any]]) -> None:
        items = [{"apiVersion": f"{GROUP}/v1alpha1", **doc} for doc in docs]
        self.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))

    def connect(self, **spec: Any) -> None:
        """The API key Secret and the connection "main" (again with `spec` on top of CONNECTION_SPEC)."""
        if not spec:
            self.kubectl("create", "secret", "generic", "qdrant-key", f"--from-literal=api-key={self.qdrant.api_key}")
        self.apply(
            [
                {
                    "kind": "QdrantConnection",
                    "metadata": {"name": "main"},
                    "spec": {"url": self.qdrant.url, **CONNECTION_SPEC, **spec},
                }
            ]
        )

    def collection_name(self, name: str) -> str:
        return self.names.get(name) or f"{self.namespace}-{name}"

    def create(self, count: int, policy: str | None = None, start: int = 0, **spec: Any) -> list[str]:
        """count collections c-<start>...; policy None alternates Delete and Retain."""
        names = [f"c-{i:03d}" for i in range(start, start + count)]
        for i, name in enumerate(names):
            self.policies[name] = policy or ("Delete", "Retain")[i % 2]
        self.update(names, **spec)
        return names

    def update(self, names: Iterable[str], **spec: Any) -> None:
        self.apply(
            {
                "kind": "VectorCollection",
                "metadata": {"name": name},
                "spec": collection_spec(
                    **{"collectionName": self.collection_name(name), "deletionPolicy": self.policies[name], **spec}
                ),
            }
            for name in names
        )

    def delete(self, names: Iterable[str]) -> None:
        self.kubectl("delete", PLURAL, *names, "--wait=false")

    def live(self) -> dict[str, dict[str, Any]]:
        """The scenario's VectorCollections that still exist (deleting ones included), by name."""
        items = json.loads(self.kubectl("get", PLURAL, "-o", "json"))["items"]
        return {item["metadata"]["name"]: item for item in items}

    @staticmethod
    def converged(item: dict[str, Any]) -> bool:
        status = item.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        return ready.get("status") == "True" and status.get("observedGeneration") == item["metadata"]["generation"]

    def count_converged(self, names: Iterable[str]) -> int:
        live = self.live()
        return sum(1 for n in names if n in live and self.converged(live[n]))

    # ------------------------------------------------------------------ Qdrant side

    def qdrant_get(self, path: str) -> dict[str, Any] | None:
        """The result, or None for 404; the test's own reads retry the dev server's injected 503s."""
        with self.qdrant.http(timeout=10) as http:
            resp = wait_for(lambda: (r := http.get(path)).status_code != 503 and r, 30, f"GET {path} without a 503")
            return resp.json()["result"] if resp.status_code == 200 else None

    def in_qdrant(self, names: Iterable[str]) -> set[str]:
        listed = {c["name"] for c in (self.qdrant_get("/collections") or {}).get("collections", [])}
        return {n for n in names if self.collection_name(n) in listed}

    def fill(self, names: Iterable[str]) -> None:
        """POINTS points into each collection, remembered for the 'nothing lost' check."""
        body = {"points": [{"id": i, "vector": [0.1 * (i + 1)] * 4, "payload": {"i": i}} for i in range(POINTS)]}
        with self.qdrant.http(timeout=30) as http:
            for name in names:
                http.put(
                    f"/collections/{self.collection_name(name)}/points", params={"wait": "true"}, json=body
                ).raise_for_status()
                self.points[name] = POINTS

    # ------------------------------------------------------------------ the invariants

    def problems(self) -> list[str]:
        """Empty when converged: every live resource Ready at its generation and owning its collection (the
        owner marker names exactly that resource), every deleted Retain collection kept with its points,
        every deleted Delete collection gone."""
        live, found = self.live(), []
        present = self.in_qdrant(self.policies)
        for name, policy in self.policies.items():
            item = live.get(name)
            if item is None and policy == "Delete":
                if name in present:
                    found.append(f"{name}: Delete-policy collection left in Qdrant")
                continue
            if name not in present:
                found.append(f"{name}: collection missing in Qdrant ({policy}, resource {'live' if item else 'gone'})")
                continue
            if item is not None and item["metadata"].get("deletionTimestamp"):
                found.append(f"{name}: still deleting")
            elif item is not None and not self.converged(item):
                found.append(f"{name}: not converged: {(item.get('status') or {}).get('conditions')}")
        return found or self._qdrant_problems(live)

    def _qdrant_problems(self, live: dict[str, dict[str, Any]]) -> list[str]:
        """Points and owner markers, read per collection only once everything else holds."""
        found = []
        for name in self.policies:
            if name not in live and self.policies[name] == "Delete":
                continue
            info = self.qdrant_get(f"/collections/{self.collection_name(name)}") or {}
            if (info.get("points_count") or 0) != self.points.get(name, 0):
                found.append(f"{name}: {info.get('points_count')} points, expected {self.points.get(name, 0)}")
            owner = ((info.get("config") or {}).get("metadata") or {}).get(OWNER_KEY)
            if name in live and owner != f"{self.namespace}/{name}/{live[name]['metadata']['uid']}":
                found.append(f"{name}: owner marker {owner!r} does not name the live resource")
        return found

    def converge(self, timeout: float, since: float | None = None) -> float:
        """Wait until problems() is empty; the seconds it took from `since` (default: now)."""
        since = time.monotonic() if since is None else since
        try:
            wait_for(lambda: not self.problems(), timeout, "convergence")
        except AssertionError:
            raise AssertionError(f"not converged after {timeout}s: {self.problems()[:10]}") from None
        return time.monotonic() - since

    def record(self, faults: str, seconds: float) -> None:
        """The results-table row (outcome is added from the test's result)."""
        self.row.update(faults=faults, objects=len(self.policies), seconds=round(seconds, 1))
