"""What the reconcilers need from a Qdrant connection: collection-level calls in Qdrant's own JSON.

The qdrant layer implements it on the pooled, retried, circuit-broken client; unit tests use a fake.
Errors are the qdrant layer's typed errors (each carries the condition `reason` it maps to).
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import TypeAdapter
from qdrant_client import models

from ..qdrant.errors import NotFound
from ..qdrant.gateway import QdrantGateway


class CollectionGateway(Protocol):
    async def get_collection(self, name: str) -> dict[str, Any] | None:
        """GET /collections/{name} result, or None when it does not exist."""

    async def create_collection(self, name: str, body: dict[str, Any]) -> None: ...

    async def update_collection(self, name: str, body: dict[str, Any]) -> None: ...

    async def delete_collection(self, name: str) -> None:
        """Succeeds when the collection is already gone."""

    async def create_payload_index(self, name: str, field: str, schema: dict[str, Any]) -> None: ...

    async def delete_payload_index(self, name: str, field: str) -> None: ...

    async def list_aliases(self) -> dict[str, str]:
        """Every alias on the server -> its collection."""

    async def update_aliases(self, actions: list[dict[str, Any]]) -> None:
        """POST /collections/aliases: the actions apply atomically."""


class QdrantCollections:
    """CollectionGateway on the qdrant layer's QdrantGateway: Qdrant's JSON in, qdrant-client models out."""

    _aliases = TypeAdapter(list[models.AliasOperations])

    def __init__(self, gateway: QdrantGateway):
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

    async def create_payload_index(self, name: str, field: str, schema: dict[str, Any]) -> None:
        params = TypeAdapter(models.PayloadSchemaParams).validate_python(schema)
        await self.gateway.create_payload_index(name, field, params)

    async def delete_payload_index(self, name: str, field: str) -> None:
        await self.gateway.delete_payload_index(name, field)

    async def list_aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in await self.gateway.list_aliases()}

    async def update_aliases(self, actions: list[dict[str, Any]]) -> None:
        await self.gateway.update_aliases(self._aliases.validate_python(actions))
