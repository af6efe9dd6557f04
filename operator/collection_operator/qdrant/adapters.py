"""The reconcilers' Qdrant ports (reconcile/ports.py) on QdrantGateway: Qdrant's JSON in and out,
qdrant-client models inside."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from qdrant_client import models

from . import copying
from .copying import PointId
from .endpoints import Gateway
from .errors import NotFound
from .vectors import VectorOperations

# Snapshots and recoveries copy whole collections: far longer than an ordinary request's budget.
TRANSFER_TIMEOUT_SECONDS = 3600.0


class QdrantCollections:
    """CollectionsPort."""

    _aliases = TypeAdapter(list[models.AliasOperations])
    _operation: TypeAdapter[models.ClusterOperations] = TypeAdapter(models.ClusterOperations)

    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    async def get_collection(self, name: str) -> dict[str, Any] | None:
        try:
            info = await self.gateway.get_collection(name)
        except NotFound:
            return None
        return info.model_dump(mode="json", exclude_none=True)

    async def create_collection(self, name: str, body: dict[str, Any]) -> None:
        await self.gateway.create_collection(name, models.CreateCollection.model_validate(body))

    async def update_collection(self, name: str, body: dict[str, Any]) -> None:
        await self.gateway.update_collection(name, models.UpdateCollection.model_validate(body))

    async def delete_collection(self, name: str) -> None:
        await self.gateway.delete_collection(name)

    async def list_collections(self) -> list[str]:
        return await self.gateway.list_collections()

    async def create_payload_index(self, name: str, field: str, schema: dict[str, Any]) -> None:
        params = TypeAdapter(models.PayloadSchemaParams).validate_python(schema)
        await self.gateway.create_payload_index(name, field, params)

    async def delete_payload_index(self, name: str, field: str) -> None:
        await self.gateway.delete_payload_index(name, field)

    async def list_aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in await self.gateway.list_aliases()}

    async def update_aliases(self, actions: list[dict[str, Any]]) -> None:
        await self.gateway.update_aliases(self._aliases.validate_python(actions))

    async def cluster_view(self, name: str) -> dict[str, Any]:
        return (await self.gateway.collection_cluster(name)).model_dump(mode="json", exclude_none=True)

    async def change_placement(self, name: str, operation: dict[str, Any]) -> None:
        await self.gateway.update_collection_cluster(name, self._operation.validate_python(operation))

    async def create_shard_key(self, name: str, key: str) -> None:
        await self.gateway.create_shard_key(name, key)

    async def count_points(self, name: str) -> int:
        return await copying.count_points(self.gateway, name)

    async def copy_points(
        self,
        source: str,
        target: str,
        start: PointId | None,
        limit: int,
        *,
        vectors: list[str] | None,
        only_changed: bool,
    ) -> tuple[int, int, PointId | None]:
        return await copying.copy_page(
            self.gateway, source, target, start, limit, vectors=vectors, only_changed=only_changed
        )

    async def prune_points(
        self, source: str, target: str, start: PointId | None, limit: int
    ) -> tuple[int, int, PointId | None]:
        return await copying.prune_page(self.gateway, source, target, start, limit)


class QdrantSnapshots:
    """SnapshotsPort."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    async def count(self, collection: str) -> int | None:
        if not await self.gateway.collection_exists(collection):
            return None
        return await VectorOperations(self.gateway, collection).count(exact=True)

    async def create_snapshot(self, collection: str) -> dict[str, Any]:
        description = await self.gateway.create_snapshot(collection, timeout_seconds=TRANSFER_TIMEOUT_SECONDS)
        return description.model_dump(mode="json")

    async def delete_snapshot(self, collection: str, snapshot: str) -> None:
        await self.gateway.delete_snapshot(collection, snapshot)

    async def metadata(self, collection: str) -> dict[str, Any] | None:
        if not await self.gateway.collection_exists(collection):
            return None
        return dict((await self.gateway.get_collection(collection)).config.metadata or {})

    async def set_metadata(self, collection: str, metadata: dict[str, Any]) -> None:
        await self.gateway.update_collection(collection, models.UpdateCollection(metadata=metadata))

    async def recover(self, collection: str, location: str, checksum: str | None, api_key: str | None) -> None:
        await self.gateway.recover_snapshot(
            collection, location, checksum=checksum, api_key=api_key, timeout_seconds=TRANSFER_TIMEOUT_SECONDS
        )

    async def placement(self, collection: str) -> dict[str, Any]:
        return (await self.gateway.collection_cluster(collection)).model_dump(mode="json", exclude_none=True)
