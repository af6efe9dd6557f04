"""The typed collection and snapshot calls of both clients, each one REST `request` in Qdrant's JSON with its
retry semantics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from ..config import ClientSettings
from .errors import AlreadyExists, InvalidRequest, NotFound, QdrantError
from .session import Session

T = TypeVar("T")
# A snapshot download is handed on in 1 MiB pieces, not httpx's 64 KiB reads: the upload's cost per piece (hashing,
# obstore's call) then falls 16-fold (bench/backup.py measured 0.65x -> 0.77x of a bare upload). 2 MiB read ahead.
DOWNLOAD_CHUNK_BYTES = 2**20
DOWNLOAD_QUEUE_CHUNKS = 2


@dataclass
class _Turn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    free_at: float = 0.0  # event-loop time from which a new snapshot gets a new file name


class SnapshotTurns:
    """Qdrant names a snapshot file `<collection>-<peer id>-<UTC second>.snapshot`: a second snapshot of a
    collection within the same second replaces the first file, which a record, a checksum or a retention
    rule may still refer to. So snapshots of one collection through one client run one at a time, each
    starting at least `spacing` seconds after the previous one returned."""

    def __init__(self, spacing: float = 1.0) -> None:
        self.spacing = spacing
        self._turns: dict[str, _Turn] = {}

    @contextlib.asynccontextmanager
    async def turn(self, collection: str) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        now = loop.time()  # collections idle past their spacing are forgotten: the map stays small
        self._turns = {k: t for k, t in self._turns.items() if t.users or t.free_at > now}
        turn = self._turns.setdefault(collection, _Turn())
        turn.users += 1
        try:
            async with turn.lock:
                await asyncio.sleep(max(0.0, turn.free_at - loop.time()))
                try:
                    yield
                finally:  # a failed or timed-out call may still have written the file
                    turn.free_at = loop.time() + self.spacing
        finally:
            turn.users -= 1


Json = dict[str, Any]


def path(*parts: str) -> str:
    """A REST path from its segments, each escaped (a name never changes the route)."""
    return "".join("/" + quote(part, safe="") for part in parts)


def snapshots_path(collection: str, shard: int | None, *rest: str) -> str:
    """/collections/{c}/snapshots/..., or /collections/{c}/shards/{shard}/snapshots/... for one shard's."""
    where = ("collections", collection) if shard is None else ("collections", collection, "shards", str(shard))
    return path(*where, "snapshots", *rest)


