"""In-memory implementations of reconcile/ports.py, shared by the unit tests (pure logic, no network)."""

from __future__ import annotations

import asyncio
import copy
import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import obstore
from obstore.store import MemoryStore

from collection_operator.api.connection import QdrantConnectionSpec
from collection_operator.config import ClientSettings
from collection_operator.objectstore import Store, StoreConfig
from collection_operator.qdrant import ConnectionReport, Topology
from collection_operator.qdrant.errors import AlreadyExists, NotFound, QdrantError, Transient, Unreachable
from collection_operator.reconcile import mapping
from collection_operator.reconcile.ports import Credentials, StoredSecret


class FakeQdrant:
    """CollectionsPort: keeps collections as Qdrant would report them; records every write."""

    def __init__(self) -> None:
        self.collections: dict[str, dict[str, Any]] = {}
        self.aliases: dict[str, str] = {}
        self.writes: list[str] = []
        self.reads: list[str] = []
        self.fail_create: Exception | None = None
        self.create_attempts = 0
        self.created_status = "green"
        self.views: dict[str, dict[str, Any]] = {}  # GET /collections/{name}/cluster, as a test sets it
        self.points: dict[str, dict[int, dict[str, Any]]] = {}  # collection -> id -> {"vector", "payload"}

    async def get_collection(self, name: str) -> dict[str, Any] | None:
        self.reads.append(f"get {name}")
        return copy.deepcopy(self.collections.get(name))

    async def create_collection(self, name: str, body: dict[str, Any]) -> None:
        self.create_attempts += 1
        if name in self.collections:  # as Qdrant: never overwritten
            raise AlreadyExists(f"Collection `{name}` already exists!")
        self.writes.append(f"create {name}")
        self.collections[name] = {
            "status": self.created_status,
            "points_count": 0,
            "segments_count": 1,
            "config": {
                "params": {
                    "vectors": body["vectors"],
                    "replication_factor": body.get("replication_factor") or 1,
                    "shard_number": body.get("shard_number", 1),
                    **({"sparse_vectors": body["sparse_vectors"]} if "sparse_vectors" in body else {}),
                },
                "hnsw_config": body.get("hnsw_config", {"m": 16}),
                "metadata": body.get("metadata"),
            },
            "payload_schema": {},
        }
        if self.fail_create:
            raise self.fail_create

    async def update_collection(self, name: str, body: dict[str, Any]) -> None:
        self.writes.append(f"update {name} {sorted(body)}")
        config = self.collections[name]["config"]
        config["hnsw_config"] = {**config["hnsw_config"], **body.get("hnsw_config", {})}
        if "hnsw_config" in body:
            self.collections[name]["status"] = "yellow"  # re-indexing
        if "metadata" in body:  # keys merged, a null removes one
            merged = {**(config.get("metadata") or {}), **body["metadata"]}
            config["metadata"] = {k: v for k, v in merged.items() if v is not None}
        for vector, blocks in body.get("vectors", {}).items():
            config["params"]["vectors"][vector].update(blocks)
        for vector, params in body.get("sparse_vectors", {}).items():
            config["params"]["sparse_vectors"][vector] = params

    async def delete_collection(self, name: str) -> None:
        self.writes.append(f"delete {name}")
        self.collections.pop(name, None)
        self.points.pop(name, None)
        self.aliases = {a: c for a, c in self.aliases.items() if c != name}  # as Qdrant: its aliases go too

    async def list_collections(self) -> list[str]:
        self.reads.append("list_collections")
        return list(self.collections)

    async def create_vector(self, name: str, vector: str, config: dict[str, Any]) -> None:
        self.writes.append(f"add vector {name} {vector}")
        params = self.collections[name]["config"]["params"]
        if "dense" in config:
            params["vectors"][vector] = dict(config["dense"])
        else:
            params.setdefault("sparse_vectors", {})[vector] = dict(config["sparse"])

    async def delete_vector(self, name: str, vector: str) -> None:
        self.writes.append(f"remove vector {name} {vector}")
        params = self.collections[name]["config"]["params"]
        params["vectors"].pop(vector, None)
        (params.get("sparse_vectors") or {}).pop(vector, None)

    async def create_payload_index(self, name: str, field: str, schema: dict[str, Any]) -> None:
        self.writes.append(f"index {name} {field}")
        self.collections[name]["payload_schema"][field] = {"data_type": schema["type"], "params": schema}

    async def delete_payload_index(self, name: str, field: str) -> None:
        self.writes.append(f"unindex {name} {field}")
        self.collections[name]["payload_schema"].pop(field, None)

    async def list_aliases(self) -> dict[str, str]:
        self.reads.append("list_aliases")
        return dict(self.aliases)

    async def update_aliases(self, actions: list[dict[str, Any]]) -> None:
        self.writes.append("aliases")
        for action in actions:
            if "create_alias" in action:
                self.aliases[action["create_alias"]["alias_name"]] = action["create_alias"]["collection_name"]
            else:
                del self.aliases[action["delete_alias"]["alias_name"]]

    async def cluster_view(self, name: str) -> dict[str, Any]:
        self.reads.append(f"cluster {name}")
        default = {"peer_id": 1, "local_shards": [{"shard_id": 0, "state": "Active"}], "remote_shards": []}
        return copy.deepcopy(self.views.get(name, default))

    async def change_placement(self, name: str, operation: dict[str, Any]) -> None:
        self.writes.append(f"placement {name} {operation}")

    async def create_shard_key(self, name: str, key: str) -> None:
        self.writes.append(f"shard key {name} {key}")
        view = self.views.setdefault(name, {"peer_id": 1, "local_shards": [], "remote_shards": []})
        view["local_shards"].append({"shard_id": len(view["local_shards"]), "shard_key": key, "state": "Active"})

    def put_points(self, name: str, points: dict[int, dict[str, Any]]) -> None:
        self.points.setdefault(name, {}).update(copy.deepcopy(points))
        self.collections[name]["points_count"] = len(self.points[name])

    async def count_points(self, name: str) -> int:
        return len(self.points.get(name, {}))

    def _page(self, name: str, start: Any, limit: int) -> tuple[list[int], Any]:
        ids = sorted(i for i in self.points.get(name, {}) if start is None or i >= start)
        return ids[:limit], ids[limit] if len(ids) > limit else None

    async def copy_points(
        self, source: str, target: str, start: Any, limit: int, *, vectors: list[str] | None, only_changed: bool
    ) -> tuple[int, int, Any]:
        ids, following = self._page(source, start, limit)
        have = self.points.setdefault(target, {})
        changed = [i for i in ids if not only_changed or have.get(i) != self.points[source][i]]
        self.put_points(target, {i: self.points[source][i] for i in changed})
        self.writes.append(f"copy {source} {target} {len(changed)}")
        return len(ids), len(changed), following

    async def prune_points(self, source: str, target: str, start: Any, limit: int) -> tuple[int, int, Any]:
        ids, following = self._page(target, start, limit)
        gone = [i for i in ids if i not in self.points.get(source, {})]
        for i in gone:
            del self.points[target][i]
        return len(ids), len(gone), following


