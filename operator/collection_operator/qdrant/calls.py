"""The typed collection and snapshot calls of QdrantGateway, each one `call` with its retry semantics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from ..config import ClientSettings
from .errors import AlreadyExists, InvalidRequest, NotFound, QdrantError


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


class CollectionCalls:
    """Mixed into QdrantGateway: Qdrant's collection, index, alias and snapshot endpoints."""

    settings: ClientSettings
    call: Callable[..., Awaitable[Any]]  # QdrantGateway.call: breaker, pool lease, timeout, retries
    snapshot_turns: SnapshotTurns

    async def list_collections(self) -> list[str]:
        response = await self.call("list_collections", lambda c: c.get_collections(), idempotent=True)
        return [collection.name for collection in response.collections]

    async def collection_exists(self, name: str) -> bool:
        return await self.call("collection_exists", lambda c: c.collection_exists(name), idempotent=True)

    async def get_collection(self, name: str) -> models.CollectionInfo:
        """NotFound if it does not exist."""
        return await self.call("get_collection", lambda c: c.get_collection(name), idempotent=True)

    async def create_collection(
        self, name: str, body: models.CreateCollection, *, timeout_seconds: float | None = None
    ) -> None:
        """Not idempotent: AlreadyExists if it exists, OutcomeUnknown if the reply was lost."""

        async def create(client: AsyncQdrantClient) -> None:
            wait = int(timeout_seconds or self.settings.timeouts.request_seconds)
            await client.http.collections_api.create_collection(name, create_collection=body, timeout=wait)

        await self.call("create_collection", create, idempotent=False, timeout_seconds=timeout_seconds)

    async def update_collection(
        self, name: str, body: models.UpdateCollection, *, timeout_seconds: float | None = None
    ) -> None:
        """PATCH: setting the same values twice is harmless, so it is retried."""

        async def update(client: AsyncQdrantClient) -> None:
            wait = int(timeout_seconds or self.settings.timeouts.request_seconds)
            await client.http.collections_api.update_collection(name, update_collection=body, timeout=wait)

        await self.call("update_collection", update, idempotent=True, timeout_seconds=timeout_seconds)

    async def delete_collection(self, name: str) -> bool:
        """True if it existed. A missing collection is success (404 on delete)."""
        try:
            response = await self.call(
                "delete_collection", lambda c: c.http.collections_api.delete_collection(name), idempotent=True
            )
        except NotFound:
            return False
        return bool(response.result)

    async def create_vector_name(self, collection: str, vector: str, config: models.VectorNameConfig) -> None:
        """PUT /collections/{name}/vectors/{vector} (Qdrant 1.18+): a new named dense or sparse vector, empty in
        every existing point. Retried: Qdrant answers 200 again for a name that exists with the same config. A
        name that exists with another config (or as the other kind) is a 400 "already exists ...": that is
        InvalidRequest here, not the collection-level AlreadyExists that leads to an ownership check."""

        async def create(client: AsyncQdrantClient) -> None:
            wait = int(self.settings.timeouts.request_seconds)
            await client.http.collections_api.create_vector_name(
                collection, vector, wait=True, timeout=wait, vector_name_config=config
            )

        try:
            await self.call("create_vector_name", create, idempotent=True)
        except AlreadyExists as exc:
            raise InvalidRequest(exc.message, status_code=exc.status_code) from None

    async def delete_vector_name(self, collection: str, vector: str) -> None:
        """DELETE /collections/{name}/vectors/{vector} (Qdrant 1.18+): the vector and its data in every point
        are gone. Retried: Qdrant answers 200 for a vector that is not there (404 only for a missing collection)."""

        async def delete(client: AsyncQdrantClient) -> None:
            wait = int(self.settings.timeouts.request_seconds)
            await client.http.collections_api.delete_vector_name(collection, vector, wait=True, timeout=wait)

        await self.call("delete_vector_name", delete, idempotent=True)

    async def create_payload_index(
        self, collection: str, field: str, schema: models.PayloadSchemaType | models.PayloadSchemaParams
    ) -> None:
        await self.call(
            "create_payload_index",
            lambda c: c.create_payload_index(collection, field, field_schema=schema, wait=True),
            idempotent=True,
        )

    async def delete_payload_index(self, collection: str, field: str) -> bool:
        try:
            await self.call(
                "delete_payload_index", lambda c: c.delete_payload_index(collection, field, wait=True), idempotent=True
            )
        except NotFound:
            return False
        return True

    async def list_aliases(self, collection: str | None = None) -> list[models.AliasDescription]:
        if collection is None:
            response = await self.call("list_aliases", lambda c: c.get_aliases(), idempotent=True)
        else:
            response = await self.call("list_aliases", lambda c: c.get_collection_aliases(collection), idempotent=True)
        return list(response.aliases)

    async def update_aliases(self, actions: Sequence[models.AliasOperations]) -> None:
        """Atomic alias changes. Not retried: replaying a partly applied delete would fail."""
        await self.call("update_aliases", lambda c: c.update_collection_aliases(list(actions)), idempotent=False)

    async def collection_cluster(self, name: str) -> models.CollectionClusterInfo:
        """Shards, replicas and transfers as the node behind the URL sees them (any node agrees on placement)."""
        return await self.call("collection_cluster", lambda c: c.collection_cluster_info(name), idempotent=True)

    async def update_collection_cluster(self, name: str, operation: models.ClusterOperations) -> None:
        """One placement change (replicate a shard, drop a replica). Not retried: a replayed replicate could
        start a second transfer; the reconciler looks at the placement again instead."""

        async def update(client: AsyncQdrantClient) -> None:
            wait = int(self.settings.timeouts.request_seconds)
            await client.http.distributed_api.update_collection_cluster(
                name, cluster_operations=operation, timeout=wait
            )

        await self.call("update_collection_cluster", update, idempotent=False)

    async def create_shard_key(self, name: str, key: str) -> None:
        """Idempotent in effect: the caller creates only keys missing from the placement it just read."""

        async def create(client: AsyncQdrantClient) -> None:
            wait = int(self.settings.timeouts.request_seconds)
            body = models.CreateShardingKey(shard_key=key)
            await client.http.distributed_api.create_shard_key(name, create_sharding_key=body, timeout=wait)

        await self.call("create_shard_key", create, idempotent=False)

    async def create_snapshot(
        self, collection: str, *, timeout_seconds: float | None = None
    ) -> models.SnapshotDescription:
        """Not retried: a lost reply would otherwise leave a second, untracked file behind. Spaced by
        SnapshotTurns, so two snapshots through this client never share a file name."""
        async with self.snapshot_turns.turn(collection):
            result = await self.call(
                "create_snapshot",
                lambda c: c.create_snapshot(collection, wait=True),
                idempotent=False,
                timeout_seconds=timeout_seconds,
            )
        if result is None:  # only with wait=False
            raise QdrantError(f"snapshot of {collection} returned no description")
        return result

    async def list_snapshots(self, collection: str) -> list[models.SnapshotDescription]:
        return await self.call("list_snapshots", lambda c: c.list_snapshots(collection), idempotent=True)

    async def delete_snapshot(self, collection: str, snapshot: str) -> bool:
        try:
            await self.call(
                "delete_snapshot", lambda c: c.delete_snapshot(collection, snapshot, wait=True), idempotent=True
            )
        except NotFound:
            return False
        return True

    async def recover_snapshot(
        self,
        collection: str,
        location: str,
        *,
        checksum: str | None = None,
        api_key: str | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        """Recover `collection` from a snapshot URL or file:// path. Long and not retried. `api_key` is what
        Qdrant sends to the server holding the file (a protected URL needs it)."""
        await self.call(
            "recover_snapshot",
            lambda c: c.recover_snapshot(collection, location, api_key=api_key, checksum=checksum, wait=True),
            idempotent=False,
            timeout_seconds=timeout_seconds,
        )
