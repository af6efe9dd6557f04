"""Scale benchmark: the operator with 1,000 VectorCollections (SCALE_COLLECTIONS) on 3 QdrantConnections.

On the local environment: the real control plane (bench.kube), 3 dev Qdrant servers on free loopback ports
(bench.client.start_server) for the operator and 3 more for the baseline, and the operator as its own process
(`qdrant-collection-operator run -n <namespace>`, as `make run` and the fault tests start it) so that its RSS
(/proc/<pid>/status VmRSS) and CPU (/proc/<pid>/stat utime+stime) are its own. In one run, in this order:

1. bulk: all collections applied at once until all Ready (per-collection apply-to-Ready p50/p95/p99), versus
   a bare async qdrant-client creating the same collections on its own 3 servers at the operator's
   concurrency (maxConcurrentOperations per connection); RSS idle after start and after the collections;
2. fairness, idle: one new collection's apply-to-Ready with nothing else going on (the operator runs with a
   resync so long that no sweep starts);
3. restart: the operator stopped and started again (now with a 60 s resync); time until every collection was
   re-verified, observed as a GET /collections/{name} of each in the dev servers' request logs (and the
   operator's reconcile counter), and the writes meanwhile: Kubernetes from the API server's audit log,
   Qdrant from the dev servers' request counts (every method but GET);
4. sweep: one routine drift sweep of all collections, spread over half the 60 s resync (wall time, Qdrant
   calls by kind, CPU seconds with the idle CPU rate subtracted), and during it new collections'
   apply-to-Ready (fairness: target within 2x the idle figure), with the sweep checked to be running
   (collections still to be read) when each got Ready;
5. drift: collections changed behind the operator's back with qdrant-client (HNSW ef_construct raised, a
   collection deleted) and the time until Qdrant shows them restored; what resyncs of 300 s, 120 s (the
   default) and 60 s cost, from the measured sweep;
6. soak: SCALE_SOAK_SECONDS (1800) with one spec change a second (efConstruct of the next collection in
   turn); RSS, threads, open fds and the operator's bookkeeping (qdrant_operator_internal_entries: asyncio
   tasks, resource locks, status cache, re-index gates, restores, connections) every minute: first/last/max
   and slope.

Writes bench/results/scale.json and prints each phase as it ends and a summary (SCALE_OPERATOR_LOG keeps the
operator's log). It reports; it never asserts timings.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config
from qdrant_client import AsyncQdrantClient, models

from bench.client import start_server, write_results
from bench.kube import (
    BARE_BODY,
    CONCURRENCY,
    PLURAL,
    ReadyWatch,
    audit_writes,
    collection_body,
    connect,
    control_plane,
    create_bare,
    kubectl,
    ms,
    operator_command,
    percentile,
)
from collection_operator.api import GROUP, VERSION
from collection_operator.reconcile.connection_step import SWEEP_SPREAD
from devenv import controlplane as cp
from devenv.ports import free_port
from tests.fixtures.qdrant import QdrantServer

COLLECTIONS = int(os.environ.get("SCALE_COLLECTIONS", "1000"))
SOAK_SECONDS = float(os.environ.get("SCALE_SOAK_SECONDS", "1800"))
CONNECTIONS = 3
EF_CONSTRUCT = 100  # stated in every spec, so a change of it in Qdrant is drift
NO_SWEEP_RESYNC_S = 3600.0  # bulk and the idle figure: no sweep may start
SHORT_RESYNC_S = 60.0  # restart, sweep, drift and soak: the candidate default
PROBES = 5  # single applies for the idle fairness figure
API_PARALLEL = 50  # creates in flight to the API server while applying the bulk
SAMPLE_EVERY_S = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WRITE_METHODS = ("PUT", "POST", "PATCH", "DELETE")
READ_ONE = "GET /collections/{collection_name}"
PROBE_TEMPLATES = ("GET /", "GET /cluster", "GET /healthz", "GET /readyz")


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _mib(kib: float) -> float:
    return round(kib / 1024, 1)


class OperatorProcess:
    """`qdrant-collection-operator run` in its own process, watching one namespace as the operator's RBAC
    identity, with metrics and liveness on free loopback ports; its /proc figures."""

    def __init__(self, namespace: str, log: Path) -> None:
        self.namespace, self.log = namespace, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0

    def start(self, resync_s: float) -> float:
        """Start it; returns the seconds until its liveness endpoint answered."""
        self.metrics_port, health_port = free_port(), free_port()
        command, runtime = operator_command()
        env = {k: v for k, v in os.environ.items() if not k.startswith("QDRANT_OPERATOR_")}
        env.update(
            runtime,
            KUBECONFIG=str(cp.OPERATOR_KUBECONFIG),
            PYTHONUNBUFFERED="1",
            QDRANT_OPERATOR_METRICS_PORT=str(self.metrics_port),
            QDRANT_OPERATOR_HEALTH_PORT=str(health_port),
            QDRANT_OPERATOR_RESYNC_INTERVAL_SECONDS=str(resync_s),
        )
        started = time.perf_counter()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*command, "run", "-n", self.namespace, "--log-format", "json"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while _get(f"http://127.0.0.1:{health_port}/healthz") is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"operator did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        return time.perf_counter() - started

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def threads(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        raise RuntimeError("no Threads")

    def cpu_s(self) -> float:
        return cpu_seconds(self.pid)

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def internal_entries(self) -> dict[str, float]:
        """The operator's bookkeeping sizes (qdrant_operator_internal_entries{holds=...}): tasks, locks, caches."""
        text = _get(f"http://127.0.0.1:{self.metrics_port}/metrics") or ""
        prefix = 'qdrant_operator_internal_entries{holds="'
        return {
            line[len(prefix) :].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(prefix)
        }

    def reconciles(self) -> float:
        """VectorCollection reconciles since the process started (qdrant_operator_reconciles_total)."""
        text = _get(f"http://127.0.0.1:{self.metrics_port}/metrics") or ""
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("qdrant_operator_reconciles_total{") and 'kind="VectorCollection"' in line
        )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


