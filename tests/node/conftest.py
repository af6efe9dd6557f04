"""The end-to-end suite's node: devenv/node.py brought up once for the session (one node per machine: the
session holds the node's lock from `up` to `down`), and the tools a user has: kubectl, helm, a port-forward."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devenv import gotools, qdrant_real

REPO = Path(__file__).resolve().parents[2]
NODE_PY = REPO / "devenv" / "node.py"
# devenv/node.py's paths; not imported, since importing it points this process at the node's control plane.
KUBECONFIG = REPO / ".devenv" / "node" / "admin.kubeconfig"
AUDIT_LOG = REPO / ".devenv" / "node" / "controlplane" / "audit.log"
LOCK = Path("/run/qco-node.lock")
CONTAINERD = "/run/qco-node/containerd.sock"
TOOLS = ("containerd", "runc", "conntrack", "iptables", "buildah", "mmdebstrap", "kubectl")


def missing() -> str | None:
    if os.geteuid() != 0:
        return "the node needs root (containerd, cgroups, network namespaces)"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} is missing: `make node-tools image-tools` installs it"
    if qdrant_real.binary() is None:
        return "the real Qdrant is not built: `make qdrant-real-build`"
    if not gotools.path("helm").exists():
        return "helm is not built: `make go-tools`"
    return None


class CommandFailed(AssertionError):
    pass


@dataclass
class Node:
    env: dict[str, str]

    def sh(self, script: str, timeout: float = 300, check: bool = True) -> str:
        """A shell script as a user types it, from the repository root, with this node's KUBECONFIG."""
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise CommandFailed(f"{script}\nexit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc.stdout

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120) -> str:
        proc = subprocess.run(
            ["kubectl", *args], env=self.env, input=stdin, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise CommandFailed(f"kubectl {' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def apply(self, manifest: str, namespace: str | None = None) -> None:
        self.kubectl(*(["-n", namespace] if namespace else []), "apply", "-f", "-", stdin=manifest)

    def condition(self, kind: str, name: str, namespace: str, type_: str = "Ready") -> dict:
        conditions = self.json("-n", namespace, "get", kind, name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == type_), {})

    @contextlib.contextmanager
    def port_forward(self, namespace: str, target: str, port: int) -> Iterator[int]:
        """`kubectl port-forward` to a loopback port of its choice; yields that port."""
        proc = subprocess.Popen(
            ["kubectl", "-n", namespace, "port-forward", "--address=127.0.0.1", target, f":{port}"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = re.search(r"127\.0\.0\.1:(\d+)", line)
            assert match, f"kubectl port-forward said: {line}"
            yield int(match.group(1))
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DEVENV_")},  # not this worker's control plane
        "KUBECONFIG": str(KUBECONFIG),
        # helm, and this checkout's console scripts: kubectl finds the kubectl-qdrant plugin on PATH.
        "PATH": f"{gotools.path('helm').parent}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "QCO_NODE_LOCKED": "1",
    }
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another checkout's suite may be using the node: wait for it
        status = subprocess.run([sys.executable, str(NODE_PY), "status"], env=env, capture_output=True, text=True)
        started_here = "kubelet: running" not in status.stdout  # a node started by hand (make node-up) stays up
        subprocess.run([sys.executable, str(NODE_PY), "up"], env=env, check=True)
        try:
            yield Node(env)
        finally:
            if started_here:
                subprocess.run([sys.executable, str(NODE_PY), "down"], env=env, check=False)
