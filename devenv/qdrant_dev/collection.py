"""One collection: its stored record, its qdrant-edge shards and the routing of point ids to them."""

from __future__ import annotations

import asyncio
import json
import shutil
import tarfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import qdrant_edge as qe
from qdrant_client.http import models as m

from devenv.qdrant_dev import convert


@dataclass
class Collection:
    name: str
    path: Path
    config: m.CollectionConfig
    payload_indexes: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    shards: list[qe.EdgeShard] = field(default_factory=list)
    optimizer_error: str | None = None
    optimizing: bool = False
    # Updates applied while a worker optimises a copy of the shards, replayed on the copy afterwards.
    replay: list[tuple[int, qe.UpdateOperation]] | None = None
    pending_optimization: bool = False
    generation: int = 0
    task: asyncio.Task[None] | None = None

    @property
    def shards_dir(self) -> Path:
        return self.path / "shards"

    def save(self) -> None:
        record = {
            "config": self.config.model_dump(mode="json", exclude_none=True),
            "payload_indexes": self.payload_indexes,
            "created_at": self.created_at,
        }
        tmp = self.path / "collection.json.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(self.path / "collection.json")

    @classmethod
    def read(cls, name: str, path: Path) -> Collection:
        record = json.loads((path / "collection.json").read_text())
        return cls(
            name=name,
            path=path,
            config=m.CollectionConfig.model_validate(record["config"]),
            payload_indexes=record.get("payload_indexes", {}),
            created_at=record.get("created_at", ""),
        )

    def open_shards(self) -> None:
        cfg = convert.edge_config(self.config)
        self.shards = [qe.EdgeShard.load(str(self.shards_dir / str(i)), cfg) for i in range(self.shard_count)]

    def close(self) -> None:
        for shard in self.shards:
            shard.flush()
            shard.close()
        self.shards = []

    @property
    def shard_count(self) -> int:
        return self.config.params.shard_number or 1

    def shard_of(self, pid: int | str) -> int:
        # Emulated placement: a stable hash of the id (Qdrant uses a hash ring over peers and shards).
        return (pid if isinstance(pid, int) else uuid.UUID(pid).int) % self.shard_count

    def apply(self, shard: int, op: qe.UpdateOperation) -> None:
        try:
            self.shards[shard].update(op)
        finally:
            # Recorded even when it fails: like Qdrant, an update by ids applies to the points that exist
            # before it reports a missing one, so the optimised copy needs the same partial change.
            if self.replay is not None:
                self.replay.append((shard, op))

    def apply_all(self, make_op: Any) -> None:
        for i in range(self.shard_count):
            self.apply(i, make_op())

    @property
    def status(self) -> str:
        if self.optimizer_error:
            return "red"
        return "yellow" if self.optimizing else "green"

    def info(self) -> dict[str, Any]:
        infos = [s.info() for s in self.shards]
        schema = {}
        for field_name, given in self.payload_indexes.items():
            parsed = m.CreateFieldIndex(field_name=field_name, field_schema=given).field_schema
            entry: dict[str, Any] = {
                "data_type": convert.schema_type(parsed),
                "points": sum(i.payload_schema[field_name].points for i in infos if field_name in i.payload_schema),
            }
            if isinstance(given, dict):
                entry["params"] = given
            schema[field_name] = entry
        return {
            "status": self.status,
            "optimizer_status": {"error": self.optimizer_error} if self.optimizer_error else "ok",
            "indexed_vectors_count": sum(i.indexed_vectors_count for i in infos),
            "points_count": sum(i.points_count for i in infos),
            "segments_count": sum(i.segments_count for i in infos),
            "config": self.config.model_dump(mode="json", exclude_none=True),
            "payload_schema": schema,
        }

    def needs_indexing(self) -> bool:
        """Whether unindexed vectors exceed the indexing threshold, as Qdrant's indexing optimizer decides."""
        threshold_kb = self.config.optimizer_config.indexing_threshold
        if not threshold_kb:
            return False
        vectors = self.config.params.vectors
        dense = [vectors] if isinstance(vectors, m.VectorParams) else list((vectors or {}).values())
        if not dense:
            return False
        bytes_per_point = sum(v.size * 4 for v in dense)
        for shard in self.shards:
            info = shard.info()
            unindexed = info.points_count * len(dense) - info.indexed_vectors_count
            if unindexed > 0 and unindexed / len(dense) * bytes_per_point / 1024 >= threshold_kb:
                return True
        return False


# After a flush every update is in the segments, so copies and snapshots leave out the (preallocated) WAL.
_WAL = shutil.ignore_patterns("wal")


def _without_wal(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = info.name.split("/")  # shards/<i>/wal/...
    return None if len(parts) > 2 and parts[2] == "wal" else info
