"""Collections on qdrant-edge shards: storage layout, routing, optimisation, aliases and snapshots.

Layout of the data directory:

    collections/<name>/collection.json   Qdrant's CollectionConfig, payload index schemas, creation time
    collections/<name>/shards/<i>/        one qdrant-edge shard per Qdrant shard
    aliases.json                          {alias: collection}
    snapshots/<name>/<file>.snapshot      tar of collection.json + shards/, with <file>.snapshot.checksum

All engine calls run on the event loop thread: qdrant-edge holds the GIL while it works, so threads would
not add concurrency. Segment optimisation, which can take seconds, runs in a worker process on a copy of
the shards; updates made meanwhile are replayed onto the optimised copy when it is swapped in.

Engine (here: lifecycle, collections, payload indexes, aliases) is assembled from its parts: collection.py
(one collection and its shards), config.py (configs), optimizer.py and snapshots.py (Engine's mixins).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
import shutil
from pathlib import Path

import qdrant_edge as qe
from qdrant_client.http import models as m

from devenv.qdrant_dev import convert
from devenv.qdrant_dev.collection import Collection
from devenv.qdrant_dev.config import default_config, updated_config, with_vector, without_vector
from devenv.qdrant_dev.errors import ApiError, not_found, wrong_input
from devenv.qdrant_dev.optimizer import OptimizerMixin
from devenv.qdrant_dev.snapshots import SnapshotsMixin

# Each shard is a local qdrant-edge engine (about 0.1 s and a set of files to create, and every read visits
# all of them): 1024 froze the server. More than this is refused with Qdrant's 400 instead.
MAX_SHARDS = 64


class Engine(OptimizerMixin, SnapshotsMixin):
    def __init__(self, data_dir: Path, *, max_shards: int = MAX_SHARDS) -> None:
        self.data_dir = data_dir
        self.max_shards = max_shards
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
        if (req.shard_number or 1) > self.max_shards:
            raise wrong_input(
                f"shard_number {req.shard_number} exceeds the dev server's limit of {self.max_shards} "
                "(each shard is a local engine; start it with --max-shards to raise the limit)"
            )
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
        previous, coll.config = coll.config, config
        if reindex:
            # Reopening with the new config is what a real shard does on update: new segments follow it at
            # once, existing ones are rebuilt by the optimizer run below.
            coll.close()
            try:
                coll.open_shards()
            except Exception as exc:  # e.g. a sparse vector's modifier, which the engine's segments keep
                coll.config = previous
                coll.open_shards()
                raise wrong_input(f"the dev server cannot apply this change to existing segments: {exc}") from exc
        coll.save()
        if reindex:
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

    # ------------------------------------------------------------ named vectors (Qdrant 1.18+)

    def create_vector_name(
        self, name: str, vector: str, req: m.DenseVectorNameConfig | m.SparseVectorNameConfig
    ) -> None:
        """The engine adds the vector to every segment in place (empty in each existing point) and to each shard's
        own config, as Qdrant's shards do: no rebuild, every point kept."""
        coll = self.resolve(name)
        config = with_vector(coll.config, vector, req)
        if config is None:
            return
        try:
            convert.edge_config(config)
            make_op = convert.create_vector_op(vector, req)
        except ValueError as exc:
            raise wrong_input(str(exc)) from exc
        coll.apply_all(make_op)
        self._schema_changed(coll, config)

    def delete_vector_name(self, name: str, vector: str) -> None:
        """Drops the vector and its data from every point; a name that is not there changes nothing."""
        coll = self.resolve(name)
        coll.apply_all(lambda: qe.UpdateOperation.delete_vector_name(vector))
        self._schema_changed(coll, without_vector(coll.config, vector))

    @staticmethod
    def _schema_changed(coll: Collection, config: m.CollectionConfig) -> None:
        coll.config = config
        coll.save()
        # An optimisation running on a copy made before the change would swap in shards without it (and shards
        # whose stored config no longer matches collection.json do not open): its result is dropped and it runs
        # again on the current shards.
        coll.generation += 1

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


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
