"""Collections on qdrant-edge shards: storage layout, routing, optimisation, aliases and snapshots.

Layout of the data directory:

    collections/<name>/collection.json   Qdrant's CollectionConfig, payload index schemas, creation time
    collections/<name>/shards/<i>/        one qdrant-edge shard per Qdrant shard
    aliases.json                          {alias: collection}
    snapshots/<name>/<file>.snapshot      tar of collection.json + shards/, with <file>.snapshot.checksum

All engine calls run on the event loop thread: qdrant-edge holds the GIL while it works, so threads would
not add concurrency. Segment optimisation, which can take seconds, runs in a worker process on a copy of
the shards; updates made meanwhile are replayed onto the optimised copy when it is swapped in.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import random
import shutil
import sys
import tarfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import qdrant_edge as qe
from qdrant_client.http import models as m

from devenv.qdrant_dev import convert

log = logging.getLogger("qdrant_dev")
REPO_ROOT = Path(__file__).resolve().parents[2]
_DEBOUNCE_S = 0.2


class ApiError(Exception):
    """An error with Qdrant's HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(name: str) -> ApiError:
    return ApiError(404, f"Not found: Collection `{name}` doesn't exist!")


def wrong_input(message: str) -> ApiError:
    return ApiError(400, f"Wrong input: {message}")


def default_config(req: m.CreateCollection) -> m.CollectionConfig:
    """A new collection's full config: the request over the defaults of Qdrant's config.yaml (1.19)."""
    hnsw = m.HnswConfig(m=16, ef_construct=100, full_scan_threshold=10000, max_indexing_threads=0, on_disk=False)
    optimizers = m.OptimizersConfig(
        deleted_threshold=0.2,
        vacuum_min_vector_number=1000,
        default_segment_number=0,
        max_segment_size=None,
        memmap_threshold=None,
        indexing_threshold=10000,
        flush_interval_sec=5,
        max_optimization_threads=None,
    )
    wal = m.WalConfig(wal_capacity_mb=32, wal_segments_ahead=0)

    def merged(base: Any, diff: Any) -> Any:
        return base if diff is None else base.model_copy(update=diff.model_dump(exclude_none=True))

    return m.CollectionConfig(
        params=m.CollectionParams(
            vectors=req.vectors,
            shard_number=req.shard_number or 1,
            sharding_method=req.sharding_method,
            replication_factor=req.replication_factor or 1,
            write_consistency_factor=req.write_consistency_factor or 1,
            on_disk_payload=True if req.on_disk_payload is None else req.on_disk_payload,
            sparse_vectors=req.sparse_vectors,
        ),
        hnsw_config=merged(hnsw, req.hnsw_config),
        optimizer_config=merged(optimizers, req.optimizers_config),
        wal_config=merged(wal, req.wal_config),
        quantization_config=req.quantization_config,
        strict_mode_config=m.StrictModeConfigOutput(enabled=False),
        metadata=req.metadata,
    )


