"""What the reconcilers need from the outside, one Protocol per concern. The qdrant layer implements
the Qdrant ports (qdrant/adapters.py), k8s/ the Secrets port, the handlers' Context the connection
registry; unit tests use tests/fakes.py. Qdrant errors are the qdrant layer's typed errors."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from ..api.connection import QdrantConnectionSpec
from ..config import ClientSettings
from ..objectstore import StoreConfig, Uploaded
from ..qdrant import ConnectionReport, Topology


class CollectionsPort(Protocol):
    """Collection-level calls in Qdrant's own JSON."""

    async def get_collection(self, name: str) -> dict[str, Any] | None:
        """GET /collections/{name} result, or None when it does not exist."""

    async def create_collection(self, name: str, body: dict[str, Any]) -> None: ...

    async def update_collection(self, name: str, body: dict[str, Any]) -> None: ...

    async def delete_collection(self, name: str) -> None:
        """Succeeds when the collection is already gone."""

    async def list_collections(self) -> list[str]:
        """Every collection name on the server."""

    async def create_vector(self, name: str, vector: str, config: dict[str, Any]) -> None:
        """PUT /collections/{name}/vectors/{vector} with a VectorNameConfig ({"dense": ...} or {"sparse": ...});
        Qdrant 1.18+. Succeeds when the vector exists with the same config."""

    async def delete_vector(self, name: str, vector: str) -> None:
        """DELETE /collections/{name}/vectors/{vector}, dense or sparse: its data is gone. Qdrant 1.18+.
        Succeeds when the vector is not there."""

    async def create_payload_index(self, name: str, field: str, schema: dict[str, Any]) -> None: ...

    async def delete_payload_index(self, name: str, field: str) -> None: ...

    async def list_aliases(self) -> dict[str, str]:
        """Every alias on the server -> its collection."""

    async def update_aliases(self, actions: list[dict[str, Any]]) -> None:
        """POST /collections/aliases: the actions apply atomically."""

    async def cluster_view(self, name: str) -> dict[str, Any]:
        """GET /collections/{name}/cluster: local and remote shards with their states, transfers in flight."""

    async def change_placement(self, name: str, operation: dict[str, Any]) -> None:
        """POST /collections/{name}/cluster: one replicate_shard or drop_replica."""

    async def create_shard_key(self, name: str, key: str) -> None: ...

    async def count_points(self, name: str) -> int:
        """Exact point count."""

    async def copy_points(
        self,
        source: str,
        target: str,
        start: int | str | None,
        limit: int,
        *,
        vectors: list[str] | None,
        only_changed: bool,
    ) -> tuple[int, int, int | str | None]:
        """One page of `source` (from point id `start`) upserted into `target`; `only_changed`: only points missing
        or different there; `vectors`: the named vectors to carry (None: all). (read, written, next start)."""

    async def prune_points(
        self, source: str, target: str, start: int | str | None, limit: int
    ) -> tuple[int, int, int | str | None]:
        """One page of `target`'s points: delete those `source` no longer has. (read, deleted, next start)."""


class SnapshotsPort(Protocol):
    async def count(self, collection: str) -> int | None:
        """Exact point count, or None when the collection does not exist."""

    async def create_snapshot(self, collection: str) -> dict[str, Any]:
        """Qdrant's SnapshotDescription: name, creation_time, size, checksum. Never retried."""

    async def delete_snapshot(self, collection: str, snapshot: str) -> None:
        """Succeeds when the snapshot is already gone."""

    def download_snapshot(self, collection: str, snapshot: str) -> AsyncIterator[bytes]:
        """GET /collections/{c}/snapshots/{name}: the file's bytes as they arrive (bounded read-ahead); a
        failure is the typed error, raised where the consumer reads next. One attempt, never retried."""

    async def metadata(self, collection: str) -> dict[str, Any] | None:
        """The collection's metadata, or None when it does not exist."""

    async def set_metadata(self, collection: str, metadata: dict[str, Any]) -> None: ...

    async def recover(self, collection: str, location: str, checksum: str | None, api_key: str | None) -> None:
        """Recover from a snapshot URL; `api_key` is sent to the server that holds the file."""

    async def placement(self, collection: str) -> dict[str, Any]:
        """GET /collections/{name}/cluster (distributed Qdrant): the answering node's peer id, its local
        shards and the remote ones, with replica states."""

    async def first_points(self, collection: str, limit: int) -> list[dict[str, Any]]:
        """The first `limit` points by id, with payloads and vectors, as Qdrant's scroll returns them."""

    async def delete_collection(self, collection: str) -> None:
        """A restore drill's scratch collection; succeeds when it is already gone."""

    async def nodes(self) -> dict[str, str]:
        """Distributed Qdrant: the peer id of each endpoint of the connection that answers now -> its URL (each
        node's own GET /cluster names it). A single node's cluster is disabled: empty."""

    async def create_shard_snapshot(self, collection: str, shard: int, node: str) -> dict[str, Any]:
        """POST /collections/{c}/shards/{shard}/snapshots on endpoint `node` (a URL nodes() gave), which must hold
        a replica of the shard: its SnapshotDescription. Never retried."""

    async def delete_shard_snapshot(self, collection: str, shard: int, snapshot: str, node: str) -> None:
        """Succeeds when the file is already gone."""

    def download_shard_snapshot(self, collection: str, shard: int, snapshot: str, node: str) -> AsyncIterator[bytes]:
        """GET /collections/{c}/shards/{shard}/snapshots/{name} on endpoint `node`: as download_snapshot."""

    async def recover_shard(
        self, collection: str, shard: int, node: str, location: str, checksum: str | None, api_key: str | None
    ) -> None:
        """PUT /collections/{c}/shards/{shard}/snapshots/recover on endpoint `node` from a shard snapshot URL; the
        collection must exist there with that shard."""


