"""Vector operations on one collection through a Gateway, for applications: every call holds a pool lease, goes
through the breaker and is retried when idempotent (upserts by id, updates and deletes are). They run on
qdrant-client and its models, imported when first used: the operator itself never loads them."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from .client import Gateway

if TYPE_CHECKING:
    from qdrant_client import models

T = TypeVar("T")

PointId = int | str


@dataclasses.dataclass(frozen=True)
class Search:
    """One nearest-neighbour query."""

    vector: Sequence[float]
    limit: int = 10
    score_threshold: float | None = None
    filter: models.Filter | None = None
    hnsw_ef: int | None = None
    using: str | None = None  # the named vector to search, None for the unnamed one
    with_payload: bool = True


class VectorOperations:
    def __init__(self, gateway: Gateway, collection: str) -> None:
        self.gateway = gateway
        self.collection = collection

    async def upsert(self, point: models.PointStruct) -> None:
        await self.upsert_many([point], batch_size=1)

    async def upsert_many(
        self, points: Sequence[models.PointStruct], *, batch_size: int = 100, concurrency: int = 4
    ) -> int:
        """Insert in batches of `batch_size`, up to `concurrency` batches in flight (also bounded by the
        pool). Returns the number of points written."""
        batches = [points[start : start + batch_size] for start in range(0, len(points), batch_size)]

        def upsert(batch: Sequence[models.PointStruct]) -> Callable[[], Awaitable[object]]:
            return lambda: self.gateway.call(
                "upsert_points",
                lambda c: c.upsert(self.collection, points=list(batch), wait=True),
                idempotent=True,  # same ids, same result
            )

        await _bounded([upsert(batch) for batch in batches], concurrency)
        return len(points)

    async def search(self, query: Search) -> list[models.ScoredPoint]:
        from qdrant_client import models

        params = models.SearchParams(hnsw_ef=query.hnsw_ef) if query.hnsw_ef is not None else None
        response = await self.gateway.call(
            "search",
            lambda c: c.query_points(
                self.collection,
                query=list(query.vector),
                using=query.using,
                limit=query.limit,
                score_threshold=query.score_threshold,
                query_filter=query.filter,
                search_params=params,
                with_payload=query.with_payload,
            ),
            idempotent=True,
        )
        return response.points

    async def search_many(self, queries: Sequence[Search], *, concurrency: int = 8) -> list[list[models.ScoredPoint]]:
        """Run the queries in parallel (bounded); results in the order of `queries`."""
        return await _bounded([functools.partial(self.search, query) for query in queries], concurrency)

    async def update_vectors(self, points: Sequence[models.PointVectors]) -> None:
        await self.gateway.call(
            "update_vectors",
            lambda c: c.update_vectors(self.collection, points=list(points), wait=True),
            idempotent=True,
        )

    async def set_payload(
        self, payload: dict[str, object], *, ids: Sequence[PointId] | None = None, filter: models.Filter | None = None
    ) -> None:
        """Merge `payload` into the points selected by ids or filter."""
        await self.gateway.call(
            "set_payload",
            lambda c: c.set_payload(self.collection, payload=payload, points=_selector(ids, filter), wait=True),
            idempotent=True,
        )

    async def delete(self, *, ids: Sequence[PointId] | None = None, filter: models.Filter | None = None) -> None:
        await self.gateway.call(
            "delete_points",
            lambda c: c.delete(self.collection, points_selector=_selector(ids, filter), wait=True),
            idempotent=True,
        )

    async def count(self, filter: models.Filter | None = None, *, exact: bool = True) -> int:
        result = await self.gateway.call(
            "count", lambda c: c.count(self.collection, count_filter=filter, exact=exact), idempotent=True
        )
        return result.count


def _selector(ids: Sequence[PointId] | None, filter: models.Filter | None) -> models.PointsSelector:
    from qdrant_client import models

    if (ids is None) == (filter is None):
        raise ValueError("select points by ids or by filter, exactly one")
    if ids is not None:
        return models.PointIdsList(points=list(ids))
    return models.FilterSelector(filter=filter)


async def _bounded(jobs: Sequence[Callable[[], Awaitable[T]]], concurrency: int) -> list[T]:
    limit = asyncio.Semaphore(concurrency)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with limit:
            return await job()

    try:
        async with asyncio.TaskGroup() as group:  # the first failure cancels the rest
            tasks = [group.create_task(run(job)) for job in jobs]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None  # callers handle one typed QdrantError, not a group
    return [task.result() for task in tasks]
