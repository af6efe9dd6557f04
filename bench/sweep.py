"""Drift-sweep CPU benchmark: what one sweep reconcile of an unchanged VectorCollection costs the operator
process, next to a bare qdrant-client GET of the same collection.

A dev Qdrant server (bench.client.start_server) on a free loopback port; SWEEP_COLLECTIONS (300) collections
created once through the real reconcile path; then, SWEEP_REPEATS (5) times each, with `time.process_time()`
(this process only: the server is its own process):

(a) baseline: a bare keep-alive AsyncQdrantClient `get_collection` of each collection;
(b) gateway: the operator's QdrantCollections.get_collection (pooled gateway, JSON out) of each, for the
    breakdown;
(c) sweep: `handlers.adapter.sweep_collection` of each, the reconcile the connection daemon's drift sweep runs
    (spec validation, connection lookup, restore step, sync: GET and diff, status report), on a Context whose
    Kubernetes side is tests/fakes.py's and whose Qdrant side is the real gateway to the dev server.

One collection at a time, as a sweep goes through a connection's collections. Each sweep is checked to make
exactly one GET per collection and no Kubernetes or Qdrant write. SWEEP_PROFILE=1 prints a cProfile of one
more sweep (SWEEP_PROFILE=<file> also saves it and one of the bare GETs). Writes bench/results/sweep.json.
It reports; it never asserts timings.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from qdrant_client import AsyncQdrantClient

from bench.client import describe, start_server, write_results
from bench.kube import collection_body
from collection_operator.api.connection import QdrantConnectionSpec
from collection_operator.config import OperatorSettings
from collection_operator.handlers.adapter import reconcile_collection, sweep_collection
from collection_operator.handlers.context import Context
from collection_operator.reconcile.ports import Credentials
from collection_operator.redact import SecretValues
from tests.fakes import FakeSecrets

COLLECTIONS = int(os.environ.get("SWEEP_COLLECTIONS", "300"))
REPEATS = int(os.environ.get("SWEEP_REPEATS", "5"))
PROFILE = os.environ.get("SWEEP_PROFILE", "")  # "1": print a profile of one more sweep; a path: also save it
NAMESPACE, CONNECTION = "bench", "bench"
GET_ONE = ("GET", "/collections/{collection_name}")
HEALTH_PROBES = ("GET /", "GET /cluster", "GET /healthz", "GET /readyz")


def _bodies(count: int) -> list[dict[str, Any]]:
    bodies = []
    for i in range(count):
        body = collection_body(f"c{i:04d}", f"sweep-c{i:04d}", CONNECTION)
        body["metadata"].update(namespace=NAMESPACE, uid=f"uid-{i:04d}", generation=1, annotations={})
        body["spec"]["hnsw"] = {"efConstruct": 100}  # stated, so a change of it in Qdrant would be drift
        body["spec"]["payloadIndexes"] = [{"field": "tenant", "type": "Keyword"}]
        bodies.append(body)
    return bodies


async def _cpu_ms_per_item(items: list[Any], one: Callable[[Any], Awaitable[Any]]) -> float:
    started = time.process_time()
    for item in items:
        await one(item)
    return (time.process_time() - started) * 1000 / len(items)


def _summary(samples: list[float]) -> dict[str, Any]:
    return {
        "cpu_ms_per_collection_median": round(statistics.median(samples), 3),
        "cpu_ms_per_collection_min": round(min(samples), 3),
        "samples": [round(s, 3) for s in samples],
    }


async def main(tier: str = "dev") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        server = start_server(tier, Path(tmp) / "data")
        try:
            results = await _run(tier, server.url, server)
        finally:
            server.close()
    out = write_results("sweep", tier, results)
    _print(results, out)
    return results


async def _run(tier: str, url: str, server: Any) -> dict[str, Any]:
    kube = FakeSecrets()
    events: list[tuple[str, str, str]] = []
    ctx = Context(OperatorSettings(), kube, SecretValues(), poster=lambda _b, t, r, m: events.append((t, r, m)))  # type: ignore[arg-type]
    key = f"{NAMESPACE}/{CONNECTION}"
    spec = QdrantConnectionSpec(url=url, environment="Production")
    runtime = await ctx.connections.apply(
        key, NAMESPACE, CONNECTION, spec, ctx.settings.resolve(spec), Credentials(None, None)
    )
    await runtime.gateway.monitor.probe_once()  # type: ignore[union-attr]  # Ready now, not after the monitor's first round
    ctx.connections.first_probe(key).set()
    bodies = _bodies(COLLECTIONS)
    uids = {b["metadata"]["uid"]: True for b in bodies}
    names = [b["spec"]["collectionName"] for b in bodies]
    # Keep-alive as the gateway's pool is (qdrant-client's default keeps no connection: a connect per call).
    bare = AsyncQdrantClient(url=url, check_compatibility=False, limits=httpx.Limits(max_keepalive_connections=4))
    try:
        for body in bodies:  # created once, through the handlers' reconcile
            outcome = await reconcile_collection(ctx, body, uids, {})
            assert outcome.verdict.reason == "InSync", outcome.verdict
        creation_patches = len(kube.patches)

        async def sweep_one(body: dict[str, Any]) -> None:
            outcome = await sweep_collection(ctx, body, uids, {}, lambda: body)
            assert outcome is not None and outcome.verdict.reason == "InSync", outcome

        async def bare_get(name: str) -> None:
            await bare.get_collection(name)

        async def gateway_get(name: str) -> None:
            await runtime.collections.get_collection(name)

        for warm in (bare_get, gateway_get):
            await _cpu_ms_per_item(names[:20], warm)
        await _cpu_ms_per_item(bodies, sweep_one)  # warm: the first sweep after creation settles the status
        baseline, gateway, sweep = [], [], []
        for _ in range(REPEATS):
            baseline.append(await _cpu_ms_per_item(names, bare_get))
            gateway.append(await _cpu_ms_per_item(names, gateway_get))
            patches, before = len(kube.patches), len(events)
            server.reset_requests()
            sweep.append(await _cpu_ms_per_item(bodies, sweep_one))
            counts = server.requests()["counts"]
            gets = counts.pop(" ".join(GET_ONE), 0)
            others = {c for c in counts if c not in HEALTH_PROBES}  # the health monitor runs meanwhile
            assert gets == COLLECTIONS and not others, f"a sweep made other Qdrant calls: {gets}, {counts}"
            assert len(kube.patches) == patches and len(events) == before, "a sweep of unchanged ones wrote"
        if PROFILE:
            await _profile("bare", names, bare_get)
            await _profile("sweep", bodies, sweep_one)
    finally:
        await bare.close()
        await ctx.aclose()
    base = statistics.median(baseline)
    return {
        "server": describe(tier, runtime.gateway.server_version, url),
        "collections": COLLECTIONS,
        "repeats": REPEATS,
        "concurrency": 1,
        "creation_status_patches": creation_patches,
        "qdrant_calls_per_sweep": {" ".join(GET_ONE): COLLECTIONS},
        "writes_per_sweep": 0,
        "bare_get": _summary(baseline),
        "gateway_get": _summary(gateway),
        "sweep_reconcile": _summary(sweep),
        "ratio_sweep_over_bare_get": round(statistics.median(sweep) / base, 2),
        "ratio_gateway_get_over_bare_get": round(statistics.median(gateway) / base, 2),
    }


async def _profile(label: str, items: list[Any], one: Callable[[Any], Awaitable[Any]]) -> None:
    """One more pass under cProfile (everything the loop runs meanwhile: it is one thread); printed for the
    sweep, saved as <file>.<label> when SWEEP_PROFILE is a file."""
    profile = cProfile.Profile()
    profile.enable()
    for item in items:
        await one(item)
    profile.disable()
    if PROFILE != "1":
        profile.dump_stats(f"{PROFILE}.{label}")
    if label == "sweep":
        for key in ("cumulative", "tottime"):
            pstats.Stats(profile).strip_dirs().sort_stats(key).print_stats(45)


def _print(r: dict[str, Any], out: Path) -> None:
    print(f"sweep benchmark ({r['server']}), {r['collections']} collections, {r['repeats']} repeats")
    print(
        f"  bare qdrant-client GET: {r['bare_get']['cpu_ms_per_collection_median']} CPU ms per collection; "
        f"gateway GET {r['gateway_get']['cpu_ms_per_collection_median']} ms "
        f"({r['ratio_gateway_get_over_bare_get']}x); sweep reconcile "
        f"{r['sweep_reconcile']['cpu_ms_per_collection_median']} ms ({r['ratio_sweep_over_bare_get']}x the bare GET)"
    )
    print(f"  written to {out}")


if __name__ == "__main__":
    asyncio.run(main())