class RequestLogs:
    """The dev servers' request logs (the tests' way of counting Qdrant calls): counts by "METHOD template"
    and the collections each server was asked for by GET /collections/{name} (from its last 5,000 requests,
    read often enough that none is missed)."""

    def __init__(self, servers: list[QdrantServer], prefix: str) -> None:
        self.servers, self.prefix = servers, f"/collections/{prefix}"  # collection = prefix + resource name
        self.read: set[str] = set()

    def reset(self) -> None:
        for server in self.servers:
            server.reset_requests()
        self.read = set()

    def poll(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for server in self.servers:
            log = server.requests()
            counts.update(log["counts"])
            self.read.update(
                r["path"].removeprefix(self.prefix)
                for r in log["requests"]
                if r["method"] == "GET" and r["template"] == "/collections/{collection_name}"
            )
        return counts

    async def apoll(self) -> Counter[str]:
        return await asyncio.to_thread(self.poll)


def _writes(counts: Counter[str]) -> dict[str, int]:
    return {k: n for k, n in counts.items() if k.split()[0] in WRITE_METHODS}


def _calls(counts: Counter[str]) -> dict[str, int]:
    """Calls other than the health probes."""
    return {k: n for k, n in counts.items() if k not in PROBE_TEMPLATES}


def _spec(name: str, index: int, tag: str) -> dict[str, Any]:
    body = collection_body(name, f"{tag}-{name}", f"q{index % CONNECTIONS}")
    body["spec"]["hnsw"] = {"efConstruct": EF_CONSTRUCT}
    return body


async def _wait_until(check: Callable[[], Awaitable[bool]], within_s: float, what: str, every: float = 0.5) -> float:
    """Poll until `check()`; returns when it first held (perf_counter)."""
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {within_s:.0f} s")
        await asyncio.sleep(every)
    return time.perf_counter()


# ------------------------------------------------------------------ 1. bulk


async def _bare_bulk(servers: list[QdrantServer], names: list[str], tag: str) -> float:
    """The baseline: a bare qdrant-client per server, CONCURRENCY creates in flight on each, as the operator."""
    clients = [AsyncQdrantClient(url=s.url, check_compatibility=False) for s in servers]
    limits = [asyncio.Semaphore(CONCURRENCY) for _ in servers]
    try:
        for c in clients:
            await c.create_collection(f"{tag}-warm", vectors_config=BARE_BODY)

        async def one(i: int, name: str) -> None:
            async with limits[i % CONNECTIONS]:
                await create_bare(clients[i % CONNECTIONS], f"{tag}-{name}")

        started = time.perf_counter()
        await asyncio.gather(*(one(i, n) for i, n in enumerate(names)))
        return time.perf_counter() - started
    finally:
        for c in clients:
            await c.close()


async def _apply_all(api: client.CustomObjectsApi, ns: str, names: list[str], tag: str) -> dict[str, float]:
    """Create every VectorCollection, API_PARALLEL requests in flight; when each create was sent."""
    limit = asyncio.Semaphore(API_PARALLEL)
    sent: dict[str, float] = {}

    async def one(i: int, name: str) -> None:
        async with limit:
            sent[name] = time.perf_counter()
            await api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _spec(name, i, tag))

    await asyncio.gather(*(one(i, n) for i, n in enumerate(names)))
    return sent


