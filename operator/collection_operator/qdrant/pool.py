"""The connection pool of one target, on top of httpx's own HTTP connection pool.

httpx (httpcore) already keeps keep-alive connections, caps them (`httpx.Limits`) and drops idle ones
after `keepalive_expiry`. This module adds what it lacks:

- leases: a call holds one of `max_connections` leases while it talks to Qdrant; extra calls queue, and
  give up with PoolExhausted after `acquire_timeout_seconds` instead of piling up inside httpx;
- max lifetime: an idle connection older than `max_lifetime_seconds` is closed (load balancers and
  rotated certificates behind the URL get picked up);
- validation before hand-out and after return: idle connections that outlived their lifetime are
  closed (httpcore itself skips idle connections that expired or that the server closed when it assigns
  a request; the background task also sweeps those, since httpcore only looks when a request comes);
- a warm minimum: a background task keeps `min_connections` open and runs the validation periodically;
- metrics: open connections, leases in use, waiters, acquire time, recycled connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

from .. import metrics
from ..config import PoolSettings
from .errors import PoolExhausted

log = logging.getLogger(__name__)


class HttpConnection(Protocol):
    """The part of httpcore's connection interface the pool uses."""

    def is_idle(self) -> bool: ...
    def is_closed(self) -> bool: ...
    def has_expired(self) -> bool: ...
    async def aclose(self) -> None: ...


ConnectionSource = Callable[[], Sequence[HttpConnection]]
Opener = Callable[[int], Awaitable[object]]


class ConnectionPool:
    """Leases, lifetime, validation and the warm minimum for one target's HTTP connections.

    `connections` lists the live HTTP connections (httpcore's pool); `opener(n)` opens n more by sending
    n concurrent cheap requests. `clock` decides connection age; tests inject a fake one.
    """

    def __init__(
        self,
        name: str,
        settings: PoolSettings,
        connections: ConnectionSource,
        opener: Opener,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.settings = settings
        self._connections = connections
        self._opener = opener
        self._clock = clock
        self._born: weakref.WeakKeyDictionary[HttpConnection, float] = weakref.WeakKeyDictionary()
        self._cond = asyncio.Condition()
        self._in_use = 0
        self._waiting = 0
        self._task: asyncio.Task[None] | None = None
        self._metrics()

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def size(self) -> int:
        """Open HTTP connections, idle or busy."""
        return sum(1 for conn in self._connections() if not conn.is_closed())

    def attach(self, connections: ConnectionSource, opener: Opener) -> None:
        """Point the pool at a new HTTP client (credentials rotated); leases and waiters carry over."""
        self._connections, self._opener = connections, opener
        self._metrics()

    async def reconfigure(self, settings: PoolSettings) -> None:
        async with self._cond:
            self.settings = settings
            self._cond.notify_all()  # a larger maximum may admit waiters now

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[None]:
        """Hold one lease for the duration of a call; PoolExhausted after the acquire timeout."""
        await self._acquire()
        try:
            await self.validate()
            yield
        finally:
            async with self._cond:
                self._in_use -= 1
                self._cond.notify(1)
            self._metrics()
            await self.validate()

    async def _acquire(self) -> None:
        started = time.perf_counter()
        async with self._cond:
            if self._in_use >= self.settings.max_connections:
                self._waiting += 1
                self._metrics()
                try:
                    async with asyncio.timeout(self.settings.acquire_timeout_seconds):
                        await self._cond.wait_for(lambda: self._in_use < self.settings.max_connections)
                except TimeoutError:
                    metrics.POOL_EXHAUSTED.labels(self.name).inc()
                    if self._in_use < self.settings.max_connections:
                        self._cond.notify(1)  # we were woken as the deadline hit: pass the free lease on
                    raise PoolExhausted(
                        f"connection pool of {self.name!r} exhausted: {self._in_use}/{self.settings.max_connections}"
                        f" in use, {self._waiting - 1} more waiting, none free within"
                        f" {self.settings.acquire_timeout_seconds}s (raise pool.maxConnections or"
                        " pool.acquireTimeoutSeconds)"
                    ) from None
                finally:
                    self._waiting -= 1
            self._in_use += 1
        metrics.POOL_ACQUIRE_DURATION.labels(self.name).observe(time.perf_counter() - started)
        self._metrics()

    def _try_acquire(self, wanted: int) -> int:
        granted = max(0, min(wanted, self.settings.max_connections - self._in_use))
        self._in_use += granted
        return granted

    async def validate(self, *, sweep: bool = False) -> int:
        """Close idle connections that outlived their lifetime; with `sweep`, also those that expired or
        were dropped by the server (a socket poll each, so only in the background task)."""
        now = self._clock()
        doomed: list[tuple[HttpConnection, str]] = []
        for conn in self._connections():
            born = self._born.setdefault(conn, now)
            if conn.is_closed() or not conn.is_idle():
                continue
            if now - born >= self.settings.max_lifetime_seconds:
                doomed.append((conn, "lifetime"))
            elif sweep and conn.has_expired():
                doomed.append((conn, "expired"))
        for conn, why in doomed:
            metrics.POOL_RECYCLED.labels(self.name, why).inc()
            await conn.aclose()
        if doomed:
            self._metrics()
        return len(doomed)

    async def maintain(self) -> None:
        """One round of the background task: sweep, then top up to the warm minimum."""
        await self.validate(sweep=True)
        missing = self.settings.min_connections - self.size
        if missing <= 0:
            return
        granted = self._try_acquire(missing)  # a busy pool is not cold: only use free leases
        if not granted:
            return
        try:
            await self._opener(granted)
        except Exception as error:  # the health monitor reports an unreachable target; stay quiet here
            log.debug("warming the pool of %s failed (%s)", self.name, type(error).__name__)  # no peer's words
        finally:
            async with self._cond:
                self._in_use -= granted
                self._cond.notify(granted)
            self._metrics()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.maintain()
            # Often enough to catch idle expiry and lifetime roughly on time, rarely enough to cost nothing.
            period = min(self.settings.idle_timeout_seconds, self.settings.max_lifetime_seconds) / 4
            await asyncio.sleep(min(max(period, 0.05), 30.0))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"pool:{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _metrics(self) -> None:
        metrics.POOL_IN_USE.labels(self.name).set(self._in_use)
        metrics.POOL_WAITING.labels(self.name).set(self._waiting)
        metrics.POOL_CONNECTIONS.labels(self.name).set(self.size)