def updated_config(config: m.CollectionConfig, req: m.UpdateCollection) -> tuple[m.CollectionConfig, bool]:
    """Apply a PATCH; also says whether the change makes Qdrant rebuild segments (re-index)."""
    new = config.model_copy(deep=True)
    reindex = False
    if req.vectors:
        for name, diff in req.vectors.items():
            target = _vector_params(new, name)
            changes: dict[str, Any] = {}
            if diff.hnsw_config is not None:
                current = target.hnsw_config.model_dump(exclude_none=True) if target.hnsw_config else {}
                changes["hnsw_config"] = m.HnswConfigDiff(
                    **{**current, **diff.hnsw_config.model_dump(exclude_none=True)}
                )
            if diff.quantization_config is not None:
                q = diff.quantization_config
                changes["quantization_config"] = None if isinstance(q, m.Disabled) else q
            if diff.on_disk is not None:
                changes["on_disk"] = diff.on_disk
            _set_vector_params(new, name, target.model_copy(update=changes))
            reindex = reindex or bool(changes)
    if req.optimizers_config is not None:
        new.optimizer_config = new.optimizer_config.model_copy(
            update=req.optimizers_config.model_dump(exclude_none=True)
        )
        reindex = True
    if req.params is not None:
        given = req.params.model_dump(exclude_none=True)
        new.params = new.params.model_copy(update=given)
        reindex = reindex or "on_disk_payload" in given
    if req.hnsw_config is not None:
        new.hnsw_config = new.hnsw_config.model_copy(update=req.hnsw_config.model_dump(exclude_none=True))
        reindex = True
    if req.quantization_config is not None:
        q = req.quantization_config
        new.quantization_config = None if isinstance(q, m.Disabled) else q
        reindex = True
    if req.sparse_vectors:
        sparse = dict(new.params.sparse_vectors or {})
        for name, params in req.sparse_vectors.items():
            if name not in sparse:
                raise wrong_input(f"Not existing vector name error: {name}")
            sparse[name] = params
        new.params.sparse_vectors = sparse
        reindex = True
    if req.strict_mode_config is not None:
        current = new.strict_mode_config.model_dump(exclude_none=True) if new.strict_mode_config else {}
        new.strict_mode_config = m.StrictModeConfigOutput(
            **{**current, **req.strict_mode_config.model_dump(exclude_none=True)}
        )
    if req.metadata is not None:
        # Qdrant merges metadata keys; a key set to null is removed.
        meta = {**(new.metadata or {}), **req.metadata}
        new.metadata = {k: v for k, v in meta.items() if v is not None}
    return new, reindex


def _vector_params(config: m.CollectionConfig, name: str) -> m.VectorParams:
    vectors = config.params.vectors
    if isinstance(vectors, m.VectorParams) and name == "":
        return vectors
    if isinstance(vectors, dict) and name in vectors:
        return vectors[name]
    raise wrong_input(f"Not existing vector name error: {name}")


def _set_vector_params(config: m.CollectionConfig, name: str, params: m.VectorParams) -> None:
    if isinstance(config.params.vectors, dict):
        config.params.vectors = {**config.params.vectors, name: params}
    else:
        config.params.vectors = params


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


