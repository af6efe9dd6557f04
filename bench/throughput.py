"""Throughput benchmark: 1,000 VectorCollections (THROUGHPUT_COLLECTIONS) applied at once until all Ready, against
a bare qdrant-client creating the same collections at the same concurrency, THROUGHPUT_ROUNDS (3) times; each
round measures both, on fresh dev servers, so every ratio has its baseline from the same minutes of the shared
machine. The operator runs as its own process, as in bench/scale.py (whose bulk phase this repeats).

Where the operator's wall time goes, per round:
- requests per collection: Kubernetes writes by verb and resource (the API server's audit log: the create,
  kopf's own metadata patches, status patches, Events) and Qdrant calls by kind (the dev servers' request logs);
- the connection's gate: the seconds its create/update/delete slots (maxConcurrentOperations per connection)
  were busy with Qdrant writes, over the wall time times the slots (the operator's own call-duration metric);
  a gate busy the whole time means Qdrant is the limit, as for the bare client;
- CPU seconds of each process over the bulk (operator, kube-apiserver, etcd, the dev servers, this benchmark's
  process with its watch): on 2 shared cores, what the operator's side costs the dev servers;
- per collection, from the audit log's receive times: create -> status write (Ready) -> kopf's patch.

The floor (bench/floor.py, its own process, servers and namespace): the same bulk under the least any
operator does (a watch, a bare create, one status write), so the round also says how much of the reachable
throughput the operator reaches on this machine: the API server and etcd cost their share of the same cores.
The kopf floor: the same work as a kopf operator with one create handler, so kopf's own share shows apart.

Writes bench/results/throughput.json: each round, and the ratio's median and spread. It reports; it never
asserts timings.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.client import start_server, write_results
from bench.floor import READY_LINE
from bench.kube import CONCURRENCY, PLURAL, REPO, ReadyWatch, audit_events, control_plane, kubectl, ms
from bench.scale import (
    CONNECTIONS,
    OperatorProcess,
    RequestLogs,
    _bare_bulk,
    _cleanup,
    _get,
    _uptime,
    admin_api,
    bulk,
    cpu_seconds,
    operator_with_connections,
)
from devenv import controlplane as cp
from tests.fixtures.qdrant import QdrantServer

COLLECTIONS = int(os.environ.get("THROUGHPUT_COLLECTIONS", "1000"))
ROUNDS = int(os.environ.get("THROUGHPUT_ROUNDS", "3"))
GATED = ("create_collection", "update_collection", "delete_collection")  # the calls inside the gate's slots


def _processes(controller: str, pid: int | None, servers: list[QdrantServer]) -> dict[str, list[int]]:
    found: dict[str, list[int | None]] = {
        controller: [pid],
        "kube-apiserver": [cp._pid("kube-apiserver")],
        "etcd": [cp._pid("etcd")],
        "dev servers": [s.pid for s in servers],
        "benchmark (applies, watch)": [os.getpid()],
    }
    return {name: [p for p in pids if p is not None] for name, pids in found.items()}


def _cpu(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(p) for p in group) for name, group in pids.items()}


def _call_seconds(op: OperatorProcess) -> dict[str, tuple[float, float]]:
    """Qdrant call count and total seconds by operation, from the operator's metrics."""
    text = _get(f"http://127.0.0.1:{op.metrics_port}/metrics") or ""
    found: dict[str, list[float]] = {}
    for line in text.splitlines():
        name = "qdrant_operator_client_request_duration_seconds"
        for suffix, slot in (("_sum{", 0), ("_count{", 1)):
            if line.startswith(name + suffix):
                operation = line.split('operation="', 1)[1].split('"', 1)[0]
                found.setdefault(operation, [0.0, 0.0])[slot] += float(line.rsplit(" ", 1)[1])
    return {k: (v[1], v[0]) for k, v in found.items()}


def _timeline(ns: str, since: int, names: set[str]) -> tuple[Counter[str], dict[str, float]]:
    """Writes in the namespace by "verb resource[/subresource]", and per collection the receive times of its
    create, first status write and first kopf metadata patch (p50 of the gaps)."""
    writes: Counter[str] = Counter()
    first: dict[str, dict[str, datetime]] = {}
    for event in audit_events(since):
        ref = event.get("objectRef") or {}
        if ref.get("namespace") != ns or event.get("verb") not in ("create", "patch", "update", "delete"):
            continue
        what = ref.get("resource", "?") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        writes[f"{event['verb']} {what}"] += 1
        if ref.get("resource") == PLURAL and ref.get("name") in names:
            at = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
            kind = event["verb"] if event["verb"] == "create" else ref.get("subresource") or "metadata"
            first.setdefault(ref["name"], {}).setdefault(kind, at)

    def gaps(a: str, b: str) -> list[float]:
        return [(t[b] - t[a]).total_seconds() for t in first.values() if a in t and b in t]

    to_status, status_to_kopf = gaps("create", "status"), gaps("status", "metadata")
    return writes, {
        "create_to_status_write_p50_ms": ms(statistics.median(to_status)) if to_status else -1.0,
        "status_write_to_kopf_patch_p50_ms": ms(statistics.median(status_to_kopf)) if status_to_kopf else -1.0,
    }


