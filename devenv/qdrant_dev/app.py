"""Qdrant's REST API (the subset the operator and vector operations use) in front of qdrant-edge.

Request bodies are parsed with qdrant-client's models, which are the OpenAPI shapes; responses use
Qdrant's envelope. Test knobs live under /__dev/ (not authenticated, never counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import shutil
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pydantic
import qdrant_edge as qe
from qdrant_client.http import models as m
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Match, Route

from devenv.qdrant_dev import convert
from devenv.qdrant_dev.engine import MAX_SHARDS, ApiError, Collection, Engine, wrong_input

log = logging.getLogger("qdrant_dev")
QDRANT_VERSION = "1.19.0"
PUBLIC_PATHS = {"/", "/healthz", "/livez", "/readyz"}  # Qdrant serves these without an API key
_points_adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(m.PointInsertOperations)
_selector_adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(m.PointsSelector)


@dataclass
class Faults:
    latency_ms: int = 0
    error_rate: float = 0.0  # share of requests answered 503
    hang: bool = False  # requests wait until the fault is cleared
    create_timeout_but_applies: float = 0.0  # seconds a collection create waits *after* creating it

    def __post_init__(self) -> None:
        self.released = asyncio.Event()
        self.released.set()


@dataclass
class DevState:
    api_key: str | None = None
    read_only_api_key: str | None = None
    faults: Faults = field(default_factory=Faults)
    counts: Counter[str] = field(default_factory=Counter)
    requests: list[dict[str, Any]] = field(default_factory=list)
    stop: Callable[[], None] | None = None  # set by the CLI: stops the listener and the process

    def set_faults(self, given: dict[str, Any]) -> None:
        self.faults.released.set()  # wake hung requests; a new hang fault makes later ones wait again
        self.faults = Faults(**given)
        if self.faults.hang:
            self.faults.released.clear()


def _error(status: int, message: str, started: float) -> JSONResponse:
    return JSONResponse({"status": {"error": message}, "time": time.monotonic() - started}, status_code=status)


def _ok(result: Any, started: float) -> JSONResponse:
    return JSONResponse({"result": result, "status": "ok", "time": time.monotonic() - started})


async def _body(request: Request, model: Any) -> Any:
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"Json deserialize error: {exc}") from exc
    try:
        if isinstance(model, pydantic.TypeAdapter):
            return model.validate_python(data)
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise ApiError(400, f"Json deserialize error: {problems}") from exc


def _flag(request: Request, name: str, default: bool = False) -> bool:
    value = request.query_params.get(name)
    return default if value is None else value.lower() in ("1", "true", "yes")


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


class QdrantDevApp:
    def __init__(self, data_dir: Path, state: DevState, *, max_shards: int = MAX_SHARDS) -> None:
        self.engine = Engine(data_dir, max_shards=max_shards)
        self.state = state
        self.operation_id = 0
        r = self._route
        self.routes = [
            r("GET", "/", self.root),
            r("GET", "/healthz", self.healthz),
            r("GET", "/livez", self.livez),
            r("GET", "/readyz", self.readyz),
            r("GET", "/cluster", self.cluster),
            r("GET", "/collections", self.list_collections),
            r("GET", "/aliases", self.list_aliases),
            r("POST", "/collections/aliases", self.change_aliases, write=True),
            r("GET", "/collections/{collection_name}", self.get_collection),
            r("PUT", "/collections/{collection_name}", self.create_collection, write=True),
            r("PATCH", "/collections/{collection_name}", self.update_collection, write=True),
            r("DELETE", "/collections/{collection_name}", self.delete_collection, write=True),
            r("GET", "/collections/{collection_name}/exists", self.collection_exists),
            r("GET", "/collections/{collection_name}/aliases", self.collection_aliases),
            r("GET", "/collections/{collection_name}/cluster", self.collection_cluster),
            r("PUT", "/collections/{collection_name}/index", self.create_index, write=True),
            r("DELETE", "/collections/{collection_name}/index/{field_name}", self.delete_index, write=True),
            r("GET", "/collections/{collection_name}/snapshots", self.list_snapshots),
            r("POST", "/collections/{collection_name}/snapshots", self.create_snapshot, write=True),
            r("PUT", "/collections/{collection_name}/snapshots/recover", self.recover_snapshot, write=True),
            r("POST", "/collections/{collection_name}/snapshots/upload", self.upload_snapshot, write=True),
            r("GET", "/collections/{collection_name}/snapshots/{snapshot_name}", self.download_snapshot),
            r("DELETE", "/collections/{collection_name}/snapshots/{snapshot_name}", self.delete_snapshot, write=True),
            r("PUT", "/collections/{collection_name}/points", self.upsert, write=True),
            r("POST", "/collections/{collection_name}/points", self.retrieve),
            r("GET", "/collections/{collection_name}/points/{id}", self.get_point),
            r("POST", "/collections/{collection_name}/points/delete", self.delete_points, write=True),
            r("PUT", "/collections/{collection_name}/points/vectors", self.update_vectors, write=True),
            r("POST", "/collections/{collection_name}/points/vectors/delete", self.delete_vectors, write=True),
            r("POST", "/collections/{collection_name}/points/payload", self.set_payload, write=True),
            r("PUT", "/collections/{collection_name}/points/payload", self.overwrite_payload, write=True),
            r("POST", "/collections/{collection_name}/points/payload/delete", self.delete_payload, write=True),
            r("POST", "/collections/{collection_name}/points/payload/clear", self.clear_payload, write=True),
            r("POST", "/collections/{collection_name}/points/count", self.count),
            r("POST", "/collections/{collection_name}/points/scroll", self.scroll),
            r("POST", "/collections/{collection_name}/points/query", self.query),
            r("POST", "/collections/{collection_name}/points/query/batch", self.query_batch),
        ]
        self.admin_routes = [
            Route("/__dev/faults", self.get_faults, methods=["GET"]),
            Route("/__dev/faults", self.set_faults, methods=["POST"]),
            Route("/__dev/requests", self.get_requests, methods=["GET"]),
            Route("/__dev/requests/reset", self.reset_requests, methods=["POST"]),
            Route("/__dev/stop", self.stop, methods=["POST"]),
        ]

    # A route is a Qdrant handler wrapped with timing, the envelope and the error shape.
    @staticmethod
    def _route(method: str, path: str, handler: Callable[..., Awaitable[Any]], write: bool = False) -> Route:
        async def endpoint(request: Request) -> Response:
            started = time.monotonic()
            try:
                result = await handler(request, **request.path_params)
            except ApiError as exc:
                return _error(exc.status, exc.message, started)
            except Exception as exc:
                log.exception("%s %s failed", method, path)
                return _error(500, f"Service internal error: {exc}", started)
            return result if isinstance(result, Response) else _ok(result, started)

        route = Route(path, endpoint, methods=[method])
        route.write = write  # type: ignore[attr-defined]
        return route

    def build(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            self.engine.open()
            yield
            await self.engine.close()

        return Starlette(
            routes=self.admin_routes + self.routes,
            middleware=[Middleware(BaseHTTPMiddleware, dispatch=self.front)],
            lifespan=lifespan,
        )

    # ------------------------------------------------------------ the front: log, faults, auth

    def _route_of(self, request: Request) -> Route | None:
        for route in self.routes:
            if route.matches(request.scope)[0] == Match.FULL:
                return route
        return None

    async def front(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        path = request.url.path
        if path.startswith("/__dev/"):
            return await call_next(request)
        started = time.monotonic()
        route = self._route_of(request)
        template = route.path if route else path
        entry: dict[str, Any] = {"method": request.method, "path": path, "template": template, "status": None}
        self.state.counts[f"{request.method} {template}"] += 1
        self.state.requests.append(entry)
        del self.state.requests[:-5000]
        response = await self._guarded(request, call_next, route, started)
        entry["status"] = response.status_code
        return response

    async def _guarded(
        self, request: Request, call_next: RequestResponseEndpoint, route: Route | None, started: float
    ) -> Response:
        faults = self.state.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        await faults.released.wait()
        if faults.error_rate and random.random() < faults.error_rate:
            return _error(503, "Service Unavailable: injected by the dev server (error_rate)", started)
        if self.state.api_key and request.url.path not in PUBLIC_PATHS:
            auth = request.headers.get("authorization", "")
            key = request.headers.get("api-key") or (auth[7:] if auth.lower().startswith("bearer ") else None)
            if not key:
                return _error(401, "Must provide an API key or an Authorization bearer token", started)
            if key == self.state.read_only_api_key:
                if route is not None and getattr(route, "write", False):
                    return _error(403, "Forbidden: Write access is required", started)
            elif key != self.state.api_key:
                return _error(401, "Invalid API key or JWT", started)
        return await call_next(request)

    # ------------------------------------------------------------ admin (dev only)

    async def get_faults(self, request: Request) -> Response:
        f = self.state.faults
        return JSONResponse(
            {k: getattr(f, k) for k in ("latency_ms", "error_rate", "hang", "create_timeout_but_applies")}
        )

    async def set_faults(self, request: Request) -> Response:
        try:
            self.state.set_faults(await request.json())
        except (TypeError, json.JSONDecodeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return await self.get_faults(request)

    async def get_requests(self, request: Request) -> Response:
        return JSONResponse({"counts": dict(self.state.counts), "requests": self.state.requests})

    async def reset_requests(self, request: Request) -> Response:
        self.state.counts.clear()
        self.state.requests.clear()
        return JSONResponse({"ok": True})

    async def stop(self, request: Request) -> Response:
        if self.state.stop is None:
            return JSONResponse({"error": "not started from the CLI"}, status_code=409)
        asyncio.get_running_loop().call_later(0.05, self.state.stop)
        return JSONResponse({"ok": True})

    # ------------------------------------------------------------ service

    async def root(self, request: Request) -> Response:
        return JSONResponse(
            {"title": "qdrant - vector search engine", "version": QDRANT_VERSION, "commit": "dev-server-qdrant-edge"}
        )

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("healthz check passed")

    async def livez(self, request: Request) -> Response:
        return PlainTextResponse("healthz check passed")

    async def readyz(self, request: Request) -> Response:
        return PlainTextResponse("all shards are ready")

    async def cluster(self, request: Request) -> Any:
        return {"status": "disabled"}

    # ------------------------------------------------------------ collections

    async def list_collections(self, request: Request) -> Any:
        return {"collections": [{"name": n} for n in sorted(self.engine.collections)]}

    async def get_collection(self, request: Request, collection_name: str) -> Any:
        return self.engine.resolve(collection_name).info()

    async def create_collection(self, request: Request, collection_name: str) -> Any:
        _check_name(collection_name)
        req = await _body(request, m.CreateCollection)
        _validate_vectors(req.vectors)
        self.engine.create(collection_name, req)
        delay = self.state.faults.create_timeout_but_applies
        if delay:
            await asyncio.sleep(delay)  # the collection exists already; only the answer is late
        return True

    async def update_collection(self, request: Request, collection_name: str) -> Any:
        self.engine.update(collection_name, await _body(request, m.UpdateCollection))
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

    async def create_index(self, request: Request, collection_name: str) -> Any:
        self.engine.create_index(collection_name, await _body(request, m.CreateFieldIndex))
        return self._update_result(request)

    async def delete_index(self, request: Request, collection_name: str, field_name: str) -> Any:
        self.engine.delete_index(collection_name, field_name)
        return self._update_result(request)

    def _update_result(self, request: Request) -> dict[str, Any]:
        self.operation_id += 1
        status = "completed" if _flag(request, "wait") else "acknowledged"
        return {"operation_id": self.operation_id, "status": status}

    # ------------------------------------------------------------ snapshots

    async def list_snapshots(self, request: Request, collection_name: str) -> Any:
        return self.engine.list_snapshots(collection_name)

    async def create_snapshot(self, request: Request, collection_name: str) -> Any:
        return self.engine.create_snapshot(collection_name)

    async def download_snapshot(self, request: Request, collection_name: str, snapshot_name: str) -> Any:
        return FileResponse(self.engine.snapshot_path(collection_name, snapshot_name), filename=snapshot_name)

    async def delete_snapshot(self, request: Request, collection_name: str, snapshot_name: str) -> Any:
        self.engine.delete_snapshot(collection_name, snapshot_name)
        return True

    async def recover_snapshot(self, request: Request, collection_name: str) -> Any:
        _check_name(collection_name)
        req = await _body(request, m.SnapshotRecover)
        url = urllib.parse.urlparse(req.location)
        if url.scheme == "file":
            self.engine.recover(collection_name, Path(urllib.parse.unquote(url.path)), req.checksum)
            return True
        if url.scheme not in ("http", "https"):
            raise wrong_input(f"Unsupported snapshot location scheme: {url.scheme}")
        download = self.engine.data_dir / "tmp" / f"download-{uuid.uuid4().hex}.snapshot"
        headers = {"api-key": req.api_key} if req.api_key else {}
        try:
            async with httpx.AsyncClient(verify=False, timeout=60) as client:  # dev server: self-signed peers
                async with client.stream("GET", req.location, headers=headers) as resp:
                    if resp.status_code != 200:
                        raise wrong_input(f"Failed to download snapshot from {req.location}: {resp.status_code}")
                    with download.open("wb") as f:
                        async for chunk in resp.aiter_bytes():
                            f.write(chunk)
            self.engine.recover(collection_name, download, req.checksum)
        except httpx.HTTPError as exc:
            raise wrong_input(f"Failed to download snapshot from {req.location}: {exc}") from exc
        finally:
            download.unlink(missing_ok=True)
        return True

    async def upload_snapshot(self, request: Request, collection_name: str) -> Any:
        _check_name(collection_name)
        form = await request.form()
        upload = form.get("snapshot")
        if upload is None or isinstance(upload, str):
            raise wrong_input("multipart field `snapshot` with the snapshot file is required")
        path = self.engine.data_dir / "tmp" / f"upload-{uuid.uuid4().hex}.snapshot"
        try:
            with path.open("wb") as f:
                shutil.copyfileobj(upload.file, f)
            self.engine.recover(collection_name, path, request.query_params.get("checksum"))
        finally:
            path.unlink(missing_ok=True)
            await form.close()
        return True

    # ------------------------------------------------------------ points

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


def _wrap(fn: Callable[..., Any], *args: Any) -> Any:
    """Request conversion: what the engine cannot express is a 400, like Qdrant's own input errors."""
    try:
        return fn(*args)
    except ValueError as exc:
        raise wrong_input(str(exc)) from exc


_MISSING_POINT = re.compile(r"^No point with id (\S+?)(?: found)?$")


def _engine_call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except ApiError:
        raise
    except Exception as exc:  # qdrant-edge raises plain Exception with Qdrant's own messages
        missing = _MISSING_POINT.match(str(exc))
        if missing:
            raise ApiError(404, f"Not found: No point with id {missing.group(1)} found") from exc
        raise wrong_input(str(exc)) from exc


def _check_name(name: str) -> None:
    for bad in ("/", "\\", "\0", ".."):
        if bad in name or not name.strip():
            raise ApiError(
                422, f'Validation error in path parameters: [name: collection name cannot contain "{bad}" char]'
            )


def _validate_vectors(vectors: Any) -> None:
    params = [vectors] if isinstance(vectors, m.VectorParams) else list((vectors or {}).values())
    for p in params:
        if p.size < 1:
            raise ApiError(
                422, f"Validation error in JSON body: [vectors.size: value {p.size} invalid, must be 1 or larger]"
            )
