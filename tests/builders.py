"""Builders of the objects tests apply: one minimal VectorCollection spec that each test extends."""

from __future__ import annotations

from typing import Any


def vectors(size: int = 4, distance: str = "Dot") -> list[dict[str, Any]]:
    """One unnamed dense vector: what a collection without named vectors has."""
    return [{"size": size, "distance": distance}]


def collection_spec(connection: str = "main", /, **fields: Any) -> dict[str, Any]:
    """The minimal VectorCollection spec: `vectors()` over the QdrantConnection `connection`. `fields`, by
    their wire names (collectionName=..., hnsw=...), are added to it or replace its own."""
    return {"connectionRef": {"name": connection}, "vectors": vectors(), **fields}