class FakeSnapshots:
    """SnapshotsPort: point counts and owner markers per collection, snapshot files with their counts."""

    def __init__(self) -> None:
        self.points: dict[str, int] = {}
        self.owners: dict[str, str | None] = {}
        self.snapshots: dict[str, int] = {}  # snapshot name -> points it holds
        self.contents: dict[str, list[dict[str, Any]]] = {}  # collection or snapshot name -> its points, by id
        self.calls: list[str] = []
        self.write_during_snapshot = 0
        self.peer: str | None = None
        self.views: list[dict[str, Any]] = []  # GET /collections/{name}/cluster answers, in order (last repeats)
        self.taken = 0  # snapshots created: Qdrant never reuses a name once the second has passed
        self.files: dict[str, bytes] = {}  # snapshot name -> its bytes (download_snapshot)
        self.checksums = "fixed"  # what create_snapshot says: "fixed" ("abc"), "real" (sha256) or "none" (S3 mode)
        self.download_fails_after: int | None = None  # chunks served before the download breaks
        self.endpoints: dict[str, str] = {}  # nodes(): peer id -> endpoint URL
        self.shard_points: dict[int, int] = {}  # points each shard of the source holds
        self.shard_files: dict[tuple[str, int, str], int] = {}  # (node URL, shard, file) -> points it holds
        self.fail_shard: int | None = None  # the shard whose snapshot fails
        self.shard_bytes: dict[str, bytes] = {}  # shard file name -> its bytes (download_shard_snapshot)

    async def count(self, collection: str) -> int | None:
        return self.points.get(collection)

    async def create_snapshot(self, collection: str) -> dict[str, Any]:
        peer = f"{self.peer}-" if self.peer else ""  # distributed Qdrant names the file after the taking node
        name = f"{collection}-{peer}{self.taken}.snapshot"
        self.taken += 1
        self.snapshots[name] = self.points[collection]
        self.contents[name] = copy.deepcopy(self.contents.get(collection, []))
        self.points[collection] += self.write_during_snapshot
        self.files[name] = f"{name}:{self.snapshots[name]};".encode() * 4000
        checksum = {"fixed": "abc", "real": hashlib.sha256(self.files[name]).hexdigest(), "none": None}[self.checksums]
        size = 1024 if self.checksums == "fixed" else len(self.files[name])
        return {"name": name, "creation_time": "2030-05-01T00:00:00", "size": size, "checksum": checksum}

    async def download_snapshot(self, collection: str, snapshot: str) -> AsyncIterator[bytes]:
        self.calls.append(f"download {snapshot}")
        async for chunk in self._serve(self.files[snapshot]):
            yield chunk

    async def _serve(self, data: bytes) -> AsyncIterator[bytes]:
        for index, start in enumerate(range(0, len(data), 10000)):
            if self.download_fails_after is not None and index >= self.download_fails_after:
                raise Unreachable("connection broke (ReadError)")
            yield data[start : start + 10000]

    async def delete_snapshot(self, collection: str, snapshot: str) -> None:
        self.calls.append(f"delete {snapshot}")
        self.snapshots.pop(snapshot, None)
        self.files.pop(snapshot, None)

    async def metadata(self, collection: str) -> dict[str, Any] | None:
        if collection not in self.points:
            return None
        owner = self.owners.get(collection)
        return {} if owner is None else {mapping.OWNER_KEY: owner}

    async def recover(self, collection: str, location: str, checksum: str | None, api_key: str | None) -> None:
        name = location.split("?")[0].rsplit("/", 1)[-1]
        self.calls.append(f"recover {collection} {name} {checksum} {api_key}")
        if name not in self.snapshots:
            raise QdrantError(f"Service internal error: failed to download snapshot {name}: 404 Not Found")
        self.points[collection] = self.snapshots[name]
        self.contents[collection] = copy.deepcopy(self.contents.get(name, []))
        self.owners[collection] = "ns/docs/uid-src"  # the snapshot carries the source's marker

    async def set_metadata(self, collection: str, metadata: dict[str, Any]) -> None:
        marker = metadata[mapping.OWNER_KEY]
        self.calls.append(f"owner {collection} {marker}")
        self.owners[collection] = marker

    async def placement(self, collection: str) -> dict[str, Any]:
        self.calls.append(f"placement {collection}")
        return self.views.pop(0) if len(self.views) > 1 else self.views[0]

    async def first_points(self, collection: str, limit: int) -> list[dict[str, Any]]:
        return copy.deepcopy(self.contents.get(collection, [])[:limit])

    async def delete_collection(self, collection: str) -> None:
        self.calls.append(f"delete {collection}")
        self.points.pop(collection, None)
        self.owners.pop(collection, None)
        self.contents.pop(collection, None)

    async def nodes(self) -> dict[str, str]:
        return dict(self.endpoints)

    async def create_shard_snapshot(self, collection: str, shard: int, node: str) -> dict[str, Any]:
        self.calls.append(f"shard snapshot {shard} on {node}")
        if shard == self.fail_shard:
            raise Transient("shard snapshot failed")
        name = f"{collection}-shard-{shard}-{len(self.shard_files)}.snapshot"
        self.shard_files[(node, shard, name)] = self.shard_points[shard]
        start = sum(n for s, n in self.shard_points.items() if s < shard)  # shard s: the next shard_points[s] points
        self.contents[name] = copy.deepcopy(self.contents.get(collection, [])[start : start + self.shard_points[shard]])
        self.shard_bytes[name] = f"{name}:{self.shard_points[shard]};".encode() * 3000
        if self.checksums == "real":
            return {
                "name": name,
                "size": len(self.shard_bytes[name]),
                "checksum": hashlib.sha256(self.shard_bytes[name]).hexdigest(),
            }
        return {"name": name, "size": 100 + shard, "checksum": f"sum{shard}"}

    async def download_shard_snapshot(
        self, collection: str, shard: int, snapshot: str, node: str
    ) -> AsyncIterator[bytes]:
        self.calls.append(f"download {snapshot} on {node}")
        if (node, shard, snapshot) not in self.shard_files:
            raise NotFound(f"no shard snapshot {snapshot} on {node}")
        async for chunk in self._serve(self.shard_bytes[snapshot]):
            yield chunk

    async def delete_shard_snapshot(self, collection: str, shard: int, snapshot: str, node: str) -> None:
        self.calls.append(f"delete {snapshot} on {node}")
        self.shard_files.pop((node, shard, snapshot), None)

    async def recover_shard(
        self, collection: str, shard: int, node: str, location: str, checksum: str | None, api_key: str | None
    ) -> None:
        self.calls.append(f"recover {collection} shard {shard} on {node} from {location} {checksum} {api_key}")
        if "X-Amz-Signature" in location:  # presigned (FakeStore): the key ends shard-<id>-<file name>
            name = location.split("?")[0].rsplit("/", 1)[-1].split("-", 2)[2]
            data = self.shard_bytes[name]
            points = int(data.split(b";")[0].rsplit(b":", 1)[1])
        else:
            url, name = location.split("/collections/")[0], location.rsplit("/", 1)[-1]
            if (url, shard, name) not in self.shard_files:
                raise QdrantError(f"Service internal error: failed to download shard snapshot {name}: 404 Not Found")
            points = self.shard_files[(url, shard, name)]
        self.points[collection] = self.points.get(collection, 0) + points
        held = self.contents.get(collection, []) + copy.deepcopy(self.contents.get(name, []))
        self.contents[collection] = sorted(held, key=lambda p: p["id"])


