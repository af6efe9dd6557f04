"""QdrantGateway: one target's pooled, retried, breaker-guarded, health-monitored client of Qdrant's REST API."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from .. import metrics
from ..api.connection import BreakerState
from ..config import ClientSettings
from ..config.address_policy import AddressPolicy, Refusal, host_of
from ..redact import foreign_text
from . import tokens
from .breaker import CircuitBreaker
from .client import Shared
from .errors import QdrantError, classify
from .health import HealthMonitor
from .pinning import PinnedBackend, Resolver, checked_addresses, not_allowed, system_resolver
from .pool import ConnectionPool
from .report import ConnectionReport, HealthReport, ProbeResult, Topology
from .retry import retrying
from .session import Session, new_session

log = logging.getLogger(__name__)

T = TypeVar("T")
# How long a resolved, allowed address stays trusted before the URL's host is resolved and checked again.
ADDRESS_CHECK_SECONDS = 10.0
JWT_RECHECK_SECONDS = 300.0


class QdrantGateway(Shared):
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
        resolve: Resolver = system_resolver,
    ) -> None:
        super().__init__(name, settings)
        self.url = url
        self.urls = (url,)
        self._resolve = resolve
        self._backend = PinnedBackend(lambda: self.settings.address_policy, resolve)
        self._credentials = (api_key, ca_pem, verify)
        self._sleep = sleep
        self._retired: set[Session] = set()
        self._address_checked: tuple[AddressPolicy, float] | None = None  # (policy, monotonic expiry)
        self._down_since: dict[int, float] = {}  # peers of a distributed Qdrant not answering, since when (epoch)
        self._writable: bool | None = None  # whether the API key may write; learned once per key
        # Whether Qdrant takes tokens signed with the API key (JWT RBAC): True is learned once per key, False
        # asked again every JWT_RECHECK_SECONDS (enabling it needs a Qdrant restart, not a new key).
        self._jwt_rbac: tuple[bool, float] | None = None  # (answer, monotonic time asked)
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
    def report(self) -> ConnectionReport:
        health: HealthReport = self.monitor.report
        return ConnectionReport(
            health=health.health,
            server_version=health.server_version,
            distributed=health.distributed,
            peers=health.peers,
            circuit_breaker=self.breaker.state,
            error_reason=health.error_reason,
            error_message=health.error.message if health.error else health.trouble,
            topology=health.topology,
            read_only=health.read_only,
            jwt_rbac=health.jwt_rbac,
        )

    # ----- lifecycle ---------------------------------------------------------------------------------

    def node(self, url: str) -> QdrantGateway:
        if url != self.url:
            raise ValueError(f"{self.name} has no endpoint {url}")
        return self

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
            await session.close()
        self._retired.clear()

    async def update_credentials(self, api_key: str | None, ca_pem: str | None = None, verify: bool = True) -> None:
        """Swap the API key and/or CA (Secret rotated). Breaker, health, pool leases and metrics carry
        over; calls in flight finish on the old client, which is closed after the last one."""
        if (api_key, ca_pem, verify) == self._credentials:
            return
        self._credentials = (api_key, ca_pem, verify)
        self._writable = None  # a new key: ask again
        self._jwt_rbac = None
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

    async def _run(
        self, operation: str, fn: Callable[[Session], Awaitable[T]], idempotent: bool, timeout_seconds: float | None
    ) -> T:
        """Retry retryable failures of idempotent calls (backoff, jitter, Retry-After) around `_attempt`."""

        def on_retry(error: QdrantError, delay: float) -> None:
            metrics.RETRIES.labels(self.name, operation, error.reason).inc()
            log.info("%s %s: %s; retrying in %.2fs", self.name, operation, error.reason, delay)

        controller = retrying(self.settings.retry, idempotent=idempotent, sleep=self._sleep, on_retry=on_retry)
        result: T = await controller(self._attempt, fn, idempotent, timeout_seconds)
        return result

    async def attempt(
        self, fn: Callable[[Session], Awaitable[T]], *, idempotent: bool, timeout_seconds: float | None = None
    ) -> T:
        """One attempt of `fn(session)`, no retries: address check, breaker, pool lease, per-attempt timeout.
        Raises a QdrantError subclass. QdrantEndpoints retries across its endpoints with this."""
        return await self._attempt(fn, idempotent, timeout_seconds)

    async def check_address(self) -> None:
        """Raise AddressNotAllowed unless the operator's address policy allows this URL, checked on every
        address its host resolves to now (resolved again after ADDRESS_CHECK_SECONDS). Runs before every
        call, health probe and pool warm-up, so a refused URL is never sent a request, not even on a
        connection opened before the policy changed. Each new connection is checked again, and made to the
        address checked (PinnedBackend)."""
        policy = self.settings.address_policy
        now = time.monotonic()
        if self._address_checked is not None and self._address_checked[0] == policy and now < self._address_checked[1]:
            return
        try:
            host, port = host_of(self.url)
        except Refusal as refusal:
            raise not_allowed(refusal) from None
        await checked_addresses(host, port, policy, self._resolve)
        self._address_checked = (policy, now + ADDRESS_CHECK_SECONDS)

    async def _open(self, count: int) -> None:
        await self.check_address()
        await self._session.open(count)

    async def _attempt(
        self, fn: Callable[[Session], Awaitable[T]], idempotent: bool, timeout_seconds: float | None
    ) -> T:
        await self.check_address()
        self.breaker.before_call()
        session = self._session
        session.inflight += 1
        try:
            async with self.pool.lease():
                async with asyncio.timeout(timeout_seconds or self.settings.timeouts.request_seconds):
                    result = await fn(session)
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
                await session.close()
        self.breaker.record_success()
        return result

    # ----- internals ---------------------------------------------------------------------------------

    def _new_session(self) -> Session:
        api_key, ca_pem, verify = self._credentials
        return new_session(self.url, self.settings, api_key, ca_pem, verify, self._backend)

    async def _replace_session(self) -> None:
        old, self._session = self._session, self._new_session()
        self.pool.attach(self._session.connections, self._open)
        if old.inflight:
            old.retired = True
            self._retired.add(old)
        else:
            await old.close()
        log.info("connection %s: new client (credentials or limits changed)", self.name)

    async def _probe(self) -> ProbeResult:
        await self.check_address()
        session = self._session
        # The server's words for its version and consensus state reach status: bounded, one printable line.
        version = foreign_text(str((await session.send("GET", "/"))["version"]), 64)
        if self._writable is None and self._credentials[0]:
            self._writable = await self._key_can_write()
        read_only = self._writable is False
        jwt_rbac = await self._jwt_rbac_on()
        cluster = (await session.send("GET", "/cluster"))["result"]
        if not cluster or cluster["status"] == "disabled":
            return ProbeResult(version, distributed=False, peers=1, read_only=read_only, jwt_rbac=jwt_rbac)
        now = time.time()
        unreachable = await self._unreachable_peers(cluster)
        self._down_since = {peer: self._down_since.get(peer, now) for peer in unreachable}
        raft = cluster["raft_info"]
        topology = Topology(
            peers=tuple(sorted(int(peer) for peer in cluster["peers"])),
            down_since=tuple(sorted(self._down_since.items())),
            leader=raft.get("leader"),
            pending_operations=raft["pending_operations"],
        )
        trouble = None
        thread = cluster["consensus_thread_status"]["consensus_thread_status"]
        if thread != "working":
            trouble = f"consensus thread {foreign_text(str(thread), 40)}"
        elif topology.unreachable:
            trouble = f"peers not answering: {', '.join(map(str, topology.unreachable))}"
        return ProbeResult(
            version,
            distributed=True,
            peers=len(cluster["peers"]),
            trouble=trouble,
            topology=topology,
            read_only=read_only,
            jwt_rbac=jwt_rbac,
        )

    async def _jwt_rbac_on(self) -> bool | None:
        """Whether Qdrant's JWT RBAC is on for the API key, learned without changing anything: a probe token
        (tokens.probe_token) lists the collections, which a server with RBAC on answers (listing none) and one
        without refuses as a wrong key (401). False without an API key (nothing to sign with); None: no answer."""
        api_key = self._credentials[0]
        if not api_key:
            return False
        now = time.monotonic()
        if self._jwt_rbac is not None and (self._jwt_rbac[0] or now - self._jwt_rbac[1] < JWT_RECHECK_SECONDS):
            return self._jwt_rbac[0]
        try:
            await self._session.send("GET", "/collections", headers={"api-key": tokens.probe_token(api_key)})
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code not in (401, 403):
                return None
            answer = False
        except Exception:  # the probe's own calls report connection trouble
            return None
        else:
            answer = True
        self._jwt_rbac = (answer, now)
        return answer

    async def _key_can_write(self) -> bool | None:
        """Whether the API key may write, learned without changing anything: an empty alias transaction is
        a no-op for a read-write key and refused (403) for a read-only one. None: no answer, ask again."""
        try:
            await self._session.send("POST", "/collections/aliases", body={"actions": []})
        except httpx.HTTPStatusError as exc:
            return False if exc.response.status_code == 403 else None
        except Exception:  # the probe's own calls report connection trouble
            return None
        return True

    async def _unreachable_peers(self, cluster: dict[str, Any]) -> tuple[int, ...]:
        """Peers that do not answer. The cluster telemetry asks every peer; GET /cluster's send failures
        only cover the peers the probed node itself messages (a follower talks to the leader alone), so
        they are the fallback when the telemetry is refused (e.g. an older server)."""
        wait = max(1, int(self.settings.health_check.timeout_seconds / 2))
        try:
            telemetry = (await self._session.send("GET", "/cluster/telemetry", params={"timeout": wait}))["result"]
            if telemetry.get("cluster") is not None:
                peers = telemetry["cluster"]["peers"].items()
                return tuple(sorted(int(p) for p, info in peers if not info["responsive"]))
        except Exception as exc:
            log.debug("connection %s: cluster telemetry unavailable (%s)", self.name, type(exc).__name__)
        failing = set(cluster.get("message_send_failures") or {})
        return tuple(sorted(int(p) for p, info in cluster["peers"].items() if info["uri"] in failing))

    def _probed(self, error: QdrantError | None) -> None:
        self.breaker.record_probe(error is None or not error.breaker_failure)

    def _breaker_changed(self, old: BreakerState, new: BreakerState) -> None:
        metrics.BREAKER_STATE.labels(self.name).state(new.value)
        log.warning("connection %s: circuit breaker %s -> %s", self.name, old.value, new.value)
        self._notify()

    @staticmethod
    def _compile(settings: ClientSettings) -> list[re.Pattern[str]]:
        return [re.compile(pattern, re.IGNORECASE) for pattern in settings.retry.extra_retryable_patterns]