async def bulk(
    api: client.CustomObjectsApi, ns: str, ready: ReadyWatch, names: list[str], tag: str, bare_s: float
) -> dict[str, Any]:
    started = time.perf_counter()
    sent = await _apply_all(api, ns, names, tag)
    applied = time.perf_counter() - started
    all_ready = await ready.wait(names, within_s=3600) - started
    each = [ready.ready_at[n] - sent[n] for n in names]
    return {
        "collections": len(names),
        "connections": CONNECTIONS,
        "concurrency_per_connection": CONCURRENCY,
        "api_creates_all_sent_s": round(applied, 2),
        "operator_all_ready_s": round(all_ready, 2),
        "bare_client_all_created_s": round(bare_s, 2),
        "ratio_throughput_operator_over_bare": round(bare_s / all_ready, 2),
        "apply_to_ready_p50_ms": ms(percentile(each, 50)),
        "apply_to_ready_p95_ms": ms(percentile(each, 95)),
        "apply_to_ready_p99_ms": ms(percentile(each, 99)),
    }


# ------------------------------------------------------------------ 2. and 4. single applies (fairness)


async def apply_one(api: client.CustomObjectsApi, ns: str, ready: ReadyWatch, name: str, i: int, tag: str) -> float:
    started = time.perf_counter()
    await api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _spec(name, i, tag))
    return await ready.wait([name], within_s=120) - started


# ------------------------------------------------------------------ 3. restart


async def restart(op: OperatorProcess, logs: RequestLogs, ns: str, names: list[str], resync_s: float) -> dict[str, Any]:
    """Stop the operator, start it again; until each collection was read again, and the writes meanwhile."""
    stop_started = time.perf_counter()
    op.stop()
    stopped_s = time.perf_counter() - stop_started
    await asyncio.sleep(2)
    logs.reset()
    since = cp.AUDIT_LOG.stat().st_size
    started = time.perf_counter()
    live_s = op.start(resync_s)
    wanted = set(names)

    async def verified() -> bool:
        await logs.apoll()
        return wanted <= logs.read

    try:
        done = await _wait_until(verified, 600, "every collection re-verified") - started
    except TimeoutError:
        done = -1.0
    reconciles_at_done = op.reconciles()
    await asyncio.sleep(10)  # writes that trail the last read
    rss = op.rss_kib()  # holding every collection, without the creation burst the first process went through
    counts = await logs.apoll()
    k8s = audit_writes(ns, since)
    return {
        "rss_after_reverifying_mib": _mib(rss),
        "collections": len(names),
        "stop_s": round(stopped_s, 2),
        "process_start_to_liveness_s": round(live_s, 2),
        "start_to_all_reverified_s": round(done, 2),
        "target_s": 30,
        "collections_read_again": len(wanted & logs.read),
        "reconciles_when_all_read": reconciles_at_done,
        "reconciles_10s_later": op.reconciles(),
        "kubernetes_writes": dict(k8s),
        "kubernetes_writes_total": sum(k8s.values()),
        "qdrant_writes": _writes(counts),
        "qdrant_writes_total": sum(_writes(counts).values()),
        "qdrant_calls": _calls(counts),
        "writes_target": 0,
    }


# ------------------------------------------------------------------ 4. one sweep, with fairness during it