@dataclass
class FakeConnection:
    """ConnectionPort: a connection whose readiness the test sets."""

    namespace: str = "ns"
    name: str = "main"
    spec: QdrantConnectionSpec = field(default_factory=lambda: QdrantConnectionSpec(url="http://127.0.0.1:6333"))
    collections: FakeQdrant = field(default_factory=FakeQdrant)
    snapshots: FakeSnapshots = field(default_factory=FakeSnapshots)
    problem: str | None = None
    operations: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))
    topology: Topology | None = None  # a distributed Qdrant's peers
    in_place_vectors: bool = False  # Qdrant 1.18+: named vectors added and removed in place
    api_key: str | None = None  # the key CollectionAccessKeys sign with
    jwt_rbac: bool | None = None  # Qdrant takes tokens signed with it

    def allows(self, namespace: str) -> bool:
        allowed = self.spec.allowed_namespaces
        return namespace == self.namespace or "*" in allowed or namespace in allowed

    def not_ready(self) -> str | None:
        return self.problem


@dataclass
class FakeConnections:
    """ConnectionsPort over FakeConnections by "namespace/name"; `known` are resources without a client."""

    running: dict[str, FakeConnection] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)

    def get(self, key: str) -> FakeConnection | None:
        return self.running.get(key)

    def exists(self, key: str) -> bool:
        return key in self.running or key in self.known

    async def settled(self, key: str, within: float) -> None:
        return None