async def _bare(servers: list[QdrantServer], names: list[str], tag: str) -> tuple[float, float]:
    """The bare client's bulk on servers of its own, closed after: its seconds, and the servers' CPU seconds."""
    pids = {"dev servers": [s.pid for s in servers if s.pid is not None]}
    before = _cpu(pids)
    seconds = await _bare_bulk(servers, names, tag)
    cpu = _cpu(pids)["dev servers"] - before["dev servers"]
    for server in servers:
        server.close()
    return seconds, round(cpu, 2)


def _start_floor(ns: str, servers: list[QdrantServer], log: Path, mode: list[str]) -> subprocess.Popen[bytes]:
    """bench/floor.py as its own process, as the operator's identity; returned once it watches."""
    env = {**os.environ, "KUBECONFIG": str(cp.OPERATOR_KUBECONFIG), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        command = [sys.executable, "-m", "bench.floor", *mode, ns, *(s.url for s in servers)]
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 60
    while READY_LINE not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the floor controller did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    return proc


async def _floor(
    ns: str, servers: list[QdrantServer], names: list[str], tag: str, log: Path, mode: list[str]
) -> dict[str, Any]:
    """The same bulk under bench/floor.py (the least an operator does; `--kopf`: the same on kopf) on servers
    of its own: when all were Ready, and the CPU seconds of each process."""
    kubectl("create", "namespace", ns)
    proc = _start_floor(ns, servers, log, mode)
    try:
        async with admin_api() as api:
            ready = ReadyWatch(api, ns)
            ready.start()
            pids = _processes("floor controller", proc.pid, servers)
            cpu_before = _cpu(pids)
            try:
                result = await bulk(api, ns, ready, names, tag, bare_s=0.0)
            finally:
                await ready.stop()
            cpu = {k: round(v - cpu_before[k], 2) for k, v in _cpu(pids).items()}
        return {"all_ready_s": result["operator_all_ready_s"], "cpu_s": cpu}
    finally:
        proc.terminate()
        proc.wait(10)
        kubectl("delete", "namespace", ns, "--wait=false")


async def _round(index: int, root: Path) -> dict[str, Any]:
    """The bare client before and after the operator, each on fresh servers: the load of the shared machine
    drifts by the minute, and the mean of the two brackets the operator's minutes."""
    tag = uuid.uuid4().hex[:6]
    ns = f"tput-{tag}"
    names = [f"c{i:04d}" for i in range(COLLECTIONS)]
    dirs = [root / f"{index}-{i}" for i in range(5 * CONNECTIONS)]
    for d in dirs:
        d.mkdir()
    servers, before, after, floor_servers, kopf_servers = (
        [start_server("dev", d / "data") for d in dirs[i : i + CONNECTIONS]] for i in range(0, len(dirs), CONNECTIONS)
    )
    op = OperatorProcess(ns, Path(os.environ.get("THROUGHPUT_OPERATOR_LOG", root / f"operator-{index}.log")))
    kubectl("create", "namespace", ns)
    try:
        load = _uptime()
        bare_before_s, bare_cpu = await _bare(before, names, tag)
        async with operator_with_connections(op, ns, servers) as api:
            await asyncio.sleep(5)
            logs = RequestLogs(servers, f"{tag}-")
            logs.reset()
            ready = ReadyWatch(api, ns)
            ready.start()
            pids = _processes("operator", op.pid, servers)
            since, cpu_before, calls_before = cp.AUDIT_LOG.stat().st_size, _cpu(pids), _call_seconds(op)
            started = time.perf_counter()
            try:
                result = await bulk(api, ns, ready, names, tag, bare_before_s)
            finally:
                await ready.stop()
            wall = time.perf_counter() - started
            cpu = {k: round(v - cpu_before[k], 2) for k, v in _cpu(pids).items()}
            calls = {
                k: (n - calls_before.get(k, (0, 0))[0], s - calls_before.get(k, (0, 0))[1])
                for k, (n, s) in _call_seconds(op).items()
            }
            qdrant = await logs.apoll()
        writes, timeline = _timeline(ns, since, set(names))
        _cleanup(ns, op, servers)  # the namespace deleted while the operator runs, then the operator stopped
        ns = ""
        floor = await _floor(f"floor-{tag}", floor_servers, names, tag, root / f"floor-{index}.log", [])
        kopf_floor = await _floor(f"kfloor-{tag}", kopf_servers, names, tag, root / f"kfloor-{index}.log", ["--kopf"])
        bare_after_s, _ = await _bare(after, names, tag)
        bare_s = (bare_before_s + bare_after_s) / 2
        gate_busy = sum(s for k, (_, s) in calls.items() if k in GATED)
        per = len(names)
        return {
            "load_before": load,
            **result,
            "bare_client_before_and_after_s": [round(bare_before_s, 2), round(bare_after_s, 2)],
            "bare_client_all_created_s": round(bare_s, 2),
            "ratio_throughput_operator_over_bare": round(bare_s / result["operator_all_ready_s"], 2),
            "floor_all_ready_s": floor["all_ready_s"],
            "kopf_floor_all_ready_s": kopf_floor["all_ready_s"],
            "ratio_throughput_floor_over_bare": round(bare_s / floor["all_ready_s"], 2),
            "ratio_throughput_kopf_floor_over_bare": round(bare_s / kopf_floor["all_ready_s"], 2),
            "ratio_throughput_operator_over_floor": round(floor["all_ready_s"] / result["operator_all_ready_s"], 2),
            "cpu_s_floor_side": floor["cpu_s"],
            "cpu_s_kopf_floor_side": kopf_floor["cpu_s"],
            "kubernetes_writes_per_collection": {k: round(n / per, 2) for k, n in sorted(writes.items())},
            "qdrant_calls_per_collection": {k: round(n / per, 2) for k, n in sorted(qdrant.items())},
            "qdrant_call_mean_ms": {k: ms(s / n) for k, (n, s) in sorted(calls.items()) if n},
            # Slot-seconds the gate spent on Qdrant writes over what it had: 1.0 = never idle nor waiting on Kubernetes.
            "gate_busy_fraction": round(gate_busy / (wall * CONNECTIONS * CONCURRENCY), 2),
            "cpu_s_operator_side": cpu,
            "cpu_s_bare_side": {"dev servers": bare_cpu},
            **timeline,
        }
    finally:
        if ns:
            _cleanup(ns, op, servers)
        for server in [*servers, *before, *after, *floor_servers, *kopf_servers]:
            server.close()
        for d in dirs:  # 9,000 collections' files a round
            shutil.rmtree(d, ignore_errors=True)


async def main(tier: str = "dev") -> dict[str, Any]:
    if tier != "dev":
        raise SystemExit("bench.throughput runs on the dev tier (three dev servers a side)")
    rounds = []
    with control_plane(), tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        for index in range(ROUNDS):
            rounds.append(await _round(index, Path(tmp)))
            print(f"[throughput] round {index + 1}: {rounds[-1]}", flush=True)
    ratios = [r["ratio_throughput_operator_over_bare"] for r in rounds]
    floors = [r["ratio_throughput_floor_over_bare"] for r in rounds]
    kopf_floors = [r["ratio_throughput_kopf_floor_over_bare"] for r in rounds]
    of_floor = [r["ratio_throughput_operator_over_floor"] for r in rounds]
    results = {
        "server": f"dev Qdrant (qdrant-edge engine) x{CONNECTIONS} a side on loopback; control plane "
        f"{cp.KUBERNETES_VERSION}; operator as its own process",
        "collections": COLLECTIONS,
        "concurrency_per_connection": CONCURRENCY,
        "ratio_throughput_operator_over_bare": {
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
            "each": ratios,
        },
        "target_ratio": 0.8,
        # The most any operator reaches here (bench/floor.py), and how much of it this one does.
        "ratio_throughput_floor_over_bare": {"median": statistics.median(floors), "each": floors},
        "ratio_throughput_kopf_floor_over_bare": {"median": statistics.median(kopf_floors), "each": kopf_floors},
        "ratio_throughput_operator_over_floor": {"median": statistics.median(of_floor), "each": of_floor},
        "rounds": rounds,
    }
    out = write_results("throughput", tier, results)
    _print(results, out)
    return results


def _print(results: dict[str, Any], out: Path) -> None:
    r = results["ratio_throughput_operator_over_bare"]
    print(f"throughput benchmark, {results['collections']} collections ({results['server']})")
    for i, one in enumerate(results["rounds"], 1):
        print(
            f"  round {i}: all Ready in {one['operator_all_ready_s']} s vs bare client"
            f" {one['bare_client_all_created_s']} s"
            f" = {one['ratio_throughput_operator_over_bare']}x; floor {one['floor_all_ready_s']} s ="
            f" {one['ratio_throughput_floor_over_bare']}x; kopf floor {one['kopf_floor_all_ready_s']} s ="
            f" {one['ratio_throughput_kopf_floor_over_bare']}x; apply-to-Ready p50 {one['apply_to_ready_p50_ms']} ms;"
            f" gate busy {one['gate_busy_fraction']}; CPU s {one['cpu_s_operator_side']} (bare side"
            f" {one['cpu_s_bare_side']})"
        )
        print(f"    Kubernetes writes per collection {one['kubernetes_writes_per_collection']}")
        print(f"    Qdrant calls per collection {one['qdrant_calls_per_collection']}")
        print(f"    floor CPU s {one['cpu_s_floor_side']}; kopf floor CPU s {one['cpu_s_kopf_floor_side']}")
    print(
        f"  ratio median {r['median']}x (min {r['min']}, max {r['max']}; target {results['target_ratio']}x);"
        f" floor median {results['ratio_throughput_floor_over_bare']['median']}x, kopf floor"
        f" {results['ratio_throughput_kopf_floor_over_bare']['median']}x, the operator"
        f" {results['ratio_throughput_operator_over_floor']['median']}x of the floor; written to {out}"
    )


if __name__ == "__main__":
    asyncio.run(main())
