"""The reconcilers' Qdrant ports (reconcile/ports.py) on a Gateway: Qdrant's JSON in and out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from . import copying
from .client import Gateway
from .copying import PointId
from .errors import NotFound, QdrantError

# Snapshots and recoveries copy whole collections: far longer than an ordinary request's budget.
TRANSFER_TIMEOUT_SECONDS = 3600.0


def without_nulls(value: Any) -> Any:
    """Qdrant's JSON without its null fields: what the reconcilers read treats a field left out and a null
    alike, and compares fewer keys."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


class QdrantCollections:
    """CollectionsPort."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    async def get_collection(self, name: str) -> dict[str, Any] | None:
        try:
            info = await self.gateway.get_collection(name)
        except NotFound:
            return None
        result: dict[str, Any] = without_nulls(info)
        return result

    async def create_collection(self, name: str, body: dict[str, Any]) -> None:
        await self.gateway.create_collection(name, body)

    async def update_collection(self, name: str, body: dict[str, Any]) -> None:
        await self.gateway.update_collection(name, body)

    async def delete_collection(self, name: str) -> None:
        await self.gateway.delete_collection(name)

    async def list_collections(self) -> list[str]:
        return await self.gateway.list_collections()

    async def create_vector(self, name: str, vector: str, config: dict[str, Any]) -> None:
        await self.gateway.create_vector_name(name, vector, config)

    async def delete_vector(self, name: str, vector: str) -> None:
        await self.gateway.delete_vector_name(name, vector)

    async def create_payload_index(self, name: str, field: str, schema: dict[str, Any]) -> None:
        await self.gateway.create_payload_index(name, field, schema)

    async def delete_payload_index(self, name: str, field: str) -> None:
        await self.gateway.delete_payload_index(name, field)

    async def list_aliases(self) -> dict[str, str]:
        return {a["alias_name"]: a["collection_name"] for a in await self.gateway.list_aliases()}

    async def update_aliases(self, actions: list[dict[str, Any]]) -> None:
        await self.gateway.update_aliases(actions)

    async def cluster_view(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = without_nulls(await self.gateway.collection_cluster(name))
        return result

    async def change_placement(self, name: str, operation: dict[str, Any]) -> None:
        await self.gateway.update_collection_cluster(name, operation)

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
        return await copying.count_points(self.gateway, collection)

    async def create_snapshot(self, collection: str) -> dict[str, Any]:
        return await self.gateway.create_snapshot(collection, timeout_seconds=TRANSFER_TIMEOUT_SECONDS)

    async def delete_snapshot(self, collection: str, snapshot: str) -> None:
        await self.gateway.delete_snapshot(collection, snapshot)

    def download_snapshot(self, collection: str, snapshot: str) -> AsyncIterator[bytes]:
        return self.gateway.download_snapshot(collection, snapshot, timeout_seconds=TRANSFER_TIMEOUT_SECONDS)

    async def metadata(self, collection: str) -> dict[str, Any] | None:
        if not await self.gateway.collection_exists(collection):
            return None
        return dict((await self.gateway.get_collection(collection))["config"].get("metadata") or {})

    async def set_metadata(self, collection: str, metadata: dict[str, Any]) -> None:
        await self.gateway.update_collection(collection, {"metadata": metadata})

    async def recover(self, collection: str, location: str, checksum: str | None, api_key: str | None) -> None:
        await self.gateway.recover_snapshot(
            collection, location, checksum=checksum, api_key=api_key, timeout_seconds=TRANSFER_TIMEOUT_SECONDS
        )

    async def placement(self, collection: str) -> dict[str, Any]:
        result: dict[str, Any] = without_nulls(await self.gateway.collection_cluster(collection))
        return result

    async def first_points(self, collection: str, limit: int) -> list[dict[str, Any]]:
        return await copying.first_points(self.gateway, collection, limit)

    async def delete_collection(self, collection: str) -> None:
        await self.gateway.delete_collection(collection)

    async def nodes(self) -> dict[str, str]:
        # Each endpoint names itself: GET /cluster's peer_id on that node. The peers' URIs in it are the p2p
        # addresses, which need not resemble the REST URLs the connection lists.
        found: dict[str, str] = {}
        for url in self.gateway.urls:
            try:
                info = await self.gateway.node(url).cluster_info()
            except QdrantError:
                continue  # a node that does not answer now cannot take or serve a shard snapshot now
            if info and info.get("peer_id") is not None:
                found[str(info["peer_id"])] = url
        return found

    async def create_shard_snapshot(self, collection: str, shard: int, node: str) -> dict[str, Any]:
        return await self.gateway.node(node).create_snapshot(
            collection, shard=shard, timeout_seconds=TRANSFER_TIMEOUT_SECONDS
        )

    async def delete_shard_snapshot(self, collection: str, shard: int, snapshot: str, node: str) -> None:
        await self.gateway.node(node).delete_snapshot(collection, snapshot, shard=shard)

    def download_shard_snapshot(self, collection: str, shard: int, snapshot: str, node: str) -> AsyncIterator[bytes]:
        return self.gateway.node(node).download_snapshot(
            collection, snapshot, shard=shard, timeout_seconds=TRANSFER_TIMEOUT_SECONDS
        )

    async def recover_shard(
        self, collection: str, shard: int, node: str, location: str, checksum: str | None, api_key: str | None
    ) -> None:
        await self.gateway.node(node).recover_snapshot(
            collection,
            location,
            shard=shard,
            checksum=checksum,
            api_key=api_key,
            timeout_seconds=TRANSFER_TIMEOUT_SECONDS,
        )
