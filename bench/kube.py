"""What the operator benchmarks share: the local control plane, kubectl, VectorCollection and QdrantConnection
bodies, a watch for Ready, the API server's audit log and percentiles."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, watch
from qdrant_client import AsyncQdrantClient, models

from collection_operator.api import GROUP, VERSION
from devenv import controlplane as cp

REPO = Path(__file__).resolve().parents[1]
KUBECTL = Path(sys.executable).parent / "kubectl"
PLURAL = "vectorcollections"
DIM = 64
CONCURRENCY = 4  # the connection's maxConcurrentOperations (API.md default)
READY_TIMEOUT_S = 300.0
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
BARE_BODY = models.VectorParams(size=DIM, distance=models.Distance.COSINE)
RUNTIME_VENV = cp.CACHE / "runtime-venv"


def venv_with(venv: Path, requirements: list[str], *pip_args: str) -> Path:
    """A venv holding just `requirements` (created and filled from PyPI when they change); its interpreter."""
    python = venv / "bin" / "python"
    wanted = hashlib.sha256("\n".join([*requirements, *pip_args]).encode()).hexdigest()[:16]
    stamp = venv / f".installed-{wanted}"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True, capture_output=True)
        subprocess.run([*pip, *pip_args, *requirements], check=True)
        stamp.touch()
    return python


def operator_command() -> tuple[list[str], dict[str, str]]:
    """The operator's command line and environment as its image runs it: this checkout's code with only its
    runtime dependencies. Not the benchmarks' venv: kopf imports any Kubernetes client library it finds
    installed (kubernetes_asyncio there, for the benchmarks), which would count in the operator's memory."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    python = venv_with(RUNTIME_VENV, project["dependencies"])
    paths = [REPO / "operator", _metadata(project["name"], project["version"])]
    return [str(python), "-m", "collection_operator.cli"], {"PYTHONPATH": os.pathsep.join(map(str, paths))}


def _metadata(name: str, version: str) -> Path:
    """The package's metadata alone, which `__version__` reads; its code comes from PYTHONPATH."""
    root = cp.STATE / "runtime-metadata"
    shutil.rmtree(root, ignore_errors=True)
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return root


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def kubectl(*args: str, stdin: str | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(
        [str(KUBECTL), f"--kubeconfig={cp.ADMIN_KUBECONFIG}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return proc.stdout


@contextmanager
def control_plane() -> Iterator[None]:
    """The local control plane with the CRDs and the operator's RBAC; started (and stopped after) if not running."""
    tokens = cp.TOKENS.exists() and cp._tokens()
    running = bool(tokens and cp._pid("kube-apiserver") and cp._apiserver_ready(tokens["admin"]))
    if not running:
        cp.up()
    kubectl("apply", "--server-side", "--force-conflicts", "-k", str(REPO / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}")
    for manifest in ("namespace.yaml", "rbac.yaml"):
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "manifests/base" / manifest))
    try:
        yield
    finally:
        if not running:
            cp.down()


class ReadyWatch:
    """One watch on the namespace's VectorCollections: when each first reported Ready=True."""

    def __init__(self, api: client.CustomObjectsApi, namespace: str, group: str = GROUP, plural: str = PLURAL) -> None:
        self.api, self.namespace, self.group, self.plural = api, namespace, group, plural
        self.ready_at: dict[str, float] = {}
        self.errors: list[str] = []  # watch streams that broke and were started again
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                await self._watch()
            except Exception as exc:  # a broken stream (API server busy, 410 Gone): list and watch again
                self.errors.append(repr(exc)[:200])
                await asyncio.sleep(0.5)

    async def _watch(self) -> None:
        async with watch.Watch() as stream:
            async for event in stream.stream(
                self.api.list_namespaced_custom_object,
                self.group,
                VERSION,
                self.namespace,
                self.plural,
                timeout_seconds=300,
            ):
                obj = event["object"]
                if event.get("type") == "ERROR" or "name" not in ((obj or {}).get("metadata") or {}):  # a Status
                    raise RuntimeError(f"watch event {event.get('type')}: {str(obj)[:150]}")
                name = obj["metadata"]["name"]
                conditions = (obj.get("status") or {}).get("conditions") or []
                if name not in self.ready_at and any(
                    c["type"] == "Ready" and c["status"] == "True" for c in conditions
                ):
                    self.ready_at[name] = time.perf_counter()
                    async with self._changed:
                        self._changed.notify_all()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait(self, names: list[str], within_s: float = READY_TIMEOUT_S) -> float:
        """When the last of `names` was Ready."""
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: all(n in self.ready_at for n in names))
        return max(self.ready_at[n] for n in names)


def collection_body(name: str, collection: str, connection: str = "bench") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VectorCollection",
        "metadata": {"name": name},
        "spec": {
            "connectionRef": {"name": connection},
            "collectionName": collection,
            "vectors": [{"size": DIM, "distance": "Cosine"}],
        },
    }


async def create_bare(qdrant: AsyncQdrantClient, name: str) -> None:
    """One bulk collection as a bare client creates it: the vectors and efConstruct of bench/scale.py's spec."""
    await qdrant.create_collection(name, vectors_config=BARE_BODY, hnsw_config=models.HnswConfigDiff(ef_construct=100))


async def connect(api: client.CustomObjectsApi, namespace: str, name: str, url: str) -> None:
    """A Production QdrantConnection at the default concurrency, waited for until Ready."""
    await api.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "qdrantconnections",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "QdrantConnection",
            "metadata": {"name": name},
            "spec": {"url": url, "environment": "Production", "maxConcurrentOperations": CONCURRENCY},
        },
    )
    deadline = time.monotonic() + 60
    while not connection_ready(namespace, name):
        if time.monotonic() > deadline:
            raise RuntimeError(f"QdrantConnection {name} did not become Ready")
        await asyncio.sleep(0.2)


def connection_ready(namespace: str, name: str) -> bool:
    out = kubectl(
        "get",
        "qdrantconnections",
        name,
        "-n",
        namespace,
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
    )
    return out.strip() == "True"


def audit_events(since: int) -> Iterator[dict[str, Any]]:
    """The API server's audit events appended after byte offset `since` (cp.AUDIT_LOG, one JSON line each)."""
    with cp.AUDIT_LOG.open("rb") as handle:
        handle.seek(since)
        for line in handle.read().splitlines():
            try:
                yield json.loads(line)
            except ValueError:  # a line still being written
                continue


def audit_writes(namespace: str, since: int) -> Counter[str]:
    """Writes in `namespace` since the offset, counted by "verb resource[/subresource]"."""
    found: Counter[str] = Counter()
    for event in audit_events(since):
        ref = event.get("objectRef") or {}
        if event.get("verb") in WRITE_VERBS and ref.get("namespace") == namespace:
            what = ref.get("resource", "?") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            found[f"{event['verb']} {what}"] += 1
    return found
