"""Client-layer benchmark against a Qdrant started on a free loopback port for this run: the dev server
(tier "dev") or the real Qdrant 1.19 build (tier "real", devenv/qdrant_real.py).

Compares, in one run:
1. connection overhead: the pooled gateway versus a new qdrant-client per call (target ~10x);
2. insert throughput: batches of 100 points versus one point per call (target ~5x);
3. search latency p50/p95, one at a time and with 10 concurrent searches: the gateway versus a bare
   shared qdrant-client;
4. the cost of one health probe (GET / and GET /cluster; target under 5 ms).

Prints ratios and writes them to bench/results/client.json (dev) or client-real.json. It reports; it never
asserts timings.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from qdrant_client import AsyncQdrantClient, models

from collection_operator.api.connection import QdrantConnectionSpec
from collection_operator.config import resolve
from collection_operator.qdrant import QdrantGateway, Search, VectorOperations
from tests.fixtures.qdrant import QdrantServer, start_dev_server, start_real_server

RESULTS_DIR = Path(__file__).parent / "results"
DIM = 64
CALLS = 300
BATCH_POINTS = 2000
SINGLE_POINTS = 300
SEARCHES = 500
CONCURRENCY = 10
PROBES = 200


def _vector(rng: random.Random) -> list[float]:
    return [rng.uniform(-1, 1) for _ in range(DIM)]


def _points(start: int, count: int, rng: random.Random) -> list[models.PointStruct]:
    return [models.PointStruct(id=start + i, vector=_vector(rng), payload={"n": start + i}) for i in range(count)]


async def _timed(calls: int, one: Callable[[], Awaitable[Any]]) -> list[float]:
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        await one()
        latencies.append(time.perf_counter() - started)
    return latencies


async def _concurrent(total: int, concurrency: int, one: Callable[[], Awaitable[Any]]) -> list[float]:
    latencies: list[float] = []
    limit = asyncio.Semaphore(concurrency)

    async def run() -> None:
        async with limit:
            started = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(run() for _ in range(total)))
    return latencies


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _p(latencies: list[float], q: int) -> float:
    return statistics.quantiles(latencies, n=100)[q - 1]


def results_file(name: str, tier: str) -> Path:
    return RESULTS_DIR / (f"{name}.json" if tier == "dev" else f"{name}-{tier}.json")


def write_results(name: str, tier: str, results: dict[str, Any]) -> Path:
    """bench/results/<name>[-<tier>].json; its path."""
    out = results_file(name, tier)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return out


def start_server(tier: str, data_dir: Path) -> QdrantServer:
    """A Qdrant of the tier for one benchmark run; the real one is talked to directly (no counting proxy)."""
    return start_dev_server(data_dir) if tier == "dev" else start_real_server(data_dir, counted=False)


def describe(tier: str, version: str | None, url: str) -> str:
    return (
        f"dev Qdrant {version} (qdrant-edge engine) on {url}"
        if tier == "dev"
        else f"real Qdrant {version} (release build, no LTO) on {url}"
    )


async def _connection_overhead(url: str, gateway: QdrantGateway) -> dict[str, Any]:
    async def fresh_client() -> None:
        client = AsyncQdrantClient(url=url, check_compatibility=False)
        try:
            await client.get_collections()
        finally:
            await client.close()

    # What the gateway's breaker, lease, retry controller and metrics cost over a bare keep-alive client.
    bare = AsyncQdrantClient(url=url, check_compatibility=False, limits=httpx.Limits(max_keepalive_connections=20))
    try:
        for one in (gateway.list_collections, fresh_client, bare.get_collections):
            await _timed(20, one)  # warm up
        pooled = statistics.mean(await _timed(CALLS, gateway.list_collections))
        fresh = statistics.mean(await _timed(CALLS, fresh_client))
        shared = statistics.mean(await _timed(CALLS, bare.get_collections))
    finally:
        await bare.close()
    return {
        "calls": CALLS,
        "pooled_mean_ms": _ms(pooled),
        "new_client_per_call_mean_ms": _ms(fresh),
        "ratio_new_client_over_pooled": round(fresh / pooled, 2),
        "bare_keepalive_client_mean_ms": _ms(shared),
        "gateway_overhead_per_call_ms": _ms(pooled - shared),
    }


async def _insert(vectors: VectorOperations, rng: random.Random) -> dict[str, Any]:
    started = time.perf_counter()
    for point in _points(0, SINGLE_POINTS, rng):
        await vectors.upsert(point)
    single = (time.perf_counter() - started) / SINGLE_POINTS

    started = time.perf_counter()
    await vectors.upsert_many(_points(100_000, BATCH_POINTS, rng), batch_size=100, concurrency=1)
    batched = (time.perf_counter() - started) / BATCH_POINTS

    started = time.perf_counter()
    await vectors.upsert_many(_points(200_000, BATCH_POINTS, rng), batch_size=100, concurrency=4)
    concurrent = (time.perf_counter() - started) / BATCH_POINTS
    return {
        "one_per_call_points_per_s": round(1 / single),
        "batched_100_points_per_s": round(1 / batched),
        "batched_100_x4_concurrent_points_per_s": round(1 / concurrent),
        "ratio_batched_over_one_per_call": round(single / batched, 2),
        "ratio_batched_concurrent_over_one_per_call": round(single / concurrent, 2),
    }


async def _search(url: str, vectors: VectorOperations, rng: random.Random) -> dict[str, Any]:
    queries = [_vector(rng) for _ in range(SEARCHES)]

    async def bare(client: AsyncQdrantClient) -> list[float]:
        pending = iter(queries)
        try:
            return await _concurrent(
                SEARCHES, CONCURRENCY, lambda: client.query_points(vectors.collection, query=next(pending), limit=10)
            )
        finally:
            await client.close()

    # Two baselines: qdrant-client's defaults (no keep-alive on a loopback URL) and a keep-alive client.
    default = await bare(AsyncQdrantClient(url=url, check_compatibility=False))
    keepalive = await bare(
        AsyncQdrantClient(url=url, check_compatibility=False, limits=httpx.Limits(max_keepalive_connections=20))
    )
    pending = iter(queries)
    gateway = await _concurrent(SEARCHES, CONCURRENCY, lambda: vectors.search(Search(next(pending), limit=10)))
    one_at_a_time = await _sequential_search(url, vectors, queries)
    return {
        "searches": SEARCHES,
        "sequential": one_at_a_time,
        "concurrency": CONCURRENCY,
        "gateway_p50_ms": _ms(_p(gateway, 50)),
        "gateway_p95_ms": _ms(_p(gateway, 95)),
        "bare_default_client_p50_ms": _ms(_p(default, 50)),
        "bare_default_client_p95_ms": _ms(_p(default, 95)),
        "bare_keepalive_client_p50_ms": _ms(_p(keepalive, 50)),
        "bare_keepalive_client_p95_ms": _ms(_p(keepalive, 95)),
        "ratio_bare_default_p50_over_gateway_p50": round(_p(default, 50) / _p(gateway, 50), 2),
        "ratio_bare_keepalive_p95_over_gateway_p95": round(_p(keepalive, 95) / _p(gateway, 95), 2),
    }


async def _sequential_search(url: str, vectors: VectorOperations, queries: list[list[float]]) -> dict[str, Any]:
    bare = AsyncQdrantClient(url=url, check_compatibility=False, limits=httpx.Limits(max_keepalive_connections=20))
    try:
        pending = iter(queries)
        bare_s = await _timed(SEARCHES, lambda: bare.query_points(vectors.collection, query=next(pending), limit=10))
    finally:
        await bare.close()
    pending = iter(queries)
    gateway_s = await _timed(SEARCHES, lambda: vectors.search(Search(next(pending), limit=10)))
    return {
        "gateway_p50_ms": _ms(_p(gateway_s, 50)),
        "gateway_p95_ms": _ms(_p(gateway_s, 95)),
        "bare_keepalive_client_p50_ms": _ms(_p(bare_s, 50)),
        "bare_keepalive_client_p95_ms": _ms(_p(bare_s, 95)),
        "ratio_gateway_p95_over_bare_p95": round(_p(gateway_s, 95) / _p(bare_s, 95), 2),
    }


async def _probe(gateway: QdrantGateway) -> dict[str, Any]:
    probes = await _timed(PROBES, gateway.monitor.probe_once)
    calls = await _timed(PROBES, gateway.list_collections)
    return {
        "probes": PROBES,
        "probe_mean_ms": _ms(statistics.mean(probes)),
        "probe_p95_ms": _ms(_p(probes, 95)),
        "target_ms": 5,
        "ratio_probe_over_one_call": round(statistics.mean(probes) / statistics.mean(calls), 2),
    }


async def main(tier: str = "dev") -> dict[str, Any]:
    rng = random.Random(42)
    with tempfile.TemporaryDirectory(prefix="bench-qdrant-") as tmp:
        server = start_server(tier, Path(tmp) / "data")
        try:
            settings = resolve(QdrantConnectionSpec(url=server.url, environment="Production"))
            async with QdrantGateway(server.url, settings, name="bench") as gateway:
                await gateway.create_collection("bench", {"vectors": {"size": DIM, "distance": "Cosine"}})
                vectors = VectorOperations(gateway, "bench")
                await gateway.monitor.probe_once()  # the version, without waiting for the monitor's first round
                results = {
                    "server": describe(tier, gateway.server_version, server.url),
                    "connection_overhead": await _connection_overhead(server.url, gateway),
                    "insert": await _insert(vectors, rng),
                    "search": await _search(server.url, vectors, rng),
                    "health_probe": await _probe(gateway),
                }
        finally:
            server.close()
    out = write_results("client", tier, results)
    _print(results, out)
    return results


def _print(results: dict[str, Any], out: Path) -> None:
    overhead, insert, search, probe = (
        results[key] for key in ("connection_overhead", "insert", "search", "health_probe")
    )
    print(f"client benchmark ({results['server']})")
    print(
        f"  pooled vs new client per call: {overhead['ratio_new_client_over_pooled']}x less per-call time "
        f"({overhead['pooled_mean_ms']} ms vs {overhead['new_client_per_call_mean_ms']} ms; target ~10x); "
        f"gateway overhead over a bare keep-alive client {overhead['gateway_overhead_per_call_ms']} ms/call"
    )
    print(
        f"  batched (100) vs one point per call: {insert['ratio_batched_over_one_per_call']}x points/s "
        f"({insert['ratio_batched_concurrent_over_one_per_call']}x with 4 batches in flight; target ~5x)"
    )
    seq = search["sequential"]
    print(
        f"  search, one at a time: gateway p50 {seq['gateway_p50_ms']} ms, p95 {seq['gateway_p95_ms']} ms; bare "
        f"keep-alive qdrant-client p50 {seq['bare_keepalive_client_p50_ms']} / p95 "
        f"{seq['bare_keepalive_client_p95_ms']} ms ({seq['ratio_gateway_p95_over_bare_p95']}x at p95)"
    )
    print(
        f"  search, {search['concurrency']} concurrent: gateway p50 {search['gateway_p50_ms']} ms, p95 "
        f"{search['gateway_p95_ms']} ms; bare qdrant-client defaults p50 {search['bare_default_client_p50_ms']} / "
        f"p95 {search['bare_default_client_p95_ms']} ms; bare keep-alive p50 {search['bare_keepalive_client_p50_ms']}"
        f" / p95 {search['bare_keepalive_client_p95_ms']} ms"
    )
    print(
        f"  health probe: mean {probe['probe_mean_ms']} ms, p95 {probe['probe_p95_ms']} ms (target < 5 ms; "
        f"{probe['ratio_probe_over_one_call']}x one call)"
    )
    print(f"  written to {out}")


if __name__ == "__main__":
    asyncio.run(main())
