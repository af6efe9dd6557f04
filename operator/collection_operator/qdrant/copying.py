"""Copying points between two collections of one Qdrant, a page at a time, for a blue/green migration: a first
pass that upserts every point, catch-up passes that write only what differs, and pruning of points the source
no longer has. Each page is resumable from the point id it started at (upserts by id are idempotent)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .calls import path
from .client import Gateway

PointId = int | str
Record = dict[str, Any]  # a point as Qdrant's JSON has it: id, payload, vector


# Two vectors are the same point's when their directions agree this closely: a copy into a collection with
# another datatype (float16), or with Cosine distance (Qdrant normalises on insert), never reads back bit-equal.
SAME_DIRECTION = 0.9999


async def count_points(gateway: Gateway, collection: str) -> int:
    result = await gateway.request(
        "count", "POST", path("collections", collection, "points", "count"), body={"exact": True}, idempotent=True
    )
    return int(result["count"])


async def _page(
    gateway: Gateway, collection: str, start: PointId | None, limit: int, vectors: Sequence[str] | bool
) -> tuple[list[Record], PointId | None]:
    body: dict[str, Any] = {
        "limit": limit,
        "with_payload": vectors is not False,
        "with_vector": list(vectors) if not isinstance(vectors, bool) else vectors,
    }
    if start is not None:
        body["offset"] = start
    result = await gateway.request(
        "scroll", "POST", path("collections", collection, "points", "scroll"), body=body, idempotent=True
    )
    return list(result["points"]), result.get("next_page_offset")


async def first_points(gateway: Gateway, collection: str, limit: int) -> list[Record]:
    """The first `limit` points by id, with payloads and vectors."""
    return (await _page(gateway, collection, None, limit, True))[0]


async def _retrieve(gateway: Gateway, collection: str, ids: list[PointId], *, full: bool) -> dict[PointId, Record]:
    found = await gateway.request(
        "retrieve",
        "POST",
        path("collections", collection, "points"),
        body={"ids": ids, "with_payload": full, "with_vector": full},
        idempotent=True,
    )
    return {record["id"]: record for record in found}


async def copy_page(
    gateway: Gateway,
    source: str,
    target: str,
    start: PointId | None,
    limit: int,
    *,
    vectors: Sequence[str] | None,
    only_changed: bool,
) -> tuple[int, int, PointId | None]:
    """One page of `source` from point id `start` into `target`: every point, or (`only_changed`) only those
    missing or different there. `vectors`: the named vectors to carry (None: all). Returns (read, written,
    the id the next page starts at, None after the last)."""
    records, following = await _page(gateway, source, start, limit, True if vectors is None else vectors)
    read = len(records)
    if only_changed and records:
        have = await _retrieve(gateway, target, [r["id"] for r in records], full=True)
        records = [r for r in records if not same_point(r, have.get(r["id"]))]
    if records:
        points = [{"id": r["id"], "vector": r.get("vector") or {}, "payload": r.get("payload") or {}} for r in records]
        await gateway.request(
            "upsert_points",
            "PUT",
            path("collections", target, "points"),
            body={"points": points},
            params={"wait": True},
            idempotent=True,
        )
    return read, len(records), following


async def prune_page(
    gateway: Gateway, source: str, target: str, start: PointId | None, limit: int
) -> tuple[int, int, PointId | None]:
    """One page of `target`'s ids from `start`: delete those `source` no longer has. Returns (read, deleted,
    next start)."""
    records, following = await _page(gateway, target, start, limit, False)
    ids = [r["id"] for r in records]
    kept = await _retrieve(gateway, source, ids, full=False) if ids else {}
    gone = [i for i in ids if i not in kept]
    if gone:
        await gateway.request(
            "delete_points",
            "POST",
            path("collections", target, "points", "delete"),
            body={"points": gone},
            params={"wait": True},
            idempotent=True,
        )
    return len(ids), len(gone), following


def same_point(a: Record, b: Record | None) -> bool:
    return (
        b is not None
        and (a.get("payload") or {}) == (b.get("payload") or {})
        and _same_vectors(a.get("vector"), b.get("vector"))
    )


def _same_vectors(a: Any, b: Any) -> bool:
    """A point's vectors: one unnamed dense vector, or named ones (each dense, multi or sparse)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() <= b.keys() and all(_same_vector(v, b[k]) for k, v in a.items())
    return _same_vector(a, b)


def _same_vector(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):  # sparse: {"indices": [...], "values": [...]}
        return a.get("indices") == b.get("indices") and _same_direction(a.get("values", []), b.get("values", []))
    if isinstance(a, list) and isinstance(b, list) and a and isinstance(a[0], list):
        return len(a) == len(b) and all(_same_direction(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, list) and isinstance(b, list):
        return _same_direction(a, b)
    return bool(a == b)


def _same_direction(a: Sequence[float], b: Sequence[float]) -> bool:
    """Same direction, and the same length unless the copy is a unit vector (normalised by a Cosine target)."""
    if len(a) != len(b):
        return False
    norm_a, norm_b = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    if norm_a == 0 or norm_b == 0:
        return norm_a == norm_b
    lengths_agree = math.isclose(norm_a, norm_b, rel_tol=0.01) or math.isclose(norm_b, 1.0, rel_tol=0.01)
    return lengths_agree and sum(x * y for x, y in zip(a, b, strict=True)) / (norm_a * norm_b) >= SAME_DIRECTION
