"""Optimise a copy of a collection's shards in a separate process.

qdrant-edge holds the GIL while it optimises, so running it inside the server would freeze every request
for the duration; the server runs this module on a copy and swaps the result in. The shards carry their
(possibly just changed) config in edge_config.json, so only qdrant_edge is imported: start-up stays fast.

Usage: python -m devenv.qdrant_dev.worker DIR SHARDS   (shard directories DIR/0 .. DIR/SHARDS-1)
"""

import sys
from pathlib import Path

import qdrant_edge as qe


def main() -> None:
    work, shards = Path(sys.argv[1]), int(sys.argv[2])
    for i in range(shards):
        # optimize() rebuilds every segment whose index or quantization no longer matches the shard config.
        shard = qe.EdgeShard.load(str(work / str(i)))
        shard.optimize()
        shard.flush()
        shard.close()


if __name__ == "__main__":
    main()