class ObjectStorePort(Protocol):
    """One bucket under a key prefix (collection_operator.objectstore.Store); failures are ObjectStoreError."""

    async def upload(self, key: str, chunks: AsyncIterable[bytes]) -> Uploaded:
        """Multipart, bounded memory, sha256 while streaming; on any failure the upload is aborted. An error
        `chunks` raises is re-raised as it is."""

    async def abort_incomplete(self, under: str) -> list[str]:
        """Abort the multipart uploads still open under the key prefix `under` (an abort that could not reach
        the server left them); the keys they were for."""

    async def presign_get(self, key: str, expires: timedelta) -> str:
        """A URL that GETs the object until `expires` passes: a credential, never shown."""

    async def delete(self, key: str) -> None:
        """Succeeds when the object is already gone."""

    def download(self, key: str) -> AsyncIterator[bytes]: ...

    async def check(self) -> None:
        """The bucket is reachable with these credentials."""

    def location(self, key: str) -> str:
        """ "s3://bucket/<prefix>/<key>"."""


# Opens the store a StoreConfig names (objectstore.Store in the operator, under its address policy).
OpenStore = Callable[[StoreConfig], ObjectStorePort]


class SecretUnavailable(Exception):
    """A Secret could not be read now: the API server refused or did not answer. Worth another try."""


class SecretsPort(Protocol):
    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        """One key of a Secret, decoded. Raises LookupError when the Secret or the key does not exist, and
        SecretUnavailable when it could not be read now."""


@dataclass(frozen=True)
class StoredSecret:
    """A Secret as a CollectionAccessKey reads back the one it writes."""

    owners: tuple[str, ...]  # the uids of its ownerReferences
    data: dict[str, str]  # decoded


class KeySecretsPort(Protocol):
    """The Secrets CollectionAccessKeys write and own. SecretUnavailable when the API server refuses or does not
    answer."""

    async def get_secret(self, namespace: str, name: str) -> StoredSecret | None:
        """The Secret, or None when it does not exist."""

    async def put_secret(
        self, namespace: str, name: str, data: dict[str, str], owner: dict[str, Any], exists: bool
    ) -> None:
        """Create the Secret owned by `owner` (an ownerReference), or when it `exists` patch its data."""


class ConnectionPort(Protocol):
    """A QdrantConnection as the reconcilers of other kinds see it: its client and its rules."""

    namespace: str
    name: str
    spec: QdrantConnectionSpec

    @property
    def collections(self) -> CollectionsPort: ...

    @property
    def snapshots(self) -> SnapshotsPort: ...

    @property
    def operations(self) -> AbstractAsyncContextManager[Any]:
        """Bounds create/update/delete calls in flight on this connection."""

    @property
    def topology(self) -> Topology | None:
        """A distributed Qdrant's peers as of the last health probe; None for a single node."""

    @property
    def in_place_vectors(self) -> bool:
        """The server adds and removes named vectors of an existing collection (Qdrant 1.18+); False while
        its version is unknown."""

    @property
    def api_key(self) -> str | None:
        """The API key the client uses now (re-read from its Secret every health interval); None without one."""

    @property
    def jwt_rbac(self) -> bool | None:
        """Whether Qdrant takes tokens signed with the API key (JWT RBAC); None until the first probe says."""

    def allows(self, namespace: str) -> bool: ...

    def not_ready(self) -> str | None:
        """Why resources must not call Qdrant now, or None when they may."""


class ConnectionsPort(Protocol):
    def get(self, key: str) -> ConnectionPort | None:
        """The running connection "namespace/name", or None."""

    def exists(self, key: str) -> bool:
        """Whether the QdrantConnection resource exists (connected or not)."""

    async def settled(self, key: str, within: float) -> None:
        """Wait up to `within` seconds for the connection's first health verdict (operator start)."""


@dataclass(frozen=True)
class Credentials:
    """What a QdrantConnection's Secrets hold for its client (reconcile/connection.py reads them)."""

    api_key: str | None
    ca_pem: str | None


class ClientPort(Protocol):
    """A QdrantConnection's client as its own daemon sees it."""

    spec: QdrantConnectionSpec

    @property
    def report(self) -> ConnectionReport:
        """What the health monitor and the circuit breaker last saw."""

    def allows(self, namespace: str) -> bool: ...


class ClientsPort(Protocol):
    """The connection registry as the connections' daemons fill it."""

    def get(self, key: str) -> ClientPort | None: ...

    async def apply(
        self,
        key: str,
        namespace: str,
        name: str,
        spec: QdrantConnectionSpec,
        settings: ClientSettings,
        credentials: Credentials,
    ) -> ClientPort:
        """Build the client of connection `key`, or change the running one in place."""