@dataclass
class FakeKeySecrets:
    """KeySecretsPort: Secrets by (namespace, name) as (owner uids, data); every write recorded."""

    stored: dict[tuple[str, str], StoredSecret] = field(default_factory=dict)
    writes: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    async def get_secret(self, namespace: str, name: str) -> StoredSecret | None:
        return self.stored.get((namespace, name))

    async def put_secret(
        self, namespace: str, name: str, data: dict[str, str], owner: dict[str, Any], exists: bool
    ) -> None:
        old = self.stored.get((namespace, name))
        assert (old is not None) == exists, "create of an existing Secret, or patch of a missing one"
        self.stored[(namespace, name)] = StoredSecret(old.owners if old else (owner["uid"],), dict(data))
        self.writes.append((namespace, name, dict(data)))


@dataclass
class FakeSecrets:
    """SecretsPort, and the status patching of KubeApi, recording every patch."""

    data: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    patches: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        if (namespace, name, key) not in self.data:
            raise LookupError(f"Secret {namespace}/{name} has no key {key!r}")
        return self.data[(namespace, name, key)]

    async def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.patches.append((plural, name, dict(status)))

    async def close(self) -> None:
        return None


@dataclass
class FakeClient:
    """ClientPort: a QdrantConnection's client whose report the test sets."""

    namespace: str
    spec: QdrantConnectionSpec
    report: ConnectionReport

    def allows(self, namespace: str) -> bool:
        allowed = self.spec.allowed_namespaces
        return namespace == self.namespace or "*" in allowed or namespace in allowed


