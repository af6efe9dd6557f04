"""`Gateway`, what the operator's adapters, the connection registry and VectorOperations use: one endpoint's
QdrantGateway or several endpoints' QdrantEndpoints. `Shared` holds what the two have in common: the state read
from the report, subscribers told of every change, the async context, and the timing of every call around each
one's own way of running it (`_run`: retries on one endpoint, or failover across several)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, Self, TypeVar

from .. import metrics
from ..api.connection import BreakerState, Health
from ..config import ClientSettings
from .calls import CollectionCalls, SnapshotTurns
from .errors import QdrantError
from .report import ConnectionReport, OnReport
from .session import Session

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient

T = TypeVar("T")


class Gateway(CollectionCalls, Protocol):
    """One Qdrant deployment as a client: state, lifecycle, the typed calls, REST `request` and `call`."""

    name: str
    url: str
    urls: tuple[str, ...]  # every endpoint, `url` first

    @property
    def report(self) -> ConnectionReport: ...
    @property
    def health(self) -> Health: ...
    @property
    def breaker_state(self) -> BreakerState: ...
    @property
    def server_version(self) -> str | None: ...
    def subscribe(self, callback: OnReport) -> None: ...
    def node(self, url: str) -> Gateway:
        """The client of endpoint `url` alone (for one endpoint, itself): calls that must reach that node."""
        ...

    def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def aclose(self) -> None: ...
    async def update_credentials(self, api_key: str | None, ca_pem: str | None = None, verify: bool = True) -> None: ...
    async def update_settings(self, settings: ClientSettings) -> None: ...

    async def call(
        self,
        operation: str,
        fn: Callable[[AsyncQdrantClient], Awaitable[T]],
        *,
        idempotent: bool,
        timeout_seconds: float | None = None,
    ) -> T:
        """Run `fn(AsyncQdrantClient)` (qdrant-client, imported on first use) under the client's breaker, pool
        lease, timeout and retries. Raises a QdrantError subclass."""
        return await self._timed(operation, lambda session: fn(session.qdrant), idempotent, timeout_seconds)


class Shared(Gateway):
    """The code QdrantGateway and QdrantEndpoints share; each implements `report`, `_run` and its lifecycle."""

    def __init__(self, name: str, settings: ClientSettings) -> None:
        self.name = name
        self.settings = settings
        self._subscribers: list[OnReport] = []
        self._last_report: ConnectionReport | None = None
        self._callback_tasks: set[asyncio.Task[None]] = set()
        self.snapshot_turns = SnapshotTurns()

    @property
    def health(self) -> Health:
        return self.report.health

    @property
    def breaker_state(self) -> BreakerState:
        return self.report.circuit_breaker

    @property
    def server_version(self) -> str | None:
        return self.report.server_version

    def subscribe(self, callback: OnReport) -> None:
        """Call `callback(report)` (sync or async) whenever the report changes."""
        self._subscribers.append(callback)

    def _notify(self) -> None:
        report = self.report
        if report == self._last_report:
            return
        previous, self._last_report = self._last_report, report
        self._changed(previous, report)
        for callback in self._subscribers:
            result = callback(report)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._callback_tasks.add(task)  # keep a reference until done, or it may be collected early
                task.add_done_callback(self._callback_tasks.discard)

    def _changed(self, previous: ConnectionReport | None, report: ConnectionReport) -> None:
        """Called on every change before the subscribers."""

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def _timed(
        self, operation: str, fn: Callable[[Session], Awaitable[T]], idempotent: bool, timeout_seconds: float | None
    ) -> T:
        """`_run`, with its duration and outcome in metrics."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await self._run(operation, fn, idempotent, timeout_seconds)
        except QdrantError as error:
            outcome = error.reason
            raise
        finally:
            metrics.REQUEST_DURATION.labels(self.name, operation, outcome).observe(time.perf_counter() - started)

    async def _run(
        self, operation: str, fn: Callable[[Session], Awaitable[T]], idempotent: bool, timeout_seconds: float | None
    ) -> T:
        """Run `fn(session)` with this client's breaker, pool lease, timeout, retries (and failover)."""
        raise NotImplementedError
