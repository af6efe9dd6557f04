"""Qdrant's REST API (the subset the operator and vector operations use) in front of qdrant-edge.

Request bodies are parsed with qdrant-client's models, which are the OpenAPI shapes; responses use
Qdrant's envelope. Test knobs live under /__dev/ (not authenticated, never counted).

This module wires the app (routing table, middleware: request log, faults, auth); the handlers are
mixins by area in routes_*.py, sharing rest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from devenv.qdrant_dev.engine import MAX_SHARDS, Engine
from devenv.qdrant_dev.errors import ApiError
from devenv.qdrant_dev.routes_collections import CollectionRoutes
from devenv.qdrant_dev.routes_point_reads import PointReadRoutes
from devenv.qdrant_dev.routes_point_updates import PointUpdateRoutes
from devenv.qdrant_dev.routes_service import ServiceRoutes
from devenv.qdrant_dev.routes_snapshots import SnapshotRoutes

log = logging.getLogger("qdrant_dev")
PUBLIC_PATHS = {"/", "/healthz", "/livez", "/readyz"}  # Qdrant serves these without an API key


@dataclass
class Faults:
    latency_ms: int = 0
    error_rate: float = 0.0  # share of requests answered 503
    hang: bool = False  # requests wait until the fault is cleared
    create_timeout_but_applies: float = 0.0  # seconds a collection create waits *after* creating it
    error_status: int = 503  # the status error_rate answers with
    error_body: str | None = None  # the body error_rate answers with, verbatim; None: Qdrant's error shape
    reason_phrase: str = ""  # sent in the status line of every error answer instead of the standard phrase

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


class QdrantDevApp(ServiceRoutes, CollectionRoutes, SnapshotRoutes, PointUpdateRoutes, PointReadRoutes):
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
            r("PUT", "/collections/{collection_name}/vectors/{vector_name}", self.create_vector_name, write=True),
            r("DELETE", "/collections/{collection_name}/vectors/{vector_name}", self.delete_vector_name, write=True),
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
            if faults.error_body is not None:
                return Response(faults.error_body, status_code=faults.error_status, media_type="application/json")
            phrase = HTTPStatus(faults.error_status).phrase
            return _error(faults.error_status, f"{phrase}: injected by the dev server (error_rate)", started)
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