@dataclass
class FakeClients:
    """ClientsPort: records every client built or changed (key, credentials); a new one reports `report`."""

    report: ConnectionReport
    running: dict[str, FakeClient] = field(default_factory=dict)
    applied: list[tuple[str, Credentials]] = field(default_factory=list)

    def get(self, key: str) -> FakeClient | None:
        return self.running.get(key)

    async def apply(
        self,
        key: str,
        namespace: str,
        name: str,
        spec: QdrantConnectionSpec,
        settings: ClientSettings,
        credentials: Credentials,
    ) -> FakeClient:
        self.applied.append((key, credentials))
        client = self.running.setdefault(key, FakeClient(namespace, spec, self.report))
        client.spec = spec
        return client


class FakeStore(Store):
    """objectstore.Store on obstore's MemoryStore (one per bucket, kept across opens). A MemoryStore cannot
    sign, so presign_get returns a URL of presigned shape (its signature a marker tests look for)."""

    async def presign_get(self, key: str, expires: timedelta) -> str:
        return f"https://s3.example/{self.config.bucket}/{self.path(key)}?X-Amz-Expires={int(expires.total_seconds())}&X-Amz-Signature=SIGNATURE"


@dataclass
class FakeObjectStores:
    """OpenStore over FakeStores: every config opened is recorded (the credentials read at each use)."""

    buckets: dict[str, MemoryStore] = field(default_factory=dict)
    opened: list[StoreConfig] = field(default_factory=list)

    def open(self, config: StoreConfig) -> Store:
        self.opened.append(config)
        return FakeStore(config, backend=self.buckets.setdefault(config.bucket, MemoryStore()))

    def keys(self, bucket: str) -> list[str]:
        store = self.buckets.get(bucket)
        return sorted(meta["path"] for batch in obstore.list(store) for meta in batch) if store else []
