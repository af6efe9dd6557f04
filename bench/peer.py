"""Side by side: this operator and the PyPI `qdrant-operator` (4thel00z, kopf) on one workload.

Both run here as processes against the same local control plane, each with a dev Qdrant of its own on a
loopback port, and are measured the same way in the same run (ours is the baseline of every ratio):

1. N collections applied at once (PEER_COLLECTIONS, default 1000) until every one reports Ready=True and
   until every one exists in Qdrant;
2. the Qdrant calls that took (counted by a loopback proxy every call of the operator passes through);
3. RSS of the operator process (VmRSS) idle, with N collections, and after the restart;
4. Qdrant calls in an idle window of PEER_IDLE_SECONDS (default 65: one peer timer period, and ours is
   set to the same 60 s resync so the two compare like with like; ours defaults to 300 s);
5. drift: one collection deleted in Qdrant behind the operator's back, until it exists again;
6. restart: the process stopped and started again, until every collection was checked in Qdrant again.

How the peer is driven, without changing it (docs/benchmarks.md "Side by side"): it is installed from PyPI into its own
venv (cached in ~/.cache/collection-operator/peer-venv; its package says Python >= 3.12, the machine has
3.11, so pip is told to ignore that: every module imports and runs on 3.11). Its wheel and sdist ship no
CRDs, so minimal ones are derived from its code (`peer_crds`). Its collections reach Qdrant only through a
`QdrantCluster` it deploys with Helm, at a Service DNS name it builds itself
(`http://qdrant-<cluster>.<namespace>.svc.cluster.local:6333`, domain.py:459); nothing in its API takes
another URL. Here the cluster resource exists but is never deployed (no helm on its PATH, no kubelet, no
images), and its process gets HTTP_PROXY set to a loopback proxy that forwards whatever it asks for to
the dev server: httpx honours HTTP_PROXY, the host name is never resolved, nothing leaves loopback.
Our operator talks to the same kind of proxy directly (its QdrantConnection URL), so both pay the hop.

`python -m bench.peer` runs it; `main()` writes bench/results/peer.json; `measure(subject, n)` measures one
of the two on its own, for other benchmarks. It reports; it never asserts timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
from kubernetes_asyncio import client, config

from bench.client import results_file, start_server, write_results
from bench.kube import ReadyWatch, collection_body, control_plane, kubectl, operator_command, venv_with
from collection_operator.api import GROUP, VERSION
from devenv import controlplane as cp
from devenv.ports import free_port
from tests.fixtures.counting_proxy import CountingProxy

REPO = Path(__file__).resolve().parents[1]
PEER_PACKAGE = "qdrant-operator"
PEER_RELEASE = "0.3.2"  # the newest on PyPI when this was written
PEER_VENV = cp.CACHE / "peer-venv"
PEER_GROUP = "qdrant.io"  # qdrant_operator/domain.py:20
PEER_API_VERSION = "v1alpha1"  # domain.py:21
# Its kinds and plurals, domain.py:96-99, 1291, 1664, 1825. All are installed so that none of its watches fails.
PEER_KINDS = {
    "QdrantCluster": "qdrantclusters",
    "QdrantBackup": "qdrantbackups",
    "QdrantBackupSchedule": "qdrantbackupschedules",
    "QdrantRestore": "qdrantrestores",
    "QdrantCollection": "qdrantcollections",
    "QdrantAccessKey": "qdrantaccesskeys",
    "QdrantMigration": "qdrantmigrations",
}
PEER_TIMER_S = 60.0  # handlers.py:53 COLLECTION_RECONCILE_INTERVAL, a kopf timer on every QdrantCollection
OUR_RESYNC_S = 60  # ours set to the peer's period for this comparison (our default: 300 s)
DIM = 64
CONCURRENCY = 4  # our connection's maxConcurrentOperations, as in bench/operator.py
SETTLE_S = 5.0
READY_TIMEOUT_S = 1800.0
RESTART_TIMEOUT_S = 300.0


def _collections() -> int:
    return int(os.environ.get("PEER_COLLECTIONS", "1000"))


def _ready_budget() -> float:
    """PEER_READY_BUDGET_SECONDS: stop waiting for all Ready after this long and go on with the rest."""
    return float(os.environ.get("PEER_READY_BUDGET_SECONDS", str(READY_TIMEOUT_S)))


def _idle_seconds() -> float:
    return float(os.environ.get("PEER_IDLE_SECONDS", "65"))


# ------------------------------------------------------------------ the peer, installed and described


def peer_python() -> Path:
    """The peer's venv (created and filled from PyPI on first use); its interpreter. Its package says
    Requires-Python >=3.12; 3.11 is what this machine has (and all of it runs there)."""
    return venv_with(PEER_VENV, [f"{PEER_PACKAGE}=={PEER_RELEASE}"], "--ignore-requires-python")


def peer_crds() -> list[dict[str, Any]]:
    """Minimal CRDs for the peer's kinds: its wheel and sdist ship none (the project attaches them to its GitHub
    releases, which this machine cannot download). Namespaced, one version, a status subresource (it patches
    status), spec and status left open: its admission rules (CEL) are not reproduced, so the API server accepts
    what its own CRDs might refuse; none of the workload here comes near such a rule."""
    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return [
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{PEER_GROUP}"},
            "spec": {
                "group": PEER_GROUP,
                "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                "versions": [
                    {
                        "name": PEER_API_VERSION,
                        "served": True,
                        "storage": True,
                        "subresources": {"status": {}},
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {"spec": open_object, "status": open_object},
                            }
                        },
                    }
                ],
            },
        }
        for kind, plural in PEER_KINDS.items()
    ]


def apply_peer_crds() -> None:
    crds = {"apiVersion": "v1", "kind": "List", "items": peer_crds()}
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(crds))
    for plural in PEER_KINDS.values():
        kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{plural}.{PEER_GROUP}")


# ------------------------------------------------------------------ the proxy every Qdrant call passes through


class ForwardingProxy(CountingProxy):
    """The counting proxy, also usable as an HTTP forward proxy: a request in absolute form
    (`GET http://qdrant-x.ns.svc.cluster.local:6333/readyz`, what a client sends to its HTTP_PROXY) goes to the
    upstream in origin form. Counts every call (no cap), the hosts asked for, and when each collection was
    last named in a call."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.counts: Counter[str] = Counter()
        self.hosts: Counter[str] = Counter()
        self.touched: dict[str, float] = {}
        self.total = 0
        self._counted = threading.Lock()
        # The peer opens a connection per call and has no concurrency limit (thousands at once with 1000
        # collections): http.server's listen backlog of 5 would refuse them, where Qdrant's is 2048.
        self._server.socket.listen(2048)
        # A client that goes away mid keep-alive (an operator stopped for the restart) is not an error here.
        self._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]

    def clear(self) -> None:
        with self._counted:
            self.counts.clear()
            self.touched.clear()
            self.total = 0
        self.reset()

    def snapshot(self) -> tuple[int, dict[str, int]]:
        with self._counted:
            return self.total, dict(self.counts)

    def _record(self, method: str, path: str) -> dict[str, Any]:
        entry = super()._record(method, path)
        parts = path.split("/")
        with self._counted:
            self.total += 1
            self.counts[f"{method} {entry['template']}"] += 1
            if len(parts) > 2 and parts[1] == "collections" and parts[2]:
                self.touched[parts[2]] = time.perf_counter()
        return entry

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        base: Any = super()._handler()
        proxy = self

        class Forwarding(base):  # type: ignore[misc, valid-type]
            def _forward(self) -> None:
                target = urllib.parse.urlsplit(self.path)
                if target.scheme:
                    with proxy._counted:
                        proxy.hosts[target.netloc] += 1
                    self.path = urllib.parse.urlunsplit(("", "", target.path or "/", target.query, ""))
                super()._forward()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

        return Forwarding


