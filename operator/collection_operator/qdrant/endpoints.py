"""QdrantEndpoints: several endpoints of one Qdrant deployment (the nodes of a cluster) behind the surface of
one QdrantGateway (`call`, `report`, `subscribe`, `start`, `aclose`, `update_credentials`, `update_settings`
and the typed calls), so the operator and VectorOperations use either without knowing which.

Each endpoint keeps its own QdrantGateway: pool, circuit breaker and health monitor. On top of them:

- Balancing: every attempt goes to an endpoint in rotation, the one with the fewest attempts in flight
  (LeastOutstanding, ties taken in turn) or simply the next one (RoundRobin). An endpoint is in rotation
  while its breaker is Closed and its last health probe passed; one that fails is taken out and comes back
  by itself when its probes pass again (and, after an opened breaker, once the open period is over).
- Failover: an attempt refused before reaching the server (breaker open, address policy) or that never
  reached it (cannot connect, pool exhausted, TLS handshake) moves to another endpoint at once and costs no
  attempt of the retry policy, for every call. Idempotent calls also move on after a retryable failure
  (503, 429, timeouts): to an endpoint not yet tried in this call first, and back to one already tried,
  after the policy's backoff, only when none is left; at most `retry.max_attempts` attempts that may have
  reached a server. A non-idempotent call reaches at most one server: after a failure that may have
  reached it (a lost reply is OutcomeUnknown) it is never sent again, to that endpoint or another.
- Report: Healthy while every endpoint answers, Degraded while a majority (quorum) does, Unhealthy once a
  majority is down (health Unhealthy or breaker Open); `report.endpoints` has each endpoint's own view.
- Snapshots (create, list, delete) always go to the first endpoint: the file lives on the node that took it.
  Shard snapshots, which must be taken on a node holding the shard, go to the endpoint named (`node(url)`).
  A collection's placement is read there too while it answers (its local shards are what a snapshot holds).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .. import metrics
from ..api.connection import BreakerState, Health, LoadBalancing
from ..config import ClientSettings
from .client import Shared
from .errors import AddressNotAllowed, CircuitOpen, PoolExhausted, QdrantError, TLSError, Unreachable
from .gateway import QdrantGateway
from .report import ConnectionReport, EndpointReport
from .retry import backoff_delay
from .session import Session

log = logging.getLogger(__name__)

T = TypeVar("T")

# Refused by our side before anything was sent: the next endpoint is tried, the endpoint is not again.
REFUSED = (CircuitOpen, AddressNotAllowed)
# Failed before the request reached the server: another endpoint is safe even for a non-idempotent call.
NOT_SENT = (Unreachable, PoolExhausted, TLSError)


def endpoint_label(url: str) -> str:
    """host:port (and path) of an endpoint URL: the suffix of its gateway's name in metrics and logs."""
    parts = urlsplit(url)
    return parts.netloc + parts.path.rstrip("/")


def quorum(endpoints: int) -> int:
    return endpoints // 2 + 1


