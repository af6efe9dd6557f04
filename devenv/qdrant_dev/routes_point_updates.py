"""Point updates: upsert, delete, vectors and payload, split by shard as Qdrant splits them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
import qdrant_edge as qe
from qdrant_client.http import models as m
from starlette.requests import Request

from devenv.qdrant_dev import convert
from devenv.qdrant_dev.collection import Collection
from devenv.qdrant_dev.errors import ApiError
from devenv.qdrant_dev.rest import RouteHandlers, _body, _engine_call, _wrap

_points_adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(m.PointInsertOperations)
_selector_adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(m.PointsSelector)


class PointUpdateRoutes(RouteHandlers):
    async def upsert(self, request: Request, collection_name: str) -> Any:
        coll = self.engine.resolve(collection_name)
        req = await _body(request, _points_adapter)
        if isinstance(req, m.PointsBatch):
            b = req.batch
            vectors = b.vectors
            per_point: list[Any]
            payloads: list[Any] = b.payloads or [None] * len(b.ids)
            if isinstance(vectors, dict):
                per_point = [{k: v[i] for k, v in vectors.items()} for i in range(len(b.ids))]
            else:
                per_point = list(vectors)
            points = [m.PointStruct(id=pid, vector=per_point[i], payload=payloads[i]) for i, pid in enumerate(b.ids)]
        else:
            points = req.points
        by_shard: dict[int, list[qe.Point]] = {}
        for p in points:
            pid = _wrap(convert.point_id, p.id)
            point = qe.Point(pid, _wrap(convert.vector_in, p.vector), p.payload)
            by_shard.setdefault(coll.shard_of(pid), []).append(point)
        condition = _wrap(convert.filter_in, req.update_filter)
        mode = getattr(
            qe.UpdateMode,
            {"insert_only": "InsertOnly", "update_only": "UpdateOnly"}.get(
                req.update_mode.value if req.update_mode else "", "Upsert"
            ),
        )
        for shard, pts in by_shard.items():
            _engine_call(coll.apply, shard, qe.UpdateOperation.upsert_points(pts, condition, mode))
        self.engine.after_write(coll)
        return self._update_result(request)

    async def delete_points(self, request: Request, collection_name: str) -> Any:
        coll = self.engine.resolve(collection_name)
        selector = await _body(request, _selector_adapter)
        if isinstance(selector, m.PointIdsList):
            by_shard: dict[int, list[Any]] = {}
            for raw in selector.points:
                pid = _wrap(convert.point_id, raw)
                by_shard.setdefault(coll.shard_of(pid), []).append(pid)
            for shard, ids in by_shard.items():
                _engine_call(coll.apply, shard, qe.UpdateOperation.delete_points(ids))
        else:
            flt = _wrap(convert.filter_in, selector.filter)
            _engine_call(coll.apply_all, lambda: qe.UpdateOperation.delete_points_by_filter(flt))
        return self._update_result(request)

    # Updates of existing points: the engine's own operations, split by shard like Qdrant splits them. Ids go
    # to the shard that holds them; a filter goes to every shard. As in Qdrant, an update by ids changes the
    # points that exist and then answers 404 for the first missing one.

    def _apply_by_ids(self, coll: Collection, ids: list[Any], make_op: Callable[[list[Any]], Any]) -> None:
        by_shard: dict[int, list[Any]] = {}
        for raw in ids:
            pid = _wrap(convert.point_id, raw)
            by_shard.setdefault(coll.shard_of(pid), []).append(pid)
        failure: ApiError | None = None
        for shard, shard_ids in by_shard.items():  # every shard applies its part, as Qdrant's shards do
            try:
                _engine_call(coll.apply, shard, make_op(shard_ids))
            except ApiError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def _apply_selected(
        self,
        coll: Collection,
        ids: list[Any] | None,
        flt: m.Filter | None,
        by_ids: Callable[[list[Any]], Any],
        by_filter: Callable[[Any], Any],
    ) -> None:
        """Points given by ids take precedence over a filter, as in Qdrant's payload operations."""
        if ids is not None:
            self._apply_by_ids(coll, ids, by_ids)
        elif flt is not None:
            engine_filter = _wrap(convert.filter_in, flt)
            _engine_call(coll.apply_all, lambda: by_filter(engine_filter))
        else:
            raise ApiError(400, "Json deserialize error: Either list of point ids or filter must be provided")

    async def update_vectors(self, request: Request, collection_name: str) -> Any:
        coll = self.engine.resolve(collection_name)
        req = await _body(request, m.UpdateVectors)
        if not req.points:
            raise ApiError(422, "Validation error in JSON body: [points: must not be empty]")
        vectors: dict[Any, Any] = {}
        for p in req.points:  # several entries for one id merge, later vectors winning
            pid = _wrap(convert.point_id, p.id)
            given = _wrap(convert.vector_in, p.vector)
            if isinstance(given, dict) and isinstance(vectors.get(pid), dict):
                given = {**vectors[pid], **given}
            vectors[pid] = given
        condition = _wrap(convert.filter_in, req.update_filter)
        self._apply_by_ids(
            coll,
            list(vectors),
            lambda ids: qe.UpdateOperation.update_vectors([qe.PointVectors(i, vectors[i]) for i in ids], condition),
        )
        self.engine.after_write(coll)
        return self._update_result(request)

    async def delete_vectors(self, request: Request, collection_name: str) -> Any:
        coll = self.engine.resolve(collection_name)
        req = await _body(request, m.DeleteVectors)
        if not req.vector:
            raise ApiError(422, "Validation error in JSON body: [vector: must not be empty]")
        names = list(dict.fromkeys(req.vector))
        self._apply_selected(
            coll,
            req.points,
            req.filter,
            lambda ids: qe.UpdateOperation.delete_vectors(ids, names),
            lambda flt: qe.UpdateOperation.delete_vectors_by_filter(flt, names),
        )
        return self._update_result(request)

    async def set_payload(self, request: Request, collection_name: str) -> Any:
        ops = qe.UpdateOperation
        return await self._write_payload(request, collection_name, ops.set_payload, ops.set_payload_by_filter)

    async def overwrite_payload(self, request: Request, collection_name: str) -> Any:
        ops = qe.UpdateOperation
        return await self._write_payload(
            request, collection_name, ops.overwrite_payload, ops.overwrite_payload_by_filter
        )

    async def _write_payload(self, request: Request, collection_name: str, by_ids: Any, by_filter: Any) -> Any:
        """set (merge) and overwrite share their request shape; only the engine operation differs."""
        coll = self.engine.resolve(collection_name)
        req = await _body(request, m.SetPayload)
        self._apply_selected(
            coll,
            req.points,
            req.filter,
            lambda ids: by_ids(ids, req.payload, req.key),
            lambda flt: by_filter(flt, req.payload, req.key),
        )
        return self._update_result(request)

    async def delete_payload(self, request: Request, collection_name: str) -> Any:
        coll = self.engine.resolve(collection_name)
        req = await _body(request, m.DeletePayload)
        self._apply_selected(
            coll,
            req.points,
            req.filter,
            lambda ids: qe.UpdateOperation.delete_payload(ids, list(req.keys)),
            lambda flt: qe.UpdateOperation.delete_payload_by_filter(flt, list(req.keys)),
        )
        return self._update_result(request)

    async def clear_payload(self, request: Request, collection_name: str) -> Any:
        coll = self.engine.resolve(collection_name)
        selector = await _body(request, _selector_adapter)
        if isinstance(selector, m.PointIdsList):
            self._apply_by_ids(coll, selector.points, qe.UpdateOperation.clear_payload)
        else:
            flt = _wrap(convert.filter_in, selector.filter)
            _engine_call(coll.apply_all, lambda: qe.UpdateOperation.clear_payload_by_filter(flt))
        return self._update_result(request)
