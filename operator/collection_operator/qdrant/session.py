"""One qdrant-client with its own HTTP connections (a Session), replaced whole when credentials change."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import Sequence
from typing import Any

import httpx
from qdrant_client import AsyncQdrantClient

from ..config import ClientSettings


class ConnectTimeoutTransport(httpx.AsyncBaseTransport):
    """Applies the connect timeout per request. The request budget is enforced around each attempt by the
    gateway (asyncio.timeout), and waiting for a connection by the pool's leases, so httpx's own read,
    write and pool timeouts are switched off rather than left at its 5 s default."""

    def __init__(self, inner: httpx.AsyncHTTPTransport, connect_seconds: float) -> None:
        self.inner = inner
        self._timeout = {"connect": connect_seconds, "read": None, "write": None, "pool": None}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.extensions["timeout"] = self._timeout
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclasses.dataclass(eq=False)
class Session:
    """One qdrant-client with its own HTTP connections; replaced whole when credentials change."""

    client: AsyncQdrantClient
    transport: httpx.AsyncHTTPTransport
    inflight: int = 0
    retired: bool = False

    def connections(self) -> Sequence[Any]:
        # httpx keeps its httpcore pool private; httpcore's `connections` list itself is public API.
        return self.transport._pool.connections

    async def open(self, count: int) -> None:
        # Concurrent requests make httpcore open one connection each; keep-alive then holds them.
        await asyncio.gather(*(self.client.http.service_api.healthz() for _ in range(count)))


def new_session(url: str, settings: ClientSettings, api_key: str | None, ca_pem: str | None, verify: bool) -> Session:
    tls: ssl.SSLContext | bool = verify
    if ca_pem:
        tls = ssl.create_default_context(cadata=ca_pem)
    pool = settings.pool
    # One connection beyond the leases for health probes and warming, so they never queue behind calls.
    limits = httpx.Limits(
        max_connections=pool.max_connections + 1,
        max_keepalive_connections=pool.max_connections + 1,
        keepalive_expiry=pool.idle_timeout_seconds,
    )
    transport = httpx.AsyncHTTPTransport(verify=tls, limits=limits)
    client = AsyncQdrantClient(
        url=url,
        port=None,  # the URL says the port; qdrant-client would otherwise add :6333 to a URL without one
        headers={"api-key": api_key} if api_key else None,
        check_compatibility=False,  # the health monitor reads the version; no blocking thread per client
        transport=ConnectTimeoutTransport(transport, settings.timeouts.connect_seconds),
    )
    return Session(client, transport)