async def sweep(
    op: OperatorProcess,
    logs: RequestLogs,
    api: client.CustomObjectsApi,
    ns: str,
    ready: ReadyWatch,
    names: list[str],
    tag: str,
) -> dict[str, Any]:
    """Wait for the next routine sweep, time it (wall, CPU, calls) and apply new collections during it."""
    wanted = set(names)
    # The restart's own sweep and resume reconciles are over when reads stop; then the CPU rate at rest.
    previous = -1

    async def quiet() -> bool:
        nonlocal previous
        now = (await logs.apoll())[READ_ONE]
        still, previous = now == previous, now
        return still

    try:
        await _wait_until(quiet, 300, "the restart's reconciles to end", every=3)
    except TimeoutError:  # sweeps back to back: measure the next one all the same
        print("  the collection reads never paused after the restart; measuring the sweep that starts next")
    logs.reset()
    rest_cpu, rest_at = op.cpu_s(), time.perf_counter()

    async def sweep_started() -> bool:
        return (await logs.apoll())[READ_ONE] > 0

    started = await _wait_until(sweep_started, SHORT_RESYNC_S * 2 + 60, "the next sweep", every=0.2)
    idle_cpu_rate = (op.cpu_s() - rest_cpu) / (started - rest_at)
    cpu0 = op.cpu_s()
    during: list[dict[str, Any]] = []
    i = 0
    while not wanted <= logs.read:
        i += 1
        name = f"sweep-probe-{i}"
        took = await apply_one(api, ns, ready, name, COLLECTIONS + 100 + i, tag)
        await logs.apoll()
        during.append({"apply_to_ready_ms": ms(took), "collections_left_to_sweep": len(wanted - logs.read)})
        if i >= 20:
            break
    ended = await _wait_until(lambda: _covered(logs, wanted), 900, "the sweep to read every collection", every=0.2)
    cpu = op.cpu_s() - cpu0
    await asyncio.sleep(3)
    counts = await logs.apoll()
    wall = ended - started
    calls = _calls(counts)
    # The probes applied during the sweep made calls of their own: a create, its reads and index/alias calls.
    return {
        "collections": len(names),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_at_rest_per_s": round(idle_cpu_rate, 4),
        "cpu_s_net_of_rest": round(cpu - idle_cpu_rate * wall, 2),
        "qdrant_calls": calls,
        "qdrant_calls_total": sum(calls.values()),
        "qdrant_writes": _writes(counts),
        "new_collections_during_sweep": during,
        "new_collections_applied_during_sweep": len(during),
    }


async def _covered(logs: RequestLogs, wanted: set[str]) -> bool:
    await logs.apoll()
    return wanted <= logs.read


# ------------------------------------------------------------------ 5. drift


