"""`python -m bench` (`make bench`): run every benchmark in turn, on each Qdrant tier in QDRANT_TIERS
(default "dev,real"; the real tier is skipped with a message where no real Qdrant can be had)."""

from __future__ import annotations

import asyncio
import os

from bench import backup, client, endpoints, grpc, memory, operator, peer, scale, sweep, throughput
from devenv import qdrant_real

BENCHMARKS = [client.main, operator.main]


def main() -> None:
    tiers = [t.strip() for t in os.environ.get("QDRANT_TIERS", "dev,real").split(",") if t.strip()]
    for tier in tiers:
        if tier == "real" and qdrant_real.binary() is None:
            print(f"real tier skipped: {qdrant_real.how_to_get_one()}")
            continue
        for benchmark in BENCHMARKS:
            asyncio.run(benchmark(tier))
        if tier == "dev":
            asyncio.run(scale.main(tier))  # 1,000 collections (SCALE_COLLECTIONS, SCALE_SOAK_SECONDS shorten it)
            asyncio.run(throughput.main(tier))  # its bulk apply again, 3 rounds each with its bare client
            asyncio.run(memory.main(tier))  # what those 1,000 hold in memory, live objects against RSS
            asyncio.run(sweep.main(tier))  # CPU of one drift-sweep reconcile next to a bare GET
            asyncio.run(peer.main(tier))  # beside the PyPI qdrant-operator (docs/benchmarks.md "Side by side")
        if tier == "real":
            asyncio.run(grpc.main(tier))
            asyncio.run(endpoints.main(tier))
            backup.main()  # a 1 GiB snapshot streamed to SeaweedFS vs a bare upload (needs weed: make go-tools)


if __name__ == "__main__":
    main()
