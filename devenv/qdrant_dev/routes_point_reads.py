"""Point reads: retrieve, count, scroll and query, gathered from every shard."""

from __future__ import annotations

import uuid
from typing import Any

import qdrant_edge as qe
from qdrant_client.http import models as m
from starlette.requests import Request

from devenv.qdrant_dev import convert
from devenv.qdrant_dev.collection import Collection
from devenv.qdrant_dev.errors import ApiError
from devenv.qdrant_dev.rest import RouteHandlers, _body, _engine_call, _wrap


def _id_out(pid: Any) -> Any:
    return str(pid) if isinstance(pid, uuid.UUID) else pid


def _record(rec: Any) -> dict[str, Any]:
    return {"id": _id_out(rec.id), "payload": rec.payload, "vector": convert.vector_out(rec.vector)}


def _scored(p: Any) -> dict[str, Any]:
    out = {
        "id": _id_out(p.id),
        "version": p.version,
        "score": p.score,
        "payload": p.payload,
        "vector": convert.vector_out(p.vector),
    }
    if p.order_value is not None:
        out["order_value"] = p.order_value
    return out


def _id_key(pid: Any) -> tuple[int, Any]:
    pid = _id_out(pid)
    return (0, pid) if isinstance(pid, int) else (1, pid)  # Qdrant lists numeric ids before UUIDs


class PointReadRoutes(RouteHandlers):
    def _retrieve(self, coll: Collection, ids: list[Any], with_payload: Any, with_vector: Any) -> list[dict[str, Any]]:
        found: dict[Any, dict[str, Any]] = {}
        parsed = [_wrap(convert.point_id, i) for i in ids]
        by_shard: dict[int, list[Any]] = {}
        for pid in parsed:
            by_shard.setdefault(coll.shard_of(pid), []).append(pid)
        payload = _wrap(convert.with_payload, with_payload)
        for shard, shard_ids in by_shard.items():
            for rec in _engine_call(coll.shards[shard].retrieve, shard_ids, payload, with_vector):
                found[_id_out(rec.id)] = _record(rec)
        return [found[pid] for pid in dict.fromkeys(parsed) if pid in found]

    async def retrieve(self, request: Request, collection_name: str) -> Any:
        coll = self.engine.resolve(collection_name)
        req = await _body(request, m.PointRequest)
        with_payload = True if req.with_payload is None else req.with_payload
        return self._retrieve(coll, req.ids, with_payload, bool(req.with_vector))

    async def get_point(self, request: Request, collection_name: str, id: str) -> Any:
        coll = self.engine.resolve(collection_name)
        records = self._retrieve(coll, [int(id) if id.isdigit() else id], True, True)
        if not records:
            raise ApiError(404, f"Not found: No point with id {id} found")
        return records[0]

    async def count(self, request: Request, collection_name: str) -> Any:
        coll = self.engine.resolve(collection_name)
        req = await _body(request, m.CountRequest)
        flt = _wrap(convert.filter_in, req.filter)
        exact = True if req.exact is None else req.exact
        return {"count": sum(_engine_call(s.count, qe.CountRequest(filter=flt, exact=exact)) for s in coll.shards)}

    async def scroll(self, request: Request, collection_name: str) -> Any:
        coll = self.engine.resolve(collection_name)
        req = await _body(request, m.ScrollRequest)
        limit = 10 if req.limit is None else req.limit
        with_payload = _wrap(convert.with_payload, True if req.with_payload is None else req.with_payload)
        order = _wrap(convert.order_by, req.order_by) if req.order_by is not None else None
        offset = _wrap(convert.point_id, req.offset) if req.offset is not None else None
        flt = _wrap(convert.filter_in, req.filter)
        records: list[Any] = []
        for shard in coll.shards:
            page, _ = _engine_call(
                shard.scroll,
                qe.ScrollRequest(
                    offset=offset,
                    limit=limit + 1,
                    filter=flt,
                    with_payload=with_payload,
                    with_vector=bool(req.with_vector) if not isinstance(req.with_vector, list) else req.with_vector,
                    order_by=order,
                ),
            )
            records.extend(page)
        if order is None:
            records.sort(key=lambda r: _id_key(r.id))
            next_offset = _id_out(records[limit].id) if len(records) > limit else None
        else:
            records.sort(key=lambda r: r.order_value, reverse=order.direction == qe.Direction.Desc)
            next_offset = None  # as Qdrant: ordered scrolls page with start_from, not offsets
        return {"points": [_record(r) for r in records[:limit]], "next_page_offset": next_offset}

    def _query(self, coll: Collection, req: m.QueryRequest) -> dict[str, Any]:
        limit = 10 if req.limit is None else req.limit
        offset = req.offset or 0
        engine_req = _wrap(convert.query_request, req, limit + offset)
        hits: list[Any] = []
        for shard in coll.shards:
            hits.extend(_engine_call(shard.query, engine_req))
        if len(coll.shards) > 1:
            hits.sort(key=lambda p: p.score, reverse=not _ascending(coll, req))
        return {"points": [_scored(p) for p in hits[offset : offset + limit]]}

    async def query(self, request: Request, collection_name: str) -> Any:
        coll = self.engine.resolve(collection_name)
        return self._query(coll, await _body(request, m.QueryRequest))

    async def query_batch(self, request: Request, collection_name: str) -> Any:
        coll = self.engine.resolve(collection_name)
        req = await _body(request, m.QueryRequestBatch)
        return [self._query(coll, q) for q in req.searches]


def _ascending(coll: Collection, req: m.QueryRequest) -> bool:
    """Distances (Euclid, Manhattan) rank smallest first, like Qdrant; similarities largest first."""
    if isinstance(req.query, m.OrderByQuery):
        order = req.query.order_by
        return isinstance(order, str) or order.direction != m.Direction.DESC
    if isinstance(req.query, m.FusionQuery):
        return False
    vectors = coll.config.params.vectors
    params = vectors if isinstance(vectors, m.VectorParams) else (vectors or {}).get(req.using or "")
    return params is not None and params.distance in (m.Distance.EUCLID, m.Distance.MANHATTAN)
