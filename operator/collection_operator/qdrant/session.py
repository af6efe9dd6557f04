"""One HTTP client of a target with its own connections (a Session), replaced whole when credentials change.

The operator's own calls are Qdrant's REST API in JSON through `send`. qdrant-client (numpy, grpc, protobuf
and a few hundred models: most of an idle operator's memory) is imported only when an application asks for
`qdrant`, and then shares this session's connections, pool and timeouts."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from ..config import ClientSettings

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient


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
    """One target's HTTP client and connections; replaced whole when credentials change."""

    url: str
    http: httpx.AsyncClient
    transport: ConnectTimeoutTransport
    inflight: int = 0
    retired: bool = False
    _qdrant: AsyncQdrantClient | None = None

    def connections(self) -> Sequence[Any]:
        # httpx keeps its httpcore pool private; httpcore's `connections` list itself is public API.
        return self.transport.inner._pool.connections

    async def send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One REST call: the decoded JSON reply. A reply other than 2xx raises httpx.HTTPStatusError, which
        errors.classify maps to the typed error. `headers` replace the session's (e.g. another api-key)."""
        response = await self.http.request(method, path, json=body, params=params, headers=headers)
        response.raise_for_status()
        return response.json()

    @property
    def qdrant(self) -> AsyncQdrantClient:
        """qdrant-client on this session's connections, made on first use (applications' calls only)."""
        if self._qdrant is None:
            from qdrant_client import AsyncQdrantClient

            api_key = self.http.headers.get("api-key")
            self._qdrant = AsyncQdrantClient(
                url=self.url,
                port=None,  # the URL says the port; qdrant-client would otherwise add :6333 to a URL without one
                headers={"api-key": api_key} if api_key else None,
                check_compatibility=False,  # the health monitor reads the version; no blocking thread per client
                transport=self.transport,
            )
        return self._qdrant

    async def open(self, count: int) -> None:
        # Concurrent requests make httpcore open one connection each; keep-alive then holds them.
        await asyncio.gather(*(self.http.get("/healthz") for _ in range(count)))

    async def close(self) -> None:
        if self._qdrant is not None:
            await self._qdrant.close()
        await self.http.aclose()


def new_session(
    url: str,
    settings: ClientSettings,
    api_key: str | None,
    ca_pem: str | None,
    verify: bool,
    backend: httpcore.AsyncNetworkBackend,
) -> Session:
    """`backend` opens the TCP connections (PinnedBackend: only to addresses the address policy checked)."""
    tls = httpx.create_ssl_context(verify=ssl.create_default_context(cadata=ca_pem) if ca_pem else verify)
    # One connection beyond the leases for health probes and warming, so they never queue behind calls.
    size = settings.pool.max_connections + 1
    inner = httpx.AsyncHTTPTransport(verify=tls)
    # httpx takes no network backend: its pool is made again with ours (the same arguments httpx would pass).
    inner._pool = httpcore.AsyncConnectionPool(
        ssl_context=tls,
        max_connections=size,
        max_keepalive_connections=size,
        keepalive_expiry=settings.pool.idle_timeout_seconds,
        network_backend=backend,
    )
    transport = ConnectTimeoutTransport(inner, settings.timeouts.connect_seconds)
    http = httpx.AsyncClient(base_url=url, headers={"api-key": api_key} if api_key else None, transport=transport)
    return Session(url, http, transport)
