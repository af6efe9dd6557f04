"""QdrantGateway: one target's pooled, retried, breaker-guarded, health-monitored qdrant-client."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx
from qdrant_client import AsyncQdrantClient, models

from .. import metrics
from ..api.connection import BreakerState, Health
from ..config import ClientSettings
from ..config.address_policy import AddressPolicy, Refusal, check, host_of
from .breaker import CircuitBreaker
from .errors import AddressNotAllowed, NotFound, QdrantError, Unreachable, classify
from .health import HealthMonitor, HealthReport, ProbeResult
from .pool import ConnectionPool
from .retry import retrying

log = logging.getLogger(__name__)

T = TypeVar("T")
# How long a resolved, allowed address stays trusted before the URL's host is resolved and checked again.
ADDRESS_CHECK_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class ConnectionReport:
    """What a QdrantConnection's status shows, as of the last probe and breaker transition."""

    health: Health
    server_version: str | None
    distributed: bool | None
    peers: int | None
    circuit_breaker: BreakerState
    error_reason: str | None  # reason of the last probe's failure (Unreachable, Unauthorized, TLSError ...)
    error_message: str | None = dataclasses.field(default=None, compare=False)


OnReport = Callable[[ConnectionReport], Awaitable[None] | None]


class _ConnectTimeoutTransport(httpx.AsyncBaseTransport):
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
class _Session:
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


