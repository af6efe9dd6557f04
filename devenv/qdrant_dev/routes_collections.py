"""Collections, aliases, the collection's cluster view and payload indexes."""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
from qdrant_client.http import models as m
from starlette.requests import Request

from devenv.qdrant_dev.errors import ApiError
from devenv.qdrant_dev.rest import RouteHandlers, _body, _check_name


class CollectionRoutes(RouteHandlers):
    async def list_collections(self, request: Request) -> Any:
        return {"collections": [{"name": n} for n in sorted(self.engine.collections)]}

    async def get_collection(self, request: Request, collection_name: str) -> Any:
        return self.engine.resolve(collection_name).info()

    async def create_collection(self, request: Request, collection_name: str) -> Any:
        _check_name(collection_name)
        req = await _body(request, m.CreateCollection)
        _validate_vectors(req.vectors)
        _validate_strict_mode(req.strict_mode_config)
        _validate_sparse(req.sparse_vectors)
        self.engine.create(collection_name, req)
        delay = self.state.faults.create_timeout_but_applies
        if delay:
            await asyncio.sleep(delay)  # the collection exists already; only the answer is late
        return True

    async def update_collection(self, request: Request, collection_name: str) -> Any:
        req = await _body(request, m.UpdateCollection)
        _validate_strict_mode(req.strict_mode_config)
        _validate_sparse(req.sparse_vectors)
        self.engine.update(collection_name, req)
        return True

    async def delete_collection(self, request: Request, collection_name: str) -> Any:
        return self.engine.delete(collection_name)

    async def collection_exists(self, request: Request, collection_name: str) -> Any:
        return {"exists": collection_name in self.engine.collections}

    async def collection_aliases(self, request: Request, collection_name: str) -> Any:
        coll = self.engine.resolve(collection_name)
        return {
            "aliases": [
                {"alias_name": a, "collection_name": c}
                for a, c in sorted(self.engine.aliases.items())
                if c == coll.name
            ]
        }

    async def list_aliases(self, request: Request) -> Any:
        return {"aliases": [{"alias_name": a, "collection_name": c} for a, c in sorted(self.engine.aliases.items())]}

    async def change_aliases(self, request: Request) -> Any:
        self.engine.change_aliases(await _body(request, m.ChangeAliasesOperation))
        return True

    async def collection_cluster(self, request: Request, collection_name: str) -> Any:
        coll = self.engine.resolve(collection_name)
        return {
            "peer_id": self.engine.peer_id,
            "shard_count": coll.shard_count,
            "local_shards": [
                {"shard_id": i, "points_count": s.info().points_count, "state": "Active"}
                for i, s in enumerate(coll.shards)
            ],
            "remote_shards": [],
            "shard_transfers": [],
        }

    async def create_vector_name(self, request: Request, collection_name: str, vector_name: str) -> Any:
        _check_vector_name(vector_name)
        req = _vector_name_config(await _body(request, _json_value))
        if isinstance(req, m.DenseVectorNameConfig) and not 1 <= req.dense.size <= 65536:
            raise ApiError(
                422,
                f"Validation error in JSON body: [dense.size: value {req.dense.size} invalid, must be from 1 to 65536]",
            )
        self.engine.create_vector_name(collection_name, vector_name, req)
        return self._update_result(request)

    async def delete_vector_name(self, request: Request, collection_name: str, vector_name: str) -> Any:
        _check_vector_name(vector_name)
        self.engine.delete_vector_name(collection_name, vector_name)
        return self._update_result(request)

    async def create_index(self, request: Request, collection_name: str) -> Any:
        self.engine.create_index(collection_name, await _body(request, m.CreateFieldIndex))
        return self._update_result(request)

    async def delete_index(self, request: Request, collection_name: str, field_name: str) -> Any:
        self.engine.delete_index(collection_name, field_name)
        return self._update_result(request)


_json_value: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any)


def _vector_name_config(data: Any) -> m.DenseVectorNameConfig | m.SparseVectorNameConfig:
    """Qdrant's untagged enum: the first variant whose key is there wins ("dense" before "sparse"), other keys
    are ignored."""
    for key, model in (("dense", m.DenseVectorNameConfig), ("sparse", m.SparseVectorNameConfig)):
        if isinstance(data, dict) and key in data:
            try:
                return model.model_validate({key: data[key]})
            except pydantic.ValidationError:
                pass
    raise ApiError(400, "Format error in JSON body: data did not match any variant of untagged enum VectorNameConfig")


# Qdrant 1.19's common::validation: vector names become directory names.
_INVALID_NAME_CHARS = ("<", ">", ":", '"', "/", "\\", "|", "?", "*", "\0", "\x1f")


def _check_vector_name(name: str) -> None:
    if len(name.encode()) > 200:
        raise ApiError(
            422, "Validation error in path parameters: [vector_name: vector name must be at most 200 bytes long]"
        )
    bad = next((c for c in _INVALID_NAME_CHARS if c in name), None)
    if bad is not None:
        raise ApiError(
            422, f'Validation error in path parameters: [vector_name: vector name cannot contain "{bad}" char]'
        )


def _validate_vectors(vectors: Any) -> None:
    params = [vectors] if isinstance(vectors, m.VectorParams) else list((vectors or {}).values())
    for p in params:
        if p.size < 1:
            raise ApiError(
                422, f"Validation error in JSON body: [vectors.size: value {p.size} invalid, must be 1 or larger]"
            )


def _validate_sparse(sparse: dict[str, m.SparseVectorParams] | None) -> None:
    for i, params in enumerate((sparse or {}).values()):
        datatype = params.index.datatype if params.index else None
        if datatype is not None and datatype not in (m.Datatype.FLOAT32, m.Datatype.FLOAT16, m.Datatype.UINT8):
            raise ApiError(
                422,
                f"Validation error in JSON body: [sparse_vectors[{i}].index.datatype: sparse vectors do not support "
                f"the `{datatype.value}` datatype]",
            )


# Qdrant's own bounds on strict mode limits (qdrant-client's models have none).
_STRICT_MINIMUM_ONE = ("max_query_limit", "max_timeout", "read_rate_limit", "write_rate_limit", "max_points_count")


def _validate_strict_mode(strict: m.StrictModeConfig | None) -> None:
    if strict is None:
        return
    given = strict.model_dump(exclude_none=True)
    errors = [
        f"strict_mode_config.{key}: value {given[key]} invalid, must be 1 or larger"
        for key in _STRICT_MINIMUM_ONE
        if given.get(key, 1) < 1
    ]
    percent = given.get("max_resident_memory_percent")
    if percent is not None and not 1 <= percent <= 100:
        errors.append(f"strict_mode_config.max_resident_memory_percent: value {percent} invalid, must be from 1 to 100")
    if errors:
        raise ApiError(422, f"Validation error in JSON body: [{', '.join(errors)}]")