# ------------------------------------------------------------------ the two operators under test


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


@dataclass
class Subject:
    """One operator: its resources, how its process starts, how to tell it started."""

    name: str
    group: str
    plural: str
    log: Path
    source: Path = REPO / "operator"  # ours: the code it runs (another checkout's, for a before/after)
    proc: subprocess.Popen[bytes] | None = None
    liveness_port: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    # -- resources

    def connection(self, proxy_url: str) -> tuple[str, dict[str, Any]]:
        if self.name == "peer":
            # Its cluster resource: version is the one required field (domain.py:431). Never deployed here.
            return "qdrantclusters", {
                "apiVersion": f"{PEER_GROUP}/{PEER_API_VERSION}",
                "kind": "QdrantCluster",
                "metadata": {"name": "bench"},
                "spec": {"version": "v1.16.3", "replicas": 1},
            }
        return "qdrantconnections", {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "QdrantConnection",
            "metadata": {"name": "bench"},
            "spec": {"url": proxy_url, "environment": "Production", "maxConcurrentOperations": CONCURRENCY},
        }

    def collection(self, name: str, collection: str) -> dict[str, Any]:
        if self.name == "peer":
            return {
                "apiVersion": f"{PEER_GROUP}/{PEER_API_VERSION}",
                "kind": "QdrantCollection",
                "metadata": {"name": name},
                "spec": {
                    "clusterRef": {"name": "bench"},
                    "collectionName": collection,
                    "vectors": [{"size": DIM, "distance": "Cosine"}],
                },
            }
        return collection_body(name, collection)

    # -- process

    def start(self, namespace: str, proxy_url: str) -> None:
        if self.name == "peer":
            self.liveness_port = free_port()
            # kopf directly rather than its `qdrant-operator` script: that one always adds --all-namespaces
            # (main.py:32), which kopf refuses together with --namespace, and a liveness endpoint on 0.0.0.0
            # (main.py:12). Its handlers module is what the script runs (main.py:39-41).
            cmd = [
                str(peer_python()), "-m", "kopf", "run", "-m", "qdrant_operator.handlers", "--standalone",
                "--namespace", namespace, f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
            ]  # fmt: skip
            env = {
                "PATH": f"{PEER_VENV / 'bin'}:/usr/bin:/bin",  # no helm: its QdrantCluster is never deployed
                "KUBECONFIG": str(cp.ADMIN_KUBECONFIG),  # it ships no RBAC of its own
                "HTTP_PROXY": proxy_url,
                "NO_PROXY": "127.0.0.1,localhost",  # the API server is reached directly
                "LOG_FORMAT": "text",
                "HOME": os.environ.get("HOME", "/tmp"),
            }
        else:
            command, runtime = operator_command()
            cmd = [
                *command, "run", "--namespace", namespace, "--bind", "127.0.0.1", "--log-format", "text",
            ]  # fmt: skip
            env = {
                **os.environ,
                **runtime,
                "PYTHONPATH": str(self.source),
                "KUBECONFIG": str(cp.OPERATOR_KUBECONFIG),
                "QDRANT_OPERATOR_METRICS_PORT": "0",
                "QDRANT_OPERATOR_HEALTH_PORT": "0",
                "QDRANT_OPERATOR_RESYNC_INTERVAL_SECONDS": str(OUR_RESYNC_S),
            }
            for key in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
                env.pop(key, None)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    async def wait_started(self, namespace: str) -> None:
        deadline = time.monotonic() + 120
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} operator exited ({self.proc.returncode}); log: {self.log}")
            if self.name == "peer":
                try:
                    async with httpx.AsyncClient(timeout=1) as http:
                        if (await http.get(f"http://127.0.0.1:{self.liveness_port}/healthz")).status_code == 200:
                            return
                except httpx.HTTPError:
                    pass
            elif kubectl(
                "get", "qdrantconnections", "bench", "-n", namespace,
                "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            ).strip() == "True":  # fmt: skip
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name} operator did not start; log: {self.log}")

    def rss_kib(self) -> int:
        assert self.proc is not None
        return _rss_kib(self.proc.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


# ------------------------------------------------------------------ measurement


async def _in_qdrant(http: httpx.AsyncClient, names: set[str]) -> float:
    """When every one of `names` exists in Qdrant (polled directly, not through the proxy)."""
    async with asyncio.timeout(READY_TIMEOUT_S):
        while True:
            result = (await http.get("/collections")).json()["result"]["collections"]
            if names <= {c["name"] for c in result}:
                return time.perf_counter()
            await asyncio.sleep(0.25)


async def _exists(http: httpx.AsyncClient, name: str) -> bool:
    return bool((await http.get(f"/collections/{name}/exists")).json()["result"]["exists"])


async def _release(api: client.CustomObjectsApi, namespace: str, group: str, plurals: list[str]) -> None:
    """With the operator stopped: drop every finalizer left in the namespace, so it can be deleted."""
    for plural in plurals:
        items = (await api.list_namespaced_custom_object(group, "v1alpha1", namespace, plural))["items"]
        await asyncio.gather(
            *(
                api.patch_namespaced_custom_object(
                    group,
                    "v1alpha1",
                    namespace,
                    plural,
                    item["metadata"]["name"],
                    {"metadata": {"finalizers": None}},
                    _content_type="application/merge-patch+json",
                )
                for item in items
                if item["metadata"].get("finalizers")
            )
        )


async def _gone(api: client.CustomObjectsApi, group: str, plural: str, namespace: str) -> None:
    """Until the operator has let every resource of `plural` go (one list a second, not a wait per object)."""
    for _ in range(int(READY_TIMEOUT_S)):
        if not (await api.list_namespaced_custom_object(group, "v1alpha1", namespace, plural))["items"]:
            return
        await asyncio.sleep(1)
    raise TimeoutError(f"{plural} in {namespace} still there after {READY_TIMEOUT_S} s")


def _per(calls: int, n: int) -> float:
    return round(calls / n, 2) if n else 0.0


@dataclass
class Started:
    """One operator started on a dev Qdrant of its own behind a proxy, in a namespace of its own, with its
    connection (ours) or cluster (the peer) object."""

    subject: Subject
    api: client.CustomObjectsApi
    qdrant: httpx.AsyncClient  # the dev server directly, not through the proxy
    proxy: ForwardingProxy
    namespace: str
    tag: str
    start_s: float  # ours: its connection Ready; the peer: its liveness endpoint answers


@contextlib.asynccontextmanager
async def started(subject_name: str, tier: str = "dev", source: Path | None = None) -> AsyncIterator[Started]:
    """`subject_name` ("ours" or "peer") running until the block ends; then stopped, its finalizers released and
    its namespace, proxy and server gone. The control plane must be up with both operators' CRDs applied."""
    tag = uuid.uuid4().hex[:6]
    namespace = f"peer-bench-{subject_name}-{tag}"
    with tempfile.TemporaryDirectory(prefix=f"bench-peer-{subject_name}-") as tmp:
        server = start_server(tier, Path(tmp) / "data")
        proxy = ForwardingProxy(server.url)
        proxy.start()
        subject = Subject(
            subject_name,
            PEER_GROUP if subject_name == "peer" else GROUP,
            "qdrantcollections" if subject_name == "peer" else "vectorcollections",
            Path(tmp) / "operator.log",
            source or REPO / "operator",
        )
        kubectl("create", "namespace", namespace)
        cfg = client.Configuration()
        await config.load_kube_config(config_file=str(cp.ADMIN_KUBECONFIG), client_configuration=cfg)
        cfg.connection_pool_maxsize = 200
        try:
            async with (
                client.ApiClient(configuration=cfg) as api_client,
                httpx.AsyncClient(base_url=server.url, timeout=30) as qdrant,
            ):
                api = client.CustomObjectsApi(api_client)
                conn_plural, conn_body = subject.connection(proxy.url)
                await api.create_namespaced_custom_object(subject.group, "v1alpha1", namespace, conn_plural, conn_body)
                begun = time.perf_counter()
                subject.start(namespace, proxy.url)
                try:
                    await subject.wait_started(namespace)
                    yield Started(subject, api, qdrant, proxy, namespace, tag, time.perf_counter() - begun)
                finally:
                    subject.stop()
                    plurals = list(PEER_KINDS.values()) if subject_name == "peer" else [conn_plural]
                    await _release(api, namespace, subject.group, [*plurals, subject.plural])
        finally:
            subject.stop()
            kubectl("delete", "namespace", namespace, "--wait=false")
            proxy.stop()
            server.close()


async def idle_rss_mib(subject_name: str, tier: str = "dev", source: Path | None = None) -> float:
    """VmRSS of `subject_name` started alone with one connection and no collections, SETTLE_S after it started:
    the "RSS idle" of `measure`."""
    async with started(subject_name, tier, source) as run:
        await asyncio.sleep(SETTLE_S)
        return round(run.subject.rss_kib() / 1024, 1)


async def measure(subject_name: str, n: int, tier: str = "dev", idle_s: float | None = None) -> dict[str, Any]:
    """One operator ("ours" or "peer") through the whole workload, on a fresh dev Qdrant and namespace of its
    own. The control plane must be up with both operators' CRDs applied (`main` does that)."""
    idle_s = _idle_seconds() if idle_s is None else idle_s
    async with started(subject_name, tier) as run:
        subject, api, qdrant, proxy, namespace = run.subject, run.api, run.qdrant, run.proxy, run.namespace
        try:
            await asyncio.sleep(SETTLE_S)
            rss_idle = subject.rss_kib()

            ready = ReadyWatch(api, namespace, subject.group, subject.plural)
            ready.start()
            names = [f"c-{i}" for i in range(n)]
            collections = {name: f"{run.tag}-{name}" for name in names}
            proxy.clear()
            t0 = time.perf_counter()
            await asyncio.gather(
                *(
                    api.create_namespaced_custom_object(
                        subject.group, "v1alpha1", namespace, subject.plural, subject.collection(name, coll)
                    )
                    for name, coll in collections.items()
                )
            )
            applied_s = time.perf_counter() - t0
            in_qdrant = asyncio.create_task(_in_qdrant(qdrant, set(collections.values())))
            all_ready: float | None = None
            all_in_qdrant: float | None = None
            try:
                all_ready = await asyncio.wait_for(ready.wait(names, READY_TIMEOUT_S), _ready_budget())
            except TimeoutError:
                pass  # what was Ready and in Qdrant by then is reported; the other phases still run
            finally:
                await ready.stop()
            try:
                all_in_qdrant = await asyncio.wait_for(in_qdrant, 0 if all_ready is None else READY_TIMEOUT_S)
            except TimeoutError:
                pass
            present = {c["name"] for c in (await qdrant.get("/collections")).json()["result"]["collections"]}
            ready_count, in_qdrant_count = len(ready.ready_at), len(present & set(collections.values()))
            budget_s = time.perf_counter() - t0
            ready_latencies = sorted(ready.ready_at[name] - t0 for name in names if name in ready.ready_at)
            await asyncio.sleep(2)
            create_calls, create_counts = proxy.snapshot()
            rss_loaded = subject.rss_kib()

            proxy.clear()
            await asyncio.sleep(idle_s)
            idle_calls, idle_counts = proxy.snapshot()

            victim = next(c for c in collections.values() if c in present)
            await qdrant.delete(f"/collections/{victim}")
            deleted = time.perf_counter()
            drift_s: float | None = None
            drift_limit = 2 * max(PEER_TIMER_S, OUR_RESYNC_S) + 30
            while time.perf_counter() - deleted < drift_limit:
                if await _exists(qdrant, victim):
                    drift_s = time.perf_counter() - deleted
                    break
                await asyncio.sleep(0.25)

            subject.stop()
            proxy.clear()
            restarted = time.perf_counter()
            subject.start(namespace, proxy.url)
            await subject.wait_started(namespace)
            wanted = set(collections.values())
            recheck_s: float | None = None
            while time.perf_counter() - restarted < RESTART_TIMEOUT_S:
                touched = dict(proxy.touched)
                if wanted <= touched.keys():
                    recheck_s = max(touched[c] for c in wanted) - restarted
                    break
                await asyncio.sleep(0.25)
            restart_calls, restart_counts = proxy.snapshot()
            touched_after_restart = len(wanted & proxy.touched.keys())
            await asyncio.sleep(SETTLE_S)
            rss_restarted = subject.rss_kib()
            hosts = dict(proxy.hosts)

            # Retain (both defaults): deleting the resources while the operator runs touches no data.
            kubectl("delete", subject.plural, "--all", "-n", namespace, "--wait=false")
            await _gone(api, subject.group, subject.plural, namespace)
        finally:
            log_tail = subject.log.read_text(errors="replace").splitlines()[-20:] if subject.log.exists() else []
    return {
        "operator": subject_name,
        "collections": n,
        "started_s": round(run.start_s, 2),  # ours: its connection Ready; the peer: its liveness endpoint answers
        "api_creates_accepted_s": round(applied_s, 2),
        "all_ready_s": None if all_ready is None else round(all_ready - t0, 2),
        "all_in_qdrant_s": None if all_in_qdrant is None else round(all_in_qdrant - t0, 2),
        # With PEER_READY_BUDGET_SECONDS: how far it got in that time (all of them when it finished).
        "ready_after_s": round(budget_s, 1),
        "ready_count": ready_count,
        "in_qdrant_count": in_qdrant_count,
        "ready_p50_s": round(statistics.median(ready_latencies), 2) if ready_latencies else None,
        "collections_per_s": round(ready_count / budget_s, 1),
        "qdrant_calls_create": create_calls,
        "qdrant_calls_per_collection_create": _per(create_calls, n),
        "qdrant_calls_create_by_route": create_counts,
        "idle_window_s": idle_s,
        "qdrant_calls_idle": idle_calls,
        "qdrant_calls_idle_per_minute": round(idle_calls * 60 / idle_s, 1),
        "qdrant_calls_idle_by_route": idle_counts,
        "drift_deleted_to_recreated_s": None if drift_s is None else round(drift_s, 2),
        "drift_limit_s": drift_limit,
        "restart_all_rechecked_s": None if recheck_s is None else round(recheck_s, 2),
        "restart_collections_rechecked": touched_after_restart,
        "qdrant_calls_restart": restart_calls,
        "qdrant_calls_restart_by_route": restart_counts,
        "rss_idle_mib": round(rss_idle / 1024, 1),
        "rss_loaded_mib": round(rss_loaded / 1024, 1),
        "rss_after_restart_mib": round(rss_restarted / 1024, 1),
        "qdrant_hosts_asked_through_proxy": hosts,
        "log_tail": log_tail,
    }


def _ratio(peer: float | None, ours: float | None) -> float | None:
    if peer is None or ours is None or ours == 0:
        return None
    return round(peer / ours, 2)


RATIOS = [
    "all_ready_s",
    "collections_per_s",
    "all_in_qdrant_s",
    "qdrant_calls_per_collection_create",
    "qdrant_calls_idle_per_minute",
    "drift_deleted_to_recreated_s",
    "restart_all_rechecked_s",
    "qdrant_calls_restart",
    "rss_idle_mib",
    "rss_loaded_mib",
]


async def main(tier: str = "dev") -> dict[str, Any]:
    if tier != "dev":
        print(f"peer benchmark: dev tier only (asked for {tier}); skipped")
        return {}
    n = _collections()
    peer_python()
    with control_plane():
        apply_peer_crds()
        ours = await measure("ours", n, tier)
        print(f"ours, {n} collections: {json.dumps({k: v for k, v in ours.items() if k != 'log_tail'})}", flush=True)
        peer = await measure("peer", n, tier)
    results = {
        "server": f"dev Qdrant (qdrant-edge engine) on loopback, one per operator; control plane "
        f"{cp.KUBERNETES_VERSION}",
        "peer": f"{PEER_PACKAGE} {PEER_RELEASE} from PyPI (kopf, run on Python {sys.version.split()[0]})",
        "collections": n,
        "load_average_1m_at_end": round(os.getloadavg()[0], 1),
        "cpus": os.cpu_count(),
        "ours": ours,
        "peer_results": peer,
        "ratio_peer_over_ours": {key: _ratio(peer.get(key), ours.get(key)) for key in RATIOS},
    }
    out = write_results("peer", tier, results)
    _print(results, out)
    return results


def _print(results: dict[str, Any], out: Path) -> None:
    ours, peer = results["ours"], results["peer_results"]
    print(f"side by side, {results['collections']} collections ({results['server']}; {results['peer']})")
    print(f"  {'':38} {'ours':>10} {'peer':>10} {'peer/ours':>10}")
    for key in [*RATIOS, "qdrant_calls_create", "rss_after_restart_mib"]:
        ratio = results["ratio_peer_over_ours"].get(key)
        print(f"  {key:38} {ours.get(key)!s:>10} {peer.get(key)!s:>10} {ratio if ratio is not None else '':>10}")
    print(f"  written to {out}")


ROWS = [
    ("applied at once until all Ready", "all_ready_s", "s"),
    ("... until all exist in Qdrant", "all_in_qdrant_s", "s"),
    ("collections Ready per second", "collections_per_s", ""),
    ("Qdrant calls per collection created", "qdrant_calls_per_collection_create", ""),
    ("Qdrant calls per minute, idle", "qdrant_calls_idle_per_minute", ""),
    ("collection deleted in Qdrant until re-created", "drift_deleted_to_recreated_s", "s"),
    ("restart until every collection re-checked", "restart_all_rechecked_s", "s"),
    ("Qdrant calls in that restart", "qdrant_calls_restart", ""),
    ("RSS idle (no collections)", "rss_idle_mib", "MiB"),
    ("RSS with the collections", "rss_loaded_mib", "MiB"),
    ("RSS after the restart", "rss_after_restart_mib", "MiB"),
]


def markdown(results: dict[str, Any]) -> str:
    """The table of docs/benchmarks.md from a results file: `python -m bench.peer table`."""
    ours, peer = results["ours"], results["peer_results"]
    lines = [
        f"| {results['collections']} collections | this operator | qdrant-operator {PEER_RELEASE} | peer / ours |",
        "|---|---|---|---|",
    ]
    for label, key, unit in ROWS:
        ratio = _ratio(peer.get(key), ours.get(key))
        cells = [
            f"{v} {unit}".strip() if v is not None else "not within the limit" for v in (ours.get(key), peer.get(key))
        ]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {'' if ratio is None else f'{ratio}x'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["table"]:
        print(markdown(json.loads(results_file("peer", "dev").read_text())))
    else:
        asyncio.run(main())