class QdrantGateway:
    """The entry point of the client layer for one Qdrant target; see the package docstring."""

    def __init__(
        self,
        url: str,
        settings: ClientSettings,
        *,
        name: str,
        api_key: str | None = None,
        ca_pem: str | None = None,
        verify: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = url
        self.name = name
        self.settings = settings
        self._credentials = (api_key, ca_pem, verify)
        self._sleep = sleep
        self._subscribers: list[OnReport] = []
        self._last_report: ConnectionReport | None = None
        self._retired: set[_Session] = set()
        self._callback_tasks: set[asyncio.Task[None]] = set()
        self._address_checked: tuple[AddressPolicy, float] | None = None  # (policy, monotonic expiry)
        self._session = self._new_session()
        self.breaker = CircuitBreaker(
            settings.circuit_breaker.failure_threshold,
            settings.circuit_breaker.open_seconds,
            clock=clock,
            on_change=self._breaker_changed,
        )
        metrics.BREAKER_STATE.labels(name).state(BreakerState.CLOSED.value)
        self.pool = ConnectionPool(name, settings.pool, self._session.connections, self._open, clock=clock)
        self.monitor = HealthMonitor(
            name,
            self._probe,
            settings.health_check,
            on_probe=self._probed,
            on_change=lambda _: self._notify(),
        )
        self._patterns = self._compile(settings)

    # ----- state -------------------------------------------------------------------------------------

    @property
    def health(self) -> Health:
        return self.monitor.report.health

    @property
    def breaker_state(self) -> BreakerState:
        return self.breaker.state

    @property
    def server_version(self) -> str | None:
        return self.monitor.report.server_version

    @property
    def report(self) -> ConnectionReport:
        health: HealthReport = self.monitor.report
        return ConnectionReport(
            health=health.health,
            server_version=health.server_version,
            distributed=health.distributed,
            peers=health.peers,
            circuit_breaker=self.breaker.state,
            error_reason=health.error_reason,
            error_message=health.error.message if health.error else None,
        )

    def subscribe(self, callback: OnReport) -> None:
        """Call `callback(report)` whenever health, server info or breaker state changes."""
        self._subscribers.append(callback)

    # ----- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the health monitor and the pool's maintenance task (warm minimum, recycling)."""
        self.monitor.start()
        self.pool.start()

    async def stop(self) -> None:
        await self.monitor.stop()
        await self.pool.stop()

    async def aclose(self) -> None:
        await self.stop()
        for session in (self._session, *self._retired):
            await session.client.close()
        self._retired.clear()

    async def __aenter__(self) -> QdrantGateway:
        self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def update_credentials(self, api_key: str | None, ca_pem: str | None = None, verify: bool = True) -> None:
        """Swap the API key and/or CA (Secret rotated). Breaker, health, pool leases and metrics carry
        over; calls in flight finish on the old client, which is closed after the last one."""
        if (api_key, ca_pem, verify) == self._credentials:
            return
        self._credentials = (api_key, ca_pem, verify)
        await self._replace_session()

    async def update_settings(self, settings: ClientSettings) -> None:
        """Apply new resolved settings (the spec or the operator settings file changed) in place."""
        old, self.settings = self.settings, settings
        self._patterns = self._compile(settings)
        self.breaker.configure(settings.circuit_breaker.failure_threshold, settings.circuit_breaker.open_seconds)
        self.monitor.configure(settings.health_check)
        await self.pool.reconfigure(settings.pool)
        if (old.pool.max_connections, old.pool.idle_timeout_seconds, old.timeouts.connect_seconds) != (
            settings.pool.max_connections,
            settings.pool.idle_timeout_seconds,
            settings.timeouts.connect_seconds,
        ):
            await self._replace_session()  # httpx limits and transport timeouts are fixed per client

    # ----- calls -------------------------------------------------------------------------------------

    async def call(
        self,
        operation: str,
        fn: Callable[[AsyncQdrantClient], Awaitable[T]],
        *,
        idempotent: bool,
        timeout_seconds: float | None = None,
    ) -> T:
        """Run `fn(client)` under breaker, pool lease and per-attempt timeout; retry retryable failures of
        idempotent calls. Raises a QdrantError subclass. `operation` labels metrics and logs."""
        started = time.perf_counter()
        outcome = "ok"

        def on_retry(error: QdrantError, delay: float) -> None:
            metrics.RETRIES.labels(self.name, operation, error.reason).inc()
            log.info("%s %s: %s; retrying in %.2fs", self.name, operation, error.reason, delay)

        try:
            controller = retrying(self.settings.retry, idempotent=idempotent, sleep=self._sleep, on_retry=on_retry)
            result: T = await controller(self._attempt, fn, idempotent, timeout_seconds)
            return result
        except QdrantError as error:
            outcome = error.reason
            raise
        finally:
            metrics.REQUEST_DURATION.labels(self.name, operation, outcome).observe(time.perf_counter() - started)

    async def check_address(self) -> None:
        """Raise AddressNotAllowed unless the operator's address policy allows this URL, checked on every
        address its host resolves to now (resolved again after ADDRESS_CHECK_SECONDS). Runs before every
        call, health probe and pool warm-up, so a refused URL is never sent a request."""
        policy = self.settings.address_policy
        now = time.monotonic()
        if self._address_checked is not None and self._address_checked[0] == policy and now < self._address_checked[1]:
            return
        try:
            host, port = host_of(self.url)
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
            check(host, addresses, policy)
        except Refusal as refusal:
            raise AddressNotAllowed(f"URL refused by the operator's address policy: {refusal}") from None
        except (socket.gaierror, UnicodeError) as exc:
            raise Unreachable(f"cannot resolve the URL's host: {exc}") from None
        self._address_checked = (policy, now + ADDRESS_CHECK_SECONDS)

    async def _open(self, count: int) -> None:
        await self.check_address()
        await self._session.open(count)

    async def _attempt(
        self, fn: Callable[[AsyncQdrantClient], Awaitable[T]], idempotent: bool, timeout_seconds: float | None
    ) -> T:
        await self.check_address()
        self.breaker.before_call()
        session = self._session
        session.inflight += 1
        try:
            async with self.pool.lease():
                async with asyncio.timeout(timeout_seconds or self.settings.timeouts.request_seconds):
                    result = await fn(session.client)
        except asyncio.CancelledError:
            self.breaker.release()
            raise
        except Exception as raw:
            error = classify(raw, idempotent=idempotent, extra_retryable=self._patterns)
            if isinstance(raw, QdrantError) and not raw.breaker_failure:
                self.breaker.release()  # our own refusal (pool exhausted) says nothing about the server
            elif error.breaker_failure:
                self.breaker.record_failure()
            else:
                self.breaker.record_success()  # it answered, if only with 4xx: it is up
            if error is raw:
                raise
            raise error from raw
        finally:
            session.inflight -= 1
            if session.retired and session.inflight == 0:
                self._retired.discard(session)
                await session.client.close()
        self.breaker.record_success()
        return result

    # ----- collections (what the reconcilers use) ----------------------------------------------------

    async def list_collections(self) -> list[str]:
        response = await self.call("list_collections", lambda c: c.get_collections(), idempotent=True)
        return [collection.name for collection in response.collections]

    async def collection_exists(self, name: str) -> bool:
        return await self.call("collection_exists", lambda c: c.collection_exists(name), idempotent=True)

    async def get_collection(self, name: str) -> models.CollectionInfo:
        """NotFound if it does not exist."""
        return await self.call("get_collection", lambda c: c.get_collection(name), idempotent=True)

    async def create_collection(
        self, name: str, body: models.CreateCollection, *, timeout_seconds: float | None = None
    ) -> None:
        """Not idempotent: AlreadyExists if it exists, OutcomeUnknown if the reply was lost."""

        async def create(client: AsyncQdrantClient) -> None:
            wait = int(timeout_seconds or self.settings.timeouts.request_seconds)
            await client.http.collections_api.create_collection(name, create_collection=body, timeout=wait)

        await self.call("create_collection", create, idempotent=False, timeout_seconds=timeout_seconds)

    async def update_collection(
        self, name: str, body: models.UpdateCollection, *, timeout_seconds: float | None = None
    ) -> None:
        """PATCH: setting the same values twice is harmless, so it is retried."""

        async def update(client: AsyncQdrantClient) -> None:
            wait = int(timeout_seconds or self.settings.timeouts.request_seconds)
            await client.http.collections_api.update_collection(name, update_collection=body, timeout=wait)

        await self.call("update_collection", update, idempotent=True, timeout_seconds=timeout_seconds)

    async def delete_collection(self, name: str) -> bool:
        """True if it existed. A missing collection is success (404 on delete)."""
        try:
            response = await self.call(
                "delete_collection", lambda c: c.http.collections_api.delete_collection(name), idempotent=True
            )
        except NotFound:
            return False
        return bool(response.result)

    async def create_payload_index(
        self, collection: str, field: str, schema: models.PayloadSchemaType | models.PayloadSchemaParams
    ) -> None:
        await self.call(
            "create_payload_index",
            lambda c: c.create_payload_index(collection, field, field_schema=schema, wait=True),
            idempotent=True,
        )

    async def delete_payload_index(self, collection: str, field: str) -> bool:
        try:
            await self.call(
                "delete_payload_index", lambda c: c.delete_payload_index(collection, field, wait=True), idempotent=True
            )
        except NotFound:
            return False
        return True

    async def list_aliases(self, collection: str | None = None) -> list[models.AliasDescription]:
        if collection is None:
            response = await self.call("list_aliases", lambda c: c.get_aliases(), idempotent=True)
        else:
            response = await self.call(
                "list_aliases", lambda c: c.get_collection_aliases(collection), idempotent=True
            )
        return list(response.aliases)

    async def update_aliases(self, actions: Sequence[models.AliasOperations]) -> None:
        """Atomic alias changes. Not retried: replaying a partly applied delete would fail."""
        await self.call("update_aliases", lambda c: c.update_collection_aliases(list(actions)), idempotent=False)

    async def create_snapshot(
        self, collection: str, *, timeout_seconds: float | None = None
    ) -> models.SnapshotDescription:
        """Not retried: a lost reply would otherwise leave a second, untracked file behind."""
        result = await self.call(
            "create_snapshot", lambda c: c.create_snapshot(collection, wait=True), idempotent=False,
            timeout_seconds=timeout_seconds,
        )
        if result is None:  # only with wait=False
            raise QdrantError(f"snapshot of {collection} returned no description")
        return result

    async def list_snapshots(self, collection: str) -> list[models.SnapshotDescription]:
        return await self.call("list_snapshots", lambda c: c.list_snapshots(collection), idempotent=True)

    async def delete_snapshot(self, collection: str, snapshot: str) -> bool:
        try:
            await self.call(
                "delete_snapshot", lambda c: c.delete_snapshot(collection, snapshot, wait=True), idempotent=True
            )
        except NotFound:
            return False
        return True

    async def recover_snapshot(
        self, collection: str, location: str, *, checksum: str | None = None, api_key: str | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        """Recover `collection` from a snapshot URL or file:// path. Long and not retried. `api_key` is what
        Qdrant sends to the server holding the file (a protected URL needs it)."""
        await self.call(
            "recover_snapshot",
            lambda c: c.recover_snapshot(collection, location, api_key=api_key, checksum=checksum, wait=True),
            idempotent=False,
            timeout_seconds=timeout_seconds,
        )

    # ----- internals ---------------------------------------------------------------------------------

    def _new_session(self) -> _Session:
        api_key, ca_pem, verify = self._credentials
        tls: ssl.SSLContext | bool = verify
        if ca_pem:
            tls = ssl.create_default_context(cadata=ca_pem)
        pool = self.settings.pool
        # One connection beyond the leases for health probes and warming, so they never queue behind calls.
        limits = httpx.Limits(
            max_connections=pool.max_connections + 1,
            max_keepalive_connections=pool.max_connections + 1,
            keepalive_expiry=pool.idle_timeout_seconds,
        )
        transport = httpx.AsyncHTTPTransport(verify=tls, limits=limits)
        client = AsyncQdrantClient(
            url=self.url,
            port=None,  # the URL says the port; qdrant-client would otherwise add :6333 to a URL without one
            headers={"api-key": api_key} if api_key else None,
            check_compatibility=False,  # the health monitor reads the version; no blocking thread per client
            transport=_ConnectTimeoutTransport(transport, self.settings.timeouts.connect_seconds),
        )
        return _Session(client, transport)

    async def _replace_session(self) -> None:
        old, self._session = self._session, self._new_session()
        self.pool.attach(self._session.connections, self._open)
        if old.inflight:
            old.retired = True
            self._retired.add(old)
        else:
            await old.client.close()
        log.info("connection %s: new client (credentials or limits changed)", self.name)

    async def _probe(self) -> ProbeResult:
        await self.check_address()
        http = self._session.client.http
        version = await http.service_api.root()
        cluster = (await http.distributed_api.cluster_status()).result
        if cluster is None or cluster.status == "disabled":
            return ProbeResult(version.version, distributed=False, peers=1)
        assert isinstance(cluster, models.ClusterStatusOneOf1)
        trouble = None
        thread = cluster.consensus_thread_status.consensus_thread_status
        if thread != "working":
            trouble = f"consensus thread {thread}"
        elif cluster.message_send_failures:
            trouble = f"cannot reach peers {sorted(cluster.message_send_failures)}"
        return ProbeResult(version.version, distributed=True, peers=len(cluster.peers), trouble=trouble)

    def _probed(self, error: QdrantError | None) -> None:
        self.breaker.record_probe(error is None or not error.breaker_failure)

    def _breaker_changed(self, old: BreakerState, new: BreakerState) -> None:
        metrics.BREAKER_STATE.labels(self.name).state(new.value)
        log.warning("connection %s: circuit breaker %s -> %s", self.name, old.value, new.value)
        self._notify()

    def _notify(self) -> None:
        report = self.report
        if report == self._last_report:
            return
        self._last_report = report
        for callback in self._subscribers:
            result = callback(report)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._callback_tasks.add(task)  # keep a reference until done, or it may be collected early
                task.add_done_callback(self._callback_tasks.discard)

    @staticmethod
    def _compile(settings: ClientSettings) -> list[re.Pattern[str]]:
        return [re.compile(pattern, re.IGNORECASE) for pattern in settings.retry.extra_retryable_patterns]
