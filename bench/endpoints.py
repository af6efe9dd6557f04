"""Several endpoints per connection (QdrantEndpoints) on a real 3-node Qdrant cluster started on loopback for
this run: search throughput through all three nodes versus through one, measured in the same run.

The collection has 3 shards replicated to every node, so any node answers a search from its own replicas.
Three clients run the same searches with the same concurrency (below the pool's size, so the pool is never
the limit): a QdrantGateway on node 1 (`spec.url`), a QdrantEndpoints on node 1 alone, and a QdrantEndpoints
on all three nodes (least outstanding). Rounds alternate between them so drift on a shared machine hits all
alike; the ratio is of the medians. On a machine with fewer cores than nodes the nodes share the CPU, which
bounds the gain: the figure says what this machine gives, not what a cluster of real hosts would.

Writes bench/results/endpoints-real.json. It reports; it never asserts timings.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from qdrant_client import models

from collection_operator.api.connection import QdrantConnectionSpec
from collection_operator.config import resolve
from collection_operator.qdrant import Gateway, QdrantEndpoints, QdrantGateway, Search, VectorOperations
from devenv import qdrant_real

from .client import write_results

DIM = 64
POINTS = 5000
SEARCHES = 1200  # per round and client
CONCURRENCY = 16  # Production pool: 20 connections per endpoint
ROUNDS = 3


async def _throughput(gateway: Gateway, queries: list[list[float]]) -> float:
    vectors = VectorOperations(gateway, "bench")
    started = time.perf_counter()
    await vectors.search_many([Search(q, limit=10, with_payload=False) for q in queries], concurrency=CONCURRENCY)
    return len(queries) / (time.perf_counter() - started)


async def _spread(client: QdrantEndpoints, queries: list[list[float]]) -> list[int]:
    """How many of a batch of searches each endpoint took (from the client's own per-endpoint counter)."""
    counts = [0] * len(client.members)
    original = client._attempt

    async def counting(index: int, *args: Any) -> Any:
        counts[index] += 1
        return await original(index, *args)

    client._attempt = counting  # type: ignore[method-assign]
    try:
        await _throughput(client, queries)
    finally:
        client._attempt = original  # type: ignore[method-assign]
    return counts


async def main(tier: str = "real") -> dict[str, Any] | None:
    exe = qdrant_real.binary()
    if tier != "real" or exe is None:
        print("endpoints benchmark: needs the real Qdrant (a cluster); skipped")
        return None
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        nodes = await asyncio.to_thread(qdrant_real.start_cluster, exe, Path(tmp), 3)
        try:
            urls = [node.url for node in nodes]
            settings = resolve(QdrantConnectionSpec(endpoints=urls, environment="Production"))
            one = QdrantGateway(urls[0], settings, name="bench-url")
            single = QdrantEndpoints(urls[:1], settings, name="bench-1")
            three = QdrantEndpoints(urls, settings, name="bench-3")
            clients: dict[str, Gateway] = {"gateway_1": one, "endpoints_1": single, "endpoints_3": three}
            for client in clients.values():
                client.start()
            try:
                body = {"vectors": {"size": DIM, "distance": "Cosine"}, "shard_number": 3, "replication_factor": 3}
                await three.create_collection("bench", body, timeout_seconds=120)
                points = [
                    models.PointStruct(id=i, vector=[rng.uniform(-1, 1) for _ in range(DIM)]) for i in range(POINTS)
                ]
                await VectorOperations(three, "bench").upsert_many(points, batch_size=250, concurrency=2)
                queries = [[rng.uniform(-1, 1) for _ in range(DIM)] for _ in range(SEARCHES)]
                for client in clients.values():
                    await _throughput(client, queries[:200])  # warm up: connections, caches
                rates: dict[str, list[float]] = {key: [] for key in clients}
                for _ in range(ROUNDS):
                    for key, client in clients.items():
                        rates[key].append(await _throughput(client, queries))
                spread = await _spread(three, queries)
                version = three.server_version
            finally:
                for client in clients.values():
                    await client.aclose()
        finally:
            for node in nodes:
                await asyncio.to_thread(node.stop)
    median = {key: statistics.median(values) for key, values in rates.items()}
    results = {
        "server": f"real Qdrant {version} (release build, no LTO), 3-node cluster on loopback",
        "collection": {"points": POINTS, "dim": DIM, "shards": 3, "replication_factor": 3},
        "searches_per_round": SEARCHES,
        "concurrency": CONCURRENCY,
        "rounds": ROUNDS,
        "searches_per_s": {key: [round(v) for v in values] for key, values in rates.items()},
        "median_searches_per_s": {key: round(value) for key, value in median.items()},
        "ratio_3_endpoints_over_1": round(median["endpoints_3"] / median["endpoints_1"], 2),
        "ratio_3_endpoints_over_url_gateway": round(median["endpoints_3"] / median["gateway_1"], 2),
        "ratio_1_endpoint_over_url_gateway": round(median["endpoints_1"] / median["gateway_1"], 2),
        "searches_per_endpoint_with_3": spread,
    }
    out = write_results("endpoints", tier, results)
    print(f"endpoints benchmark ({results['server']})")
    print(
        f"  search throughput, {CONCURRENCY} concurrent: 3 endpoints {median['endpoints_3']:.0f}/s vs 1 endpoint "
        f"{median['endpoints_1']:.0f}/s = {results['ratio_3_endpoints_over_1']}x (spec.url gateway "
        f"{median['gateway_1']:.0f}/s); spread over the nodes {spread}"
    )
    print(f"  written to {out}")
    return results


if __name__ == "__main__":
    asyncio.run(main())