async def drift(servers: list[QdrantServer], names: list[str], tag: str) -> dict[str, Any]:
    """Change collections behind the operator's back; until Qdrant shows each as the spec says again."""
    clients = [AsyncQdrantClient(url=s.url, check_compatibility=False) for s in servers]
    # Spread over the sweep's order and the three connections: the first, middle and last collections.
    picks = {"ef_construct_raised": names[1], "deleted": names[len(names) // 2], "ef_construct_raised_late": names[-2]}

    def owner(name: str) -> AsyncQdrantClient:
        return clients[names.index(name) % CONNECTIONS]

    async def restored(kind: str, name: str) -> float:
        qdrant, collection = owner(name), f"{tag}-{name}"

        async def back() -> bool:
            if kind == "deleted":
                return bool(await qdrant.collection_exists(collection))
            info = await qdrant.get_collection(collection)
            return info.config.hnsw_config.ef_construct == EF_CONSTRUCT

        try:
            return await _wait_until(back, SHORT_RESYNC_S * 5, f"{kind} restored", every=0.25)
        except TimeoutError:
            return -1.0  # reported as a negative latency: not restored within five resync intervals

    try:
        changed_at: dict[str, float] = {}
        for kind, name in picks.items():
            collection = f"{tag}-{name}"
            if kind == "deleted":
                await owner(name).delete_collection(collection)
            else:
                await owner(name).update_collection(collection, hnsw_config=models.HnswConfigDiff(ef_construct=200))
            changed_at[kind] = time.perf_counter()
        back = await asyncio.gather(*(restored(kind, name) for kind, name in picks.items()))
    finally:
        for c in clients:
            await c.close()
    latencies = {kind: round(at - changed_at[kind], 2) for kind, at in zip(picks, back, strict=True)}
    return {"resync_s": SHORT_RESYNC_S, "collections": picks, "detect_and_restore_s": latencies}


def resync_cost(sweep: dict[str, Any]) -> dict[str, Any]:
    """What the measured sweep costs at 300 s, the 120 s default and 60 s. A routine sweep spreads its collections
    over SWEEP_SPREAD of the interval, so each is re-checked once per interval: the worst drift detection is
    the interval plus how far the sweep fell behind its schedule (its wall time beyond its spread)."""
    late = max(0.0, sweep["wall_s"] - SWEEP_SPREAD * SHORT_RESYNC_S)

    def at(interval: float) -> dict[str, float]:
        per_hour = 3600 / interval
        return {
            "sweeps_per_hour": per_hour,
            "qdrant_calls_per_s": round(sweep["qdrant_calls_total"] / interval, 1),
            "cpu_share_of_one_core": round(sweep["cpu_s_net_of_rest"] / interval, 4),
            "worst_drift_detection_s": round(interval + late, 1),
        }

    return {"at_300s": at(300), "at_120s_the_default": at(120), "at_60s": at(60)}


# ------------------------------------------------------------------ 6. soak


def _slope_per_hour(samples: list[dict[str, float]], key: str) -> float:
    xs = [s["t_s"] for s in samples]
    ys = [s[key] for s in samples]
    if len(xs) < 2:
        return 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return round(3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var, 2) if var else 0.0


def _series(samples: list[dict[str, float]], key: str) -> dict[str, float]:
    samples = [s for s in samples if key in s]  # a metric read that failed leaves its keys out of a sample
    values = [s[key] for s in samples]
    half = samples[len(samples) // 2 :]
    return {
        "first": values[0],
        "last": values[-1],
        "max": max(values),
        "slope_per_hour": _slope_per_hour(samples, key),
        "slope_per_hour_second_half": _slope_per_hour(half, key),
    }


def _sample(op: OperatorProcess, t: float, changes: int) -> dict[str, float]:
    return {
        "t_s": round(t, 1),
        "rss_mib": _mib(op.rss_kib()),
        "threads": op.threads(),
        "open_fds": op.fds(),
        "cpu_s": round(op.cpu_s(), 2),
        "reconciles": op.reconciles(),
        "changes_sent": changes,
        **{f"entries_{holds}": n for holds, n in op.internal_entries().items()},
    }


async def soak(op: OperatorProcess, api: client.CustomObjectsApi, ns: str, names: list[str]) -> dict[str, Any]:
    """One spec change a second (efConstruct of the next collection in turn), sampled every minute."""
    samples = [_sample(op, 0.0, 0)]
    started = time.perf_counter()
    changes = failures = 0
    next_sample = SAMPLE_EVERY_S
    while (elapsed := time.perf_counter() - started) < SOAK_SECONDS:
        name = names[changes % len(names)]
        ef = EF_CONSTRUCT + 10 if (changes // len(names)) % 2 == 0 else EF_CONSTRUCT
        try:
            await api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                ns,
                PLURAL,
                name,
                {"spec": {"hnsw": {"efConstruct": ef}}},
                _content_type="application/merge-patch+json",
            )
        except client.ApiException:
            failures += 1
        changes += 1
        if elapsed >= next_sample:
            samples.append(_sample(op, elapsed, changes))
            next_sample += SAMPLE_EVERY_S
        await asyncio.sleep(max(0.0, changes - (time.perf_counter() - started)))
    samples.append(_sample(op, time.perf_counter() - started, changes))
    return {
        "seconds": SOAK_SECONDS,
        "resync_s": SHORT_RESYNC_S,
        "changes_sent": changes,
        "change_failures": failures,
        "rss_mib": _series(samples, "rss_mib"),
        "threads": _series(samples, "threads"),
        "open_fds": _series(samples, "open_fds"),
        **{key.removeprefix("entries_"): _series(samples, key) for key in samples[-1] if key.startswith("entries_")},
        "samples": samples,
    }


# ------------------------------------------------------------------ the run


@asynccontextmanager
async def operator_with_connections(
    op: OperatorProcess, ns: str, servers: list[QdrantServer]
) -> AsyncIterator[client.CustomObjectsApi]:
    """The operator started (no sweep) with a Ready QdrantConnection q<i> per server; the admin's API client."""
    async with admin_api() as api:
        op.start(NO_SWEEP_RESYNC_S)
        for i, server in enumerate(servers):
            await connect(api, ns, f"q{i}", server.url)
        yield api


@asynccontextmanager
async def admin_api() -> AsyncIterator[client.CustomObjectsApi]:
    """The admin's API client, API_PARALLEL connections wide (the bulk's creates)."""
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(cp.ADMIN_KUBECONFIG), client_configuration=cfg)
    cfg.connection_pool_maxsize = API_PARALLEL
    async with client.ApiClient(configuration=cfg) as api_client:
        yield client.CustomObjectsApi(api_client)


async def _run(
    ns: str, tag: str, servers: list[QdrantServer], bare: list[QdrantServer], op: OperatorProcess
) -> dict[str, Any]:
    names = [f"c{i:04d}" for i in range(COLLECTIONS)]
    logs = RequestLogs(servers, f"{tag}-")
    results: dict[str, Any] = {}
    bare_s = await _bare_bulk(bare, names, tag)
    for server in bare:
        server.close()
    async with operator_with_connections(op, ns, servers) as api:
        await asyncio.sleep(10)
        rss_idle = op.rss_kib()
        ready = ReadyWatch(api, ns)
        ready.start()
        try:
            results["bulk"] = await bulk(api, ns, ready, names, tag, bare_s)
            _progress(results, "bulk")
            await asyncio.sleep(10)
            rss_loaded = op.rss_kib()
            logs.reset()
            idle = [await apply_one(api, ns, ready, f"idle-probe-{i}", COLLECTIONS + i, tag) for i in range(PROBES)]
            idle_reads = (await logs.apoll())[READ_ONE]
            all_names = names + [f"idle-probe-{i}" for i in range(PROBES)]
            results["memory"] = {
                "rss_idle_after_start_mib": _mib(rss_idle),
                "rss_with_collections_mib": _mib(rss_loaded),
                "rss_per_1000_collections_mib": _mib((rss_loaded - rss_idle) * 1000 / COLLECTIONS),
                "target_idle_mib": 100,
                "target_per_1000_mib": 20,
            }
            _progress(results, "memory")
            # The connections' collection counts (status.collections, written on the daemons' 1 s tick) take in
            # the probes just applied first: otherwise the restart writes them, a change that is not its own.
            await asyncio.sleep(3)
            results["restart"] = await restart(op, logs, ns, all_names, SHORT_RESYNC_S)
            results["memory"]["rss_per_1000_after_restart_mib"] = _mib(
                (results["restart"]["rss_after_reverifying_mib"] * 1024 - rss_idle) * 1000 / len(all_names)
            )
            _progress(results, "restart")
            try:
                results["sweep"] = await sweep(op, logs, api, ns, ready, all_names, tag)
            except TimeoutError as exc:  # reported, and the drift and soak phases still run
                results["sweep"] = {"error": str(exc)}
            idle_p50 = percentile(idle, 50)
            during = [d["apply_to_ready_ms"] for d in results["sweep"].get("new_collections_during_sweep", [])]
            results["fairness"] = {
                "idle_apply_to_ready_ms": [ms(t) for t in idle],
                "idle_p50_ms": ms(idle_p50),
                "idle_qdrant_collection_reads_meanwhile": idle_reads,
                "during_sweep_apply_to_ready_ms": during,
                "during_sweep_max_over_idle_p50": round(max(during) / ms(idle_p50), 2) if during else None,
                "during_sweep_p50_over_idle_p50": round(percentile(during, 50) / ms(idle_p50), 2)
                if len(during) > 1
                else None,
                "target_ratio": 2.0,
            }
            results["resync_cost"] = resync_cost(results["sweep"]) if "wall_s" in results["sweep"] else {}
            _progress(results, "sweep", "fairness", "resync_cost")
            results["drift"] = await drift(servers, names, tag)
            _progress(results, "drift")
            results["soak"] = await soak(op, api, ns, names)
        finally:
            await ready.stop()
            results["ready_watch_restarts"] = ready.errors
    return results


async def main(tier: str = "dev") -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    ns = f"scale-{tag}"
    load_before = _uptime()
    with control_plane(), tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        root = Path(tmp)
        for i in range(2 * CONNECTIONS):
            (root / str(i)).mkdir()
        servers = [start_server(tier, root / str(i) / "data") for i in range(CONNECTIONS)]
        bare = [start_server(tier, root / str(i) / "data") for i in range(CONNECTIONS, 2 * CONNECTIONS)]
        op = OperatorProcess(ns, Path(os.environ.get("SCALE_OPERATOR_LOG", root / "operator.log")))
        kubectl("create", "namespace", ns)
        try:
            results = await _run(ns, tag, servers, bare, op)
        finally:
            _cleanup(ns, op, [*servers, *bare])
    results = {
        "server": f"dev Qdrant (qdrant-edge engine) x{CONNECTIONS} on loopback; control plane {cp.KUBERNETES_VERSION}; "
        "operator as its own process",
        "collections": COLLECTIONS,
        "load_before": load_before,
        "load_after": _uptime(),
        **results,
    }
    out = write_results("scale", tier, results)
    _print(results, out)
    return results


def _progress(results: dict[str, Any], *keys: str) -> None:
    """Each phase's figures as soon as it is over (the soak takes half an hour)."""
    for key in keys:
        print(f"[scale] {key}: {json.dumps(results[key])}", flush=True)


def _cleanup(ns: str, op: OperatorProcess, servers: Iterable[QdrantServer]) -> None:
    """The namespace goes while the operator runs (it releases its connections' finalizers), then the rest."""
    try:
        if op.proc is not None and op.proc.poll() is None:
            kubectl("delete", "namespace", ns, "--timeout=300s", timeout=330)
        else:
            kubectl("delete", "namespace", ns, "--wait=false")
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"namespace {ns} not deleted cleanly: {exc}")
    finally:
        op.stop()
        for server in servers:
            server.close()


def _print(r: dict[str, Any], out: Path) -> None:
    try:
        _summary(r)
    except (KeyError, TypeError) as exc:  # a phase that failed: its error is in the JSON
        print(f"  (summary incomplete: {exc!r})")
    print(f"  written to {out}")


def _summary(r: dict[str, Any]) -> None:
    b, m, rs, sw, f, d, s = (r[k] for k in ("bulk", "memory", "restart", "sweep", "fairness", "drift", "soak"))
    print(f"scale benchmark, {r['collections']} collections ({r['server']})")
    print(f"  load: before {r['load_before']}; after {r['load_after']}")
    print(
        f"  1. all Ready in {b['operator_all_ready_s']} s vs bare client {b['bare_client_all_created_s']} s "
        f"= {b['ratio_throughput_operator_over_bare']}x its throughput; apply-to-Ready p50 "
        f"{b['apply_to_ready_p50_ms']} / p95 {b['apply_to_ready_p95_ms']} / p99 {b['apply_to_ready_p99_ms']} ms"
    )
    print(
        f"  2. restart: every collection re-verified {rs['start_to_all_reverified_s']} s after start "
        f"(target {rs['target_s']} s); writes: Kubernetes {rs['kubernetes_writes_total']} "
        f"{rs['kubernetes_writes']}, Qdrant {rs['qdrant_writes_total']} {rs['qdrant_writes']} (target 0)"
    )
    print(
        f"  3. new collection apply-to-Ready: idle p50 {f['idle_p50_ms']} ms; during a sweep "
        f"{f['during_sweep_apply_to_ready_ms']} ms = {f['during_sweep_max_over_idle_p50']}x (target <= 2x)"
    )
    print(
        f"  4. RSS idle {m['rss_idle_after_start_mib']} MiB (target <= 100), +{m['rss_per_1000_collections_mib']} "
        f"MiB per 1,000 after creating them, +{m.get('rss_per_1000_after_restart_mib')} after a restart holding them "
        f"(target <= 20); one sweep {sw['wall_s']} s, {sw['cpu_s_net_of_rest']} CPU s "
        f"({sw['cpu_s']} raw), {sw['qdrant_calls_total']} Qdrant calls {sw['qdrant_calls']}"
    )
    print(
        f"     soak {s['seconds']:.0f} s, {s['changes_sent']} changes: RSS {s['rss_mib']}, threads "
        f"{s['threads']['first']}->{s['threads']['last']}, fds {s['open_fds']['first']}->{s['open_fds']['last']}, "
        f"tasks {s.get('asyncio_tasks', {}).get('first')}->{s.get('asyncio_tasks', {}).get('last')} "
        f"(max {s.get('asyncio_tasks', {}).get('max')}), locks {s.get('resource_locks', {}).get('max')} max, "
        f"status cache {s.get('status_cache', {}).get('last')}"
    )
    print(f"  5. drift at resync {d['resync_s']:.0f} s: restored after {d['detect_and_restore_s']} s")
    print(f"     resync cost: {r['resync_cost']}")


if __name__ == "__main__":
    asyncio.run(main())