class Engine:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.collections: dict[str, Collection] = {}
        self.aliases: dict[str, str] = {}
        self._workers: set[asyncio.subprocess.Process] = set()
        self.peer_id = 0

    # ------------------------------------------------------------ lifecycle

    @property
    def collections_dir(self) -> Path:
        return self.data_dir / "collections"

    @property
    def snapshots_dir(self) -> Path:
        return self.data_dir / "snapshots"

    def open(self) -> None:
        for d in (self.collections_dir, self.snapshots_dir, self.data_dir / "tmp"):
            d.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.data_dir / "tmp", ignore_errors=True)
        (self.data_dir / "tmp").mkdir()
        for path in sorted(self.collections_dir.iterdir()):
            shutil.rmtree(path / "optimizing", ignore_errors=True)
            if not (path / "collection.json").exists():
                shutil.rmtree(path, ignore_errors=True)  # an interrupted create or recover
                continue
            coll = Collection.read(path.name, path)
            coll.open_shards()
            self.collections[coll.name] = coll
        peer = self.data_dir / "peer_id"
        if not peer.exists():
            peer.write_text(str(random.getrandbits(52)))
        self.peer_id = int(peer.read_text())
        aliases = self.data_dir / "aliases.json"
        if aliases.exists():
            self.aliases = json.loads(aliases.read_text())

    async def close(self) -> None:
        for proc in list(self._workers):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for coll in self.collections.values():
            if coll.task:
                coll.task.cancel()
        for coll in self.collections.values():
            coll.close()

    # ------------------------------------------------------------ collections

    def resolve(self, name: str) -> Collection:
        coll = self.collections.get(name) or self.collections.get(self.aliases.get(name, ""))
        if coll is None:
            raise not_found(name)
        return coll

    def create(self, name: str, req: m.CreateCollection) -> None:
        if name in self.collections:
            raise ApiError(409, f"Wrong input: Collection `{name}` already exists!")
        if req.sharding_method == m.ShardingMethod.CUSTOM:
            raise wrong_input("custom sharding (shard keys) is not supported by the dev server")
        config = default_config(req)
        try:
            edge_cfg = convert.edge_config(config)
        except ValueError as exc:
            raise wrong_input(str(exc)) from exc
        path = self.collections_dir / name
        shutil.rmtree(path, ignore_errors=True)
        coll = Collection(name=name, path=path, config=config, created_at=_now())
        try:
            coll.shards = [
                qe.EdgeShard.create(str(coll.shards_dir / str(i)), edge_cfg) for i in range(coll.shard_count)
            ]
        except Exception as exc:
            coll.close()
            shutil.rmtree(path, ignore_errors=True)
            raise wrong_input(str(exc)) from exc
        coll.save()  # written last: a directory without collection.json is an unfinished create
        self.collections[name] = coll

    def update(self, name: str, req: m.UpdateCollection) -> None:
        coll = self.resolve(name)
        config, reindex = updated_config(coll.config, req)
        try:
            convert.edge_config(config)
        except ValueError as exc:
            raise wrong_input(str(exc)) from exc
        coll.config = config
        coll.save()
        if reindex:
            # Reopening with the new config is what a real shard does on update: new segments follow it at
            # once, existing ones are rebuilt by the optimizer run below.
            coll.close()
            coll.open_shards()
            coll.generation += 1
            coll.optimizer_error = None
            self.schedule_optimization(coll, debounce=False)

    def delete(self, name: str) -> bool:
        coll = self.collections.pop(name, None)
        if coll is None:
            return False
        if coll.task:
            coll.task.cancel()
        coll.close()
        shutil.rmtree(coll.path, ignore_errors=True)
        self.aliases = {a: c for a, c in self.aliases.items() if c != name}
        self._save_aliases()
        return True

    # ------------------------------------------------------------ optimisation

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

    # ------------------------------------------------------------ payload indexes

    def create_index(self, name: str, req: m.CreateFieldIndex) -> None:
        coll = self.resolve(name)
        if req.field_schema is None:
            raise wrong_input("field_schema is required by the dev server (no schema inference)")
        try:
            convert.field_schema(req.field_schema)
        except ValueError as exc:
            raise wrong_input(str(exc)) from exc
        coll.apply_all(
            lambda: qe.UpdateOperation.create_field_index(req.field_name, convert.field_schema(req.field_schema))
        )
        given = req.field_schema
        coll.payload_indexes[req.field_name] = (
            given.value if isinstance(given, m.PayloadSchemaType) else given.model_dump(mode="json", exclude_none=True)
        )
        coll.save()

    def delete_index(self, name: str, field_name: str) -> None:
        coll = self.resolve(name)
        coll.apply_all(lambda: qe.UpdateOperation.delete_field_index(field_name))
        coll.payload_indexes.pop(field_name, None)
        coll.save()

    # ------------------------------------------------------------ aliases

    def change_aliases(self, req: m.ChangeAliasesOperation) -> None:
        # In order, as Qdrant 1.19 does: an action that fails stops the batch, the ones before it stay applied.
        aliases = self.aliases
        try:
            self._apply_alias_actions(req, aliases)
        finally:
            self._save_aliases()

    def _apply_alias_actions(self, req: m.ChangeAliasesOperation, aliases: dict[str, str]) -> None:
        for action in req.actions:
            if isinstance(action, m.CreateAliasOperation):
                a = action.create_alias
                if a.collection_name not in self.collections:
                    raise not_found(a.collection_name)
                if a.alias_name in self.collections:
                    raise wrong_input(f"Collection `{a.alias_name}` already exists!")
                aliases[a.alias_name] = a.collection_name
            elif isinstance(action, m.DeleteAliasOperation):
                if aliases.pop(action.delete_alias.alias_name, None) is None:
                    raise ApiError(404, f"Not found: Alias `{action.delete_alias.alias_name}` doesn't exist!")
            elif isinstance(action, m.RenameAliasOperation):
                r = action.rename_alias
                if r.old_alias_name not in aliases:
                    raise ApiError(404, f"Not found: Alias `{r.old_alias_name}` doesn't exist!")
                aliases[r.new_alias_name] = aliases.pop(r.old_alias_name)

    def _save_aliases(self) -> None:
        tmp = self.data_dir / "aliases.json.tmp"
        tmp.write_text(json.dumps(self.aliases, indent=1, sort_keys=True))
        tmp.replace(self.data_dir / "aliases.json")

    # ------------------------------------------------------------ snapshots (emulated file format)

    def snapshot_dir(self, name: str) -> Path:
        return self.snapshots_dir / name

    def create_snapshot(self, name: str) -> dict[str, Any]:
        coll = self.resolve(name)
        for shard in coll.shards:
            shard.flush()
        now = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
        snap_name = f"{coll.name}-{random.getrandbits(52)}-{now.strftime('%Y-%m-%d-%H-%M-%S')}.snapshot"
        target = self.snapshot_dir(coll.name)
        target.mkdir(parents=True, exist_ok=True)
        partial = target / (snap_name + ".tmp")
        # Preallocated engine files are mostly zeros: fast gzip keeps the archive small.
        with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
            tar.add(coll.path / "collection.json", arcname="collection.json")
            tar.add(coll.shards_dir, arcname="shards", filter=_without_wal)
        checksum = _sha256(partial)
        (target / f"{snap_name}.checksum").write_text(checksum)
        partial.rename(target / snap_name)
        return self._describe(target / snap_name)

    def list_snapshots(self, name: str) -> list[dict[str, Any]]:
        coll = self.resolve(name)
        d = self.snapshot_dir(coll.name)
        return [self._describe(p) for p in sorted(d.glob("*.snapshot"))] if d.exists() else []

    def snapshot_path(self, name: str, snapshot: str) -> Path:
        coll = self.resolve(name)
        path = self.snapshot_dir(coll.name) / snapshot
        if "/" in snapshot or not snapshot.endswith(".snapshot") or not path.exists():
            raise ApiError(404, f"Not found: Snapshot {snapshot} not found")
        return path

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        path = self.snapshot_path(name, snapshot)
        path.unlink()
        Path(f"{path}.checksum").unlink(missing_ok=True)

    @staticmethod
    def _describe(path: Path) -> dict[str, Any]:
        checksum_file = Path(f"{path}.checksum")
        stat = path.stat()
        return {
            "name": path.name,
            "creation_time": dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "size": stat.st_size,
            "checksum": checksum_file.read_text().strip() if checksum_file.exists() else None,
        }

    def recover(self, name: str, archive: Path, checksum: str | None) -> None:
        """Replace (or create) collection `name` from a snapshot file written by `create_snapshot`."""
        if not archive.is_file():
            raise wrong_input(f"Snapshot file {archive} does not exist")
        if checksum is not None and (actual := _sha256(archive)) != checksum:
            raise wrong_input(f"Snapshot checksum mismatch: expected {checksum}, got {actual}")
        staging = self.data_dir / "tmp" / f"recover-{uuid.uuid4().hex}"
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
            coll = Collection.read(name, staging)
        except (tarfile.TarError, OSError, ValueError, KeyError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise wrong_input(f"Invalid snapshot: {exc}") from exc
        self.delete(name)
        path = self.collections_dir / name
        (staging / "collection.json").rename(staging / "collection.json.recovering")
        staging.rename(path)  # collection.json goes in place last, so a crash leaves no half collection
        (path / "collection.json.recovering").rename(path / "collection.json")
        coll.path = path
        coll.open_shards()
        self.collections[name] = coll


# After a flush every update is in the segments, so copies and snapshots leave out the (preallocated) WAL.
_WAL = shutil.ignore_patterns("wal")


def _without_wal(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = info.name.split("/")  # shards/<i>/wal/...
    return None if len(parts) > 2 and parts[2] == "wal" else info


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
