"""`python -m bench` (`make bench`): run every benchmark in turn."""

from __future__ import annotations

import asyncio

from bench import client, operator

BENCHMARKS = [client.main, operator.main]


def main() -> None:
    for benchmark in BENCHMARKS:
        asyncio.run(benchmark())


if __name__ == "__main__":
    main()
