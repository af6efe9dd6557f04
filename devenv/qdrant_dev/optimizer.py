"""Segment optimisation, which can take seconds, in a worker process on a copy of a collection's shards.

Updates made meanwhile are replayed onto the optimised copy when it is swapped in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys

from devenv.qdrant_dev import REPO_ROOT
from devenv.qdrant_dev.collection import _WAL, Collection

log = logging.getLogger("qdrant_dev")
_DEBOUNCE_S = 0.2


class OptimizerMixin:
    """The engine's optimisation part; Engine holds the collections and the set of running workers."""

    collections: dict[str, Collection]
    _workers: set[asyncio.subprocess.Process]

    def schedule_optimization(self, coll: Collection, debounce: bool = True) -> None:
        coll.pending_optimization = True
        if coll.task is None or coll.task.done():
            coll.optimizing = True
            coll.task = asyncio.get_running_loop().create_task(self._optimize_loop(coll, debounce))

    async def _optimize_loop(self, coll: Collection, debounce: bool) -> None:
        try:
            if debounce:
                await asyncio.sleep(_DEBOUNCE_S)  # coalesce a burst of writes into one run
            while coll.pending_optimization and self.collections.get(coll.name) is coll:
                coll.pending_optimization = False
                await self._optimize_once(coll)
        finally:
            coll.optimizing = False

    async def _optimize_once(self, coll: Collection) -> None:
        generation = coll.generation
        work = coll.path / "optimizing"
        shutil.rmtree(work, ignore_errors=True)
        for shard in coll.shards:
            shard.flush()
        shutil.copytree(coll.shards_dir, work, ignore=_WAL)
        coll.replay = []
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "devenv.qdrant_dev.worker",
                str(work),
                str(coll.shard_count),
                cwd=REPO_ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            self._workers.add(proc)
            try:
                _, err = await proc.communicate()
            finally:
                self._workers.discard(proc)
            if self.collections.get(coll.name) is not coll:
                return
            if generation != coll.generation:
                coll.pending_optimization = True  # the config changed meanwhile: optimise again
                return
            if proc.returncode != 0:
                coll.optimizer_error = err.decode(errors="replace").strip().splitlines()[-1]
                log.error("optimizer failed for %s: %s", coll.name, coll.optimizer_error)
                return
            replay = coll.replay
            coll.replay = None
            coll.close()
            # The copy's fresh WAL would number the next operations from 1 again, and a segment skips any
            # operation numbered at or below its own version: updates of existing points (and vector name
            # changes) were silently dropped after every optimisation. The live WAL keeps the numbering.
            for i in range(coll.shard_count):
                shutil.rmtree(work / str(i) / "wal", ignore_errors=True)
                (coll.shards_dir / str(i) / "wal").rename(work / str(i) / "wal")
            old = coll.path / "shards.old"
            coll.shards_dir.rename(old)
            work.rename(coll.shards_dir)
            shutil.rmtree(old)
            coll.open_shards()
            for index, op in replay:
                with contextlib.suppress(Exception):  # it failed the same way on the live shard
                    coll.shards[index].update(op)
        finally:
            coll.replay = None
            shutil.rmtree(work, ignore_errors=True)

    def after_write(self, coll: Collection) -> None:
        if not coll.optimizing and coll.needs_indexing():
            self.schedule_optimization(coll)