class QdrantEndpoints(Shared):
    """Several endpoints of one Qdrant as one client; see the module docstring."""

    def __init__(
        self,
        urls: Sequence[str],
        settings: ClientSettings,
        *,
        name: str,
        api_key: str | None = None,
        ca_pem: str | None = None,
        verify: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not urls:
            raise ValueError("QdrantEndpoints needs at least one URL")
        if len(set(urls)) != len(urls):
            raise ValueError("QdrantEndpoints: a URL appears twice")
        super().__init__(name, settings)
        self.urls = tuple(urls)
        self.url = self.urls[0]
        self._sleep = sleep
        self._rand = rand
        self.members = [
            QdrantGateway(
                url,
                settings,
                name=f"{name}@{endpoint_label(url)}",
                api_key=api_key,
                ca_pem=ca_pem,
                verify=verify,
                clock=clock,
                sleep=sleep,
            )
            for url in self.urls
        ]
        self.outstanding = [0] * len(self.members)
        self._next = 0  # round-robin cursor, also the tie-break of least outstanding
        for member in self.members:
            member.subscribe(lambda _report: self._notify())
        self._publish_metrics(self.report)

    # ----- state -------------------------------------------------------------------------------------

    def in_rotation(self, index: int) -> bool:
        """Whether calls go to endpoint `index`: breaker Closed and its last probe passed (or none ran yet)."""
        member = self.members[index]
        health = member.monitor.report
        return (
            member.breaker.state is BreakerState.CLOSED
            and health.health is not Health.UNHEALTHY
            and health.error_reason is None
        )

    @property
    def report(self) -> ConnectionReport:
        reports = [member.report for member in self.members]
        endpoints = tuple(
            EndpointReport(
                url=member.url,
                health=report.health,
                server_version=report.server_version,
                circuit_breaker=report.circuit_breaker,
                in_rotation=self.in_rotation(index),
                error_reason=report.error_reason,
                error_message=report.error_message,
            )
            for index, (member, report) in enumerate(zip(self.members, reports, strict=True))
        )
        answering = [
            i
            for i, r in enumerate(reports)
            if r.health in (Health.HEALTHY, Health.DEGRADED)
            and r.error_reason is None
            and r.circuit_breaker is not BreakerState.OPEN
        ]
        down = [
            i for i, r in enumerate(reports) if r.health is Health.UNHEALTHY or r.circuit_breaker is BreakerState.OPEN
        ]
        unknown = [i for i, r in enumerate(reports) if r.health is Health.UNKNOWN and i not in down]
        total, needed = len(reports), quorum(len(reports))
        failing = [i for i in range(total) if i not in answering and i not in unknown]
        error_reason: str | None = None
        if len(answering) == total and all(r.health is Health.HEALTHY for r in reports):
            health = Health.HEALTHY
        elif len(answering) >= needed:
            health = Health.DEGRADED  # serving; what is wrong goes in the message
        elif len(down) > total - needed:
            health = Health.UNHEALTHY  # a majority is down: no quorum can answer
            error_reason = reports[down[0]].error_reason or "Unreachable"
        elif unknown:
            health = Health.UNKNOWN  # waiting for first probes that may still make a quorum
        else:
            health = Health.DEGRADED  # failing, but not yet past the failure threshold (as for one endpoint)
            error_reason = reports[failing[0]].error_reason if failing else None
        source = reports[answering[0]] if answering else None
        versions = [r.server_version for r in reports if r.server_version]
        if source is not None and source.server_version:
            server_version: str | None = source.server_version
        else:
            server_version = versions[0] if versions else None
        return ConnectionReport(
            health=health,
            server_version=server_version,
            distributed=source.distributed if source else None,
            peers=source.peers if source else None,
            circuit_breaker=self._breaker(reports),
            error_reason=error_reason,
            error_message=self._message(reports, answering, source),
            topology=source.topology if source else None,
            read_only=any(r.read_only for r in reports),  # one API key for all endpoints
            jwt_rbac=next((r.jwt_rbac for r in reports if r.jwt_rbac is not None), None),
            endpoints=endpoints,
        )

    @staticmethod
    def _breaker(reports: Sequence[ConnectionReport]) -> BreakerState:
        """Closed while any endpoint's breaker lets calls through, Open once all are open."""
        states = {r.circuit_breaker for r in reports}
        if BreakerState.CLOSED in states:
            return BreakerState.CLOSED
        if BreakerState.HALF_OPEN in states:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def _message(
        self, reports: Sequence[ConnectionReport], answering: Sequence[int], source: ConnectionReport | None
    ) -> str | None:
        missing = [
            f"{self.urls[i]} ({reports[i].error_reason or reports[i].circuit_breaker.value}"
            + (f": {reports[i].error_message}" if reports[i].error_message else "")
            + ")"
            for i in range(len(reports))
            if i not in answering and reports[i].health is not Health.UNKNOWN
        ]
        parts = []
        if missing:
            parts.append(f"{len(missing)} of {len(reports)} endpoints not answering: {'; '.join(missing)}")
        if source is not None and source.error_message:
            parts.append(source.error_message)  # the answering node's own trouble (e.g. peers not answering)
        return "; ".join(parts) or None

    def node(self, url: str) -> QdrantGateway:
        """The gateway of endpoint `url`, with its own retry policy and no failover: a shard snapshot is taken,
        listed and deleted on the node that holds it."""
        return self.members[self.urls.index(url)]

    # ----- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        for member in self.members:
            member.start()

    async def stop(self) -> None:
        for member in self.members:
            await member.stop()

    async def aclose(self) -> None:
        for member in self.members:
            await member.aclose()

    async def update_credentials(self, api_key: str | None, ca_pem: str | None = None, verify: bool = True) -> None:
        for member in self.members:
            await member.update_credentials(api_key, ca_pem, verify)

    async def update_settings(self, settings: ClientSettings) -> None:
        self.settings = settings
        for member in self.members:
            await member.update_settings(settings)

    # ----- calls -------------------------------------------------------------------------------------

    async def _run(
        self, operation: str, fn: Callable[[Session], Awaitable[T]], idempotent: bool, timeout_seconds: float | None
    ) -> T:
        """Run `fn(session)` on one endpoint, failing over to others as the module docstring says. Raises
        the last attempt's QdrantError when no endpoint or attempt is left."""
        budget = self.settings.retry.max_attempts if idempotent else 1
        spent = 0  # attempts that may have reached a server
        refused: set[int] = set()  # refused by our side in this call (breaker, address policy): not tried again
        unsent: set[int] = set()  # could not be reached: tried again only when nothing else is left
        tried: set[int] = set()
        error: QdrantError | None = None
        while True:
            index = self._choose(tried, refused | unsent, allow_again=idempotent)
            if index is None and idempotent and spent < budget:
                index = self._choose(tried, refused, allow_again=True)
            if index is None:
                raise error if error is not None else CircuitOpen("no endpoint accepts calls")
            if index in tried:
                delay = backoff_delay(self.settings.retry, max(spent, 1), self._rand)
                if error is not None and error.retry_after:
                    delay = max(delay, min(error.retry_after, self.settings.retry.max_delay_seconds))
                await self._sleep(delay)
            try:
                return await self._attempt(index, fn, idempotent, timeout_seconds)
            except QdrantError as failure:
                error = failure
                if isinstance(failure, REFUSED):
                    refused.add(index)
                elif isinstance(failure, NOT_SENT) and index not in tried:
                    tried.add(index)  # nothing was sent: another endpoint now, and no attempt spent
                    unsent.add(index)
                else:
                    tried.add(index)
                    spent += 1
                    if not (idempotent and failure.retryable) or spent >= budget:
                        raise
                metrics.ENDPOINT_FAILOVERS.labels(self.name, self.urls[index], failure.reason).inc()
                metrics.RETRIES.labels(self.name, operation, failure.reason).inc()
                log.info("%s %s on %s: %s; trying again", self.name, operation, self.urls[index], failure.reason)

    def _choose(self, tried: set[int], skip: set[int], *, allow_again: bool) -> int | None:
        """The endpoint for the next attempt: in rotation and untried, then (idempotent calls) in rotation and
        tried, then out of rotation the same way; by the balancing policy within each group."""
        count = len(self.members)
        usable = [i for i in range(count) if i not in skip and (allow_again or i not in tried)]
        if not usable:
            return None
        least = self.settings.load_balancing == LoadBalancing.LEAST_OUTSTANDING

        def rank(i: int) -> tuple[int, int, int, int]:
            turn = (i - self._next) % count
            return (0 if self.in_rotation(i) else 1, 1 if i in tried else 0, self.outstanding[i] if least else 0, turn)

        index = min(usable, key=rank)
        self._next = (index + 1) % count
        return index

    async def _attempt(
        self,
        index: int,
        fn: Callable[[Session], Awaitable[T]],
        idempotent: bool,
        timeout_seconds: float | None,
    ) -> T:
        url = self.urls[index]
        self.outstanding[index] += 1
        metrics.ENDPOINT_OUTSTANDING.labels(self.name, url).set(self.outstanding[index])
        try:
            result = await self.members[index].attempt(fn, idempotent=idempotent, timeout_seconds=timeout_seconds)
        except QdrantError as error:
            metrics.ENDPOINT_ATTEMPTS.labels(self.name, url, error.reason).inc()
            raise
        finally:
            self.outstanding[index] -= 1
            metrics.ENDPOINT_OUTSTANDING.labels(self.name, url).set(self.outstanding[index])
        metrics.ENDPOINT_ATTEMPTS.labels(self.name, url, "ok").inc()
        return result

    # ----- snapshots: pinned to the first endpoint -------------------------------------------------------
    # A collection snapshot is a file on the node that took it; listing, deleting or downloading it through
    # another node would not find it. So snapshot calls all go to the first endpoint (spec.primary_url, which
    # restores download from too), with that endpoint's own retry policy: no failover for them.

    async def collection_cluster(self, name: str) -> dict[str, Any]:
        """The placement as the first endpoint sees it (its local shards are the ones a snapshot taken there
        holds), from another endpoint only when the first one cannot answer."""
        try:
            return await self.members[0].collection_cluster(name)
        except QdrantError as error:
            if not (error.retryable or isinstance(error, (*REFUSED, *NOT_SENT))):
                raise
        return await super().collection_cluster(name)

    async def create_snapshot(
        self, collection: str, *, shard: int | None = None, timeout_seconds: float | None = None
    ) -> dict[str, Any]:
        return await self.members[0].create_snapshot(collection, shard=shard, timeout_seconds=timeout_seconds)

    async def list_snapshots(self, collection: str) -> list[dict[str, Any]]:
        return await self.members[0].list_snapshots(collection)

    async def delete_snapshot(self, collection: str, snapshot: str, *, shard: int | None = None) -> bool:
        return await self.members[0].delete_snapshot(collection, snapshot, shard=shard)

    async def download_snapshot(
        self, collection: str, snapshot: str, *, shard: int | None = None, timeout_seconds: float | None = None
    ) -> AsyncIterator[bytes]:
        chunks = self.members[0].download_snapshot(collection, snapshot, shard=shard, timeout_seconds=timeout_seconds)
        async for chunk in chunks:
            yield chunk

    # ----- internals ---------------------------------------------------------------------------------

    def _publish_metrics(self, report: ConnectionReport) -> None:
        metrics.HEALTH.labels(self.name).state(report.health.value)
        metrics.BREAKER_STATE.labels(self.name).state(report.circuit_breaker.value)
        for endpoint in report.endpoints:
            metrics.ENDPOINT_HEALTH.labels(self.name, endpoint.url).state(endpoint.health.value)
            metrics.ENDPOINT_BREAKER_STATE.labels(self.name, endpoint.url).state(endpoint.circuit_breaker.value)
            metrics.ENDPOINT_IN_ROTATION.labels(self.name, endpoint.url).set(1 if endpoint.in_rotation else 0)

    def _changed(self, previous: ConnectionReport | None, report: ConnectionReport) -> None:
        self._publish_metrics(report)
        if previous is None or previous.health != report.health:
            log.info("connection %s health %s (%s)", self.name, report.health.value, report.error_message or "ok")