class CollectionCalls(Protocol):
    """Qdrant's REST API on `_timed` (breaker, pool lease, timeout, retries): `request` for any call, and the
    typed collection, index, alias and snapshot calls; both clients inherit these."""

    settings: ClientSettings
    snapshot_turns: SnapshotTurns

    async def _timed(
        self, operation: str, fn: Callable[[Session], Awaitable[T]], idempotent: bool, timeout_seconds: float | None
    ) -> T:
        """Run `fn(session)` with the client's breaker, pool lease, timeout, retries (and failover), timed in
        metrics under `operation`. Raises a QdrantError subclass."""
        ...

    async def request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool,
        timeout_seconds: float | None = None,
    ) -> Any:
        """The `result` of one REST call. Raises a QdrantError subclass."""

        async def send(session: Session) -> Any:
            # Inside the attempt: a reply of another shape is classified there like any other failure.
            return (await session.send(method, path, body=body, params=params))["result"]

        return await self._timed(operation, send, idempotent, timeout_seconds)

    def _wait(self, timeout_seconds: float | None = None) -> int:
        """Qdrant's own `timeout` parameter (whole seconds) for calls that wait on the server."""
        return int(timeout_seconds or self.settings.timeouts.request_seconds)

    async def list_collections(self) -> list[str]:
        result = await self.request("list_collections", "GET", "/collections", idempotent=True)
        return [collection["name"] for collection in result["collections"]]

    async def collection_exists(self, name: str) -> bool:
        result = await self.request("collection_exists", "GET", path("collections", name, "exists"), idempotent=True)
        return bool(result["exists"])

    async def get_collection(self, name: str) -> Json:
        """GET /collections/{name}'s result. NotFound if it does not exist."""
        result: Json = await self.request("get_collection", "GET", path("collections", name), idempotent=True)
        return result

    async def create_collection(self, name: str, body: Json, *, timeout_seconds: float | None = None) -> None:
        """Not idempotent: AlreadyExists if it exists, OutcomeUnknown if the reply was lost."""
        await self.request(
            "create_collection",
            "PUT",
            path("collections", name),
            body=body,
            params={"timeout": self._wait(timeout_seconds)},
            idempotent=False,
            timeout_seconds=timeout_seconds,
        )

    async def update_collection(self, name: str, body: Json, *, timeout_seconds: float | None = None) -> None:
        """PATCH: setting the same values twice is harmless, so it is retried."""
        await self.request(
            "update_collection",
            "PATCH",
            path("collections", name),
            body=body,
            params={"timeout": self._wait(timeout_seconds)},
            idempotent=True,
            timeout_seconds=timeout_seconds,
        )

    async def delete_collection(self, name: str) -> bool:
        """True if it existed. A missing collection is success (404 on delete)."""
        try:
            result = await self.request("delete_collection", "DELETE", path("collections", name), idempotent=True)
        except NotFound:
            return False
        return bool(result)

    async def create_vector_name(self, collection: str, vector: str, config: Json) -> None:
        """PUT /collections/{name}/vectors/{vector} (Qdrant 1.18+): a new named dense or sparse vector, empty in
        every existing point. Retried: Qdrant answers 200 again for a name that exists with the same config. A
        name that exists with another config (or as the other kind) is a 400 "already exists ...": that is
        InvalidRequest here, not the collection-level AlreadyExists that leads to an ownership check."""
        try:
            await self.request(
                "create_vector_name",
                "PUT",
                path("collections", collection, "vectors", vector),
                body=config,
                params={"wait": True, "timeout": self._wait()},
                idempotent=True,
            )
        except AlreadyExists as exc:
            raise InvalidRequest(exc.message, status_code=exc.status_code) from None

    async def delete_vector_name(self, collection: str, vector: str) -> None:
        """DELETE /collections/{name}/vectors/{vector} (Qdrant 1.18+): the vector and its data in every point
        are gone. Retried: Qdrant answers 200 for a vector that is not there (404 only for a missing collection)."""
        await self.request(
            "delete_vector_name",
            "DELETE",
            path("collections", collection, "vectors", vector),
            params={"wait": True, "timeout": self._wait()},
            idempotent=True,
        )

    async def create_payload_index(self, collection: str, field: str, schema: str | Json) -> None:
        """`schema`: a type name ("keyword") or PayloadSchemaParams ({"type": "keyword", ...})."""
        await self.request(
            "create_payload_index",
            "PUT",
            path("collections", collection, "index"),
            body={"field_name": field, "field_schema": schema},
            params={"wait": True},
            idempotent=True,
        )

    async def delete_payload_index(self, collection: str, field: str) -> bool:
        try:
            await self.request(
                "delete_payload_index",
                "DELETE",
                path("collections", collection, "index", field),
                params={"wait": True},
                idempotent=True,
            )
        except NotFound:
            return False
        return True

    async def list_aliases(self, collection: str | None = None) -> list[Json]:
        """AliasDescriptions: {"alias_name": ..., "collection_name": ...}."""
        where = "/aliases" if collection is None else path("collections", collection, "aliases")
        result = await self.request("list_aliases", "GET", where, idempotent=True)
        return list(result["aliases"])

    async def update_aliases(self, actions: Sequence[Json]) -> None:
        """Atomic alias changes. Not retried: replaying a partly applied delete would fail."""
        await self.request(
            "update_aliases", "POST", "/collections/aliases", body={"actions": list(actions)}, idempotent=False
        )

    async def collection_cluster(self, name: str) -> Json:
        """Shards, replicas and transfers as the node behind the URL sees them (any node agrees on placement)."""
        result: Json = await self.request(
            "collection_cluster", "GET", path("collections", name, "cluster"), idempotent=True
        )
        return result

    async def update_collection_cluster(self, name: str, operation: Json) -> None:
        """One placement change (replicate a shard, drop a replica). Not retried: a replayed replicate could
        start a second transfer; the reconciler looks at the placement again instead."""
        await self.request(
            "update_collection_cluster",
            "POST",
            path("collections", name, "cluster"),
            body=operation,
            params={"timeout": self._wait()},
            idempotent=False,
        )

    async def create_shard_key(self, name: str, key: str) -> None:
        """Idempotent in effect: the caller creates only keys missing from the placement it just read."""
        await self.request(
            "create_shard_key",
            "PUT",
            path("collections", name, "shards"),
            body={"shard_key": key},
            params={"timeout": self._wait()},
            idempotent=False,
        )

    async def create_snapshot(
        self, collection: str, *, shard: int | None = None, timeout_seconds: float | None = None
    ) -> Json:
        """Qdrant's SnapshotDescription (name, creation_time, size, checksum) of the collection, or of one `shard`
        on the node behind the URL (which must hold a replica of it). Not retried: a lost reply would otherwise
        leave a second, untracked file behind. Spaced by SnapshotTurns, so two snapshots through this client never
        share a file name (`<collection>[-shard-<id>]-...-<UTC second>`)."""
        async with self.snapshot_turns.turn(collection if shard is None else f"{collection}/shards/{shard}"):
            result: Json | None = await self.request(
                "create_snapshot" if shard is None else "create_shard_snapshot",
                "POST",
                snapshots_path(collection, shard),
                params={"wait": True},
                idempotent=False,
                timeout_seconds=timeout_seconds,
            )
        if result is None:  # only with wait=False
            raise QdrantError(f"snapshot of {collection} returned no description")
        return result

    async def cluster_info(self) -> Json:
        """GET /cluster as the node behind the URL answers it: its own `peer_id`, the peers, the raft state."""
        result: Json = await self.request("cluster_info", "GET", "/cluster", idempotent=True)
        return result

    async def list_snapshots(self, collection: str) -> list[Json]:
        result = await self.request(
            "list_snapshots", "GET", path("collections", collection, "snapshots"), idempotent=True
        )
        return list(result)

    async def download_snapshot(
        self, collection: str, snapshot: str, *, shard: int | None = None, timeout_seconds: float | None = None
    ) -> AsyncIterator[bytes]:
        """The snapshot file's (or one `shard`'s snapshot file's) bytes as they arrive, at most
        DOWNLOAD_QUEUE_CHUNKS read ahead of the consumer. One attempt under the breaker, pool lease and timeout,
        never retried: a retry would repeat bytes already passed on. A failure is raised as the typed error where
        the consumer reads next."""
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=DOWNLOAD_QUEUE_CHUNKS)

        async def stream(session: Session) -> None:
            async with session.http.stream("GET", snapshots_path(collection, shard, snapshot)) as reply:
                if reply.is_error:
                    await reply.aread()  # the error's classifier reads Qdrant's JSON error text
                    reply.raise_for_status()
                async for chunk in reply.aiter_bytes(DOWNLOAD_CHUNK_BYTES):
                    await queue.put(chunk)
            await queue.put(None)

        async def produce() -> None:
            try:
                await self._timed("download_snapshot", stream, False, timeout_seconds)
            except QdrantError as error:
                await queue.put(error)

        producer = asyncio.create_task(produce(), name=f"download {collection}/{snapshot}")
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer

    async def delete_snapshot(self, collection: str, snapshot: str, *, shard: int | None = None) -> bool:
        try:
            await self.request(
                "delete_snapshot" if shard is None else "delete_shard_snapshot",
                "DELETE",
                snapshots_path(collection, shard, snapshot),
                params={"wait": True},
                idempotent=True,
            )
        except NotFound:
            return False
        return True

    async def recover_snapshot(
        self,
        collection: str,
        location: str,
        *,
        shard: int | None = None,
        checksum: str | None = None,
        api_key: str | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        """Recover `collection` from a snapshot URL or file:// path, or one `shard` of the existing collection on
        the node behind the URL from a shard snapshot URL (Qdrant's default priority, `snapshot`, makes this node's
        replica Active and marks the shard's other Active replicas Dead, to be recovered from it). Long and not
        retried. `api_key` is what Qdrant sends to the server holding the file (a protected URL needs it)."""
        body = {"location": location, "checksum": checksum, "api_key": api_key}
        await self.request(
            "recover_snapshot" if shard is None else "recover_shard_snapshot",
            "PUT",
            snapshots_path(collection, shard, "recover"),
            body={key: value for key, value in body.items() if value is not None},
            params={"wait": True},
            idempotent=False,
            timeout_seconds=timeout_seconds,
        )
