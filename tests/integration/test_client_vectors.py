"""Vector operations through the gateway round-trip on a real Qdrant REST server."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
from qdrant_client import models

from collection_operator.api.connection import QdrantConnectionSpec
from collection_operator.config import resolve
from collection_operator.qdrant import NotFound, QdrantGateway, Search, VectorOperations
from tests.fixtures.qdrant import QdrantServer

pytestmark = pytest.mark.integration

COLLECTION = "client-vectors"
DIM = 8


@pytest.fixture
async def vectors(qdrant_server: QdrantServer) -> AsyncIterator[VectorOperations]:
    settings = resolve(QdrantConnectionSpec(url=qdrant_server.url, environment="Testing"))
    gateway = QdrantGateway(qdrant_server.url, settings, name="vectors", api_key=qdrant_server.api_key)
    await gateway.delete_collection(COLLECTION)
    await gateway.create_collection(COLLECTION, {"vectors": {"size": DIM, "distance": "Cosine"}})
    await gateway.create_payload_index(COLLECTION, "group", "keyword")
    try:
        yield VectorOperations(gateway, COLLECTION)
    finally:
        await gateway.delete_collection(COLLECTION)
        await gateway.aclose()


def points(count: int, seed: int = 7) -> list[models.PointStruct]:
    rng = random.Random(seed)
    return [
        models.PointStruct(
            id=i, vector=[rng.uniform(-1, 1) for _ in range(DIM)], payload={"group": "even" if i % 2 == 0 else "odd"}
        )
        for i in range(count)
    ]


async def test_insert_search_count_delete(vectors: VectorOperations) -> None:
    data = points(250)
    await vectors.upsert(models.PointStruct(id=1000, vector=[1.0] + [0.0] * (DIM - 1), payload={"group": "one"}))
    assert await vectors.upsert_many(data, batch_size=100, concurrency=3) == 250
    assert await vectors.count() == 251

    nearest = await vectors.search(Search(data[10].vector, limit=5, hnsw_ef=128))
    assert nearest[0].id == 10 and nearest[0].score == pytest.approx(1.0, abs=1e-4)

    odd = models.Filter(must=[models.FieldCondition(key="group", match=models.MatchValue(value="odd"))])
    hits = await vectors.search(Search(data[10].vector, limit=20, filter=odd))
    assert hits and all(hit.payload and hit.payload["group"] == "odd" for hit in hits)

    close = await vectors.search(Search(data[10].vector, limit=50, score_threshold=0.9))
    assert close and all(hit.score >= 0.9 for hit in close)

    batch = await vectors.search_many([Search(p.vector, limit=1) for p in data[:12]])
    assert [result[0].id for result in batch] == list(range(12))

    assert await vectors.count(odd) == 125
    await vectors.delete(ids=[0, 2, 4])
    assert await vectors.count() == 248
    await vectors.delete(filter=odd)
    assert await vectors.count() == 123


async def test_update_vectors_and_payload(vectors: VectorOperations) -> None:
    await vectors.upsert_many(points(4))
    await vectors.update_vectors([models.PointVectors(id=3, vector=[0.0] * (DIM - 1) + [1.0])])
    await vectors.set_payload({"tag": "x"}, ids=[3])
    hits = await vectors.search(Search([0.0] * (DIM - 1) + [1.0], limit=1))
    assert hits[0].id == 3 and hits[0].payload == {"group": "odd", "tag": "x"}


async def test_operations_on_a_missing_collection_are_not_found(qdrant_server: QdrantServer) -> None:
    settings = resolve(QdrantConnectionSpec(url=qdrant_server.url, environment="Testing"))
    async with QdrantGateway(qdrant_server.url, settings, name="missing", api_key=qdrant_server.api_key) as gateway:
        with pytest.raises(NotFound):
            await VectorOperations(gateway, "no-such-collection").count()
