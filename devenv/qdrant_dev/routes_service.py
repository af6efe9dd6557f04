"""Service endpoints (version, health, cluster) and the dev server's own knobs under /__dev/."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from devenv.qdrant_dev.rest import RouteHandlers

QDRANT_VERSION = "1.19.0"


class ServiceRoutes(RouteHandlers):
    # ------------------------------------------------------------ admin (dev only)

    async def get_faults(self, request: Request) -> Response:
        return JSONResponse(dataclasses.asdict(self.state.faults))

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
