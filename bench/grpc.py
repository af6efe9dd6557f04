"""REST versus gRPC through qdrant-client (prefer_grpc) against the real Qdrant 1.19 build: the same
upserts and searches over each protocol in one run, on one server started for it. The dev server
serves no gRPC, so this benchmark exists only for the real tier.

Prints ratios and writes bench/results/grpc-real.json. It reports; it never asserts timings.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from qdrant_client import AsyncQdrantClient, models

from bench.client import _concurrent, _ms, _p, _points, _timed, _vector, start_server, write_results

DIM = 64
POINTS = 5000
BATCH = 100
SEARCHES = 500
CONCURRENCY = 10


async def _protocol(client: AsyncQdrantClient, name: str, rng: random.Random) -> dict[str, Any]:
    await client.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    points = _points(0, POINTS, rng)
    started = time.perf_counter()
    for i in range(0, POINTS, BATCH):
        await client.upsert(name, points[i : i + BATCH], wait=True)
    upsert_s = time.perf_counter() - started
    queries = [_vector(rng) for _ in range(SEARCHES)]
    for query in queries[:20]:
        await client.query_points(name, query=query, limit=10)  # warm up
    pending = iter(queries)
    sequential = await _timed(SEARCHES, lambda: client.query_points(name, query=next(pending), limit=10))
    pending = iter(queries)
    concurrent = await _concurrent(
        SEARCHES, CONCURRENCY, lambda: client.query_points(name, query=next(pending), limit=10)
    )
    return {
        "upsert_batched_100_points_per_s": round(POINTS / upsert_s),
        "search_sequential_p50_ms": _ms(_p(sequential, 50)),
        "search_sequential_p95_ms": _ms(_p(sequential, 95)),
        "search_sequential_mean_ms": _ms(statistics.mean(sequential)),
        f"search_{CONCURRENCY}_concurrent_p50_ms": _ms(_p(concurrent, 50)),
        f"search_{CONCURRENCY}_concurrent_p95_ms": _ms(_p(concurrent, 95)),
    }


async def main(tier: str = "real") -> dict[str, Any]:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="bench-grpc-") as tmp:
        server = start_server(tier, Path(tmp) / "data")
        assert server.node is not None, "REST vs gRPC needs the real Qdrant"
        try:
            rest = AsyncQdrantClient(
                url=server.url, check_compatibility=False, limits=httpx.Limits(max_keepalive_connections=20)
            )
            grpc = AsyncQdrantClient(
                url=server.url, grpc_port=server.node.grpc_port, prefer_grpc=True, check_compatibility=False
            )
            try:
                results: dict[str, Any] = {
                    "server": f"real Qdrant 1.19.0 on {server.url} (gRPC port {server.node.grpc_port})",
                    "points": POINTS,
                    "dim": DIM,
                    "searches": SEARCHES,
                    "concurrency": CONCURRENCY,
                    "rest": await _protocol(rest, "rest", rng),
                    "grpc": await _protocol(grpc, "grpc", rng),
                }
            finally:
                await rest.close()
                await grpc.close()
        finally:
            server.close()
    r, g = results["rest"], results["grpc"]
    results["ratios_rest_over_grpc"] = {key: round(r[key] / g[key], 2) for key in r if key.endswith("_ms")} | {
        "upsert_grpc_over_rest_points_per_s": round(
            g["upsert_batched_100_points_per_s"] / r["upsert_batched_100_points_per_s"], 2
        )
    }
    out = write_results("grpc", tier, results)
    print(f"REST vs gRPC through qdrant-client ({results['server']})")
    print(f"  REST: {r}")
    print(f"  gRPC: {g}")
    print(f"  REST time / gRPC time: {results['ratios_rest_over_grpc']}")
    print(f"  written to {out}")
    return results


if __name__ == "__main__":
    asyncio.run(main())
