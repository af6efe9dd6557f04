"""The client layer against a real Qdrant REST server (the dev server, or QDRANT_URL): retries, breaker,
health, auth, TLS, pool limits and unknown outcomes. Waits are polls with deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from collection_operator.api.connection import BreakerState, Health, QdrantConnectionSpec
from collection_operator.config import ClientSettings, resolve
from collection_operator.qdrant import (
    CircuitOpen,
    ConnectionReport,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    PoolExhausted,
    QdrantGateway,
    TLSError,
    Transient,
    Unauthorized,
    Unreachable,
)
from tests.fixtures.qdrant import QdrantServer

pytestmark = pytest.mark.integration


def settings(**spec: Any) -> ClientSettings:
    """Testing profile, fast retries, plus the given spec blocks, through the real resolver."""
    fields = {"url": "http://unused:1", "environment": "Testing", **spec}
    fields.setdefault("retry", {"initialDelaySeconds": 0.05, "maxDelaySeconds": 0.2})
    return resolve(QdrantConnectionSpec.model_validate(fields))


def gateway_for(server: QdrantServer, name: str, **spec: Any) -> QdrantGateway:
    ca = server.ca_cert.read_text() if server.ca_cert else None
    return QdrantGateway(server.url, settings(**spec), name=name, api_key=server.api_key, ca_pem=ca)


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str, deadline_s: float = 15.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {deadline_s}s: {what}")


@pytest.fixture(scope="module")
def own_server(qdrant_server_factory: Callable[..., QdrantServer]) -> QdrantServer:
    """A dev server of this module's own, since tests here stop and start it."""
    server = qdrant_server_factory()
    return server


@pytest.fixture
async def running(own_server: QdrantServer) -> AsyncIterator[QdrantServer]:
    if not own_server.running:
        await asyncio.to_thread(own_server.start)
    yield own_server
    if not own_server.running:
        await asyncio.to_thread(own_server.start)
    own_server.clear_faults()


async def test_vector_name_calls_are_safe_to_repeat(qdrant_server: QdrantServer) -> None:
    """Both are retried (idempotent): Qdrant answers a repeated create with the same config, and a delete of a
    vector that is not there, with 200. A conflicting create is InvalidRequest, never AlreadyExists (which would
    send the reconciler to look for a collection created meanwhile)."""
    name = f"gw-vectors-{time.monotonic_ns()}"
    dense = {"dense": {"size": 3, "distance": "Cosine"}}
    async with gateway_for(qdrant_server, "vectors") as gateway:
        await gateway.create_collection(name, {"vectors": {"a": {"size": 4, "distance": "Dot"}}})
        try:
            await gateway.create_vector_name(name, "b", dense)
            await gateway.create_vector_name(name, "b", dense)
            other = {"dense": {"size": 5, "distance": "Dot"}}
            with pytest.raises(InvalidRequest, match="already exists with a different configuration"):
                await gateway.create_vector_name(name, "b", other)
            await gateway.delete_vector_name(name, "b")
            await gateway.delete_vector_name(name, "b")
            assert set((await gateway.get_collection(name))["config"]["params"]["vectors"]) == {"a"}
            with pytest.raises(NotFound):
                await gateway.delete_vector_name(f"{name}-missing", "b")
        finally:
            await gateway.delete_collection(name)


async def test_idempotent_call_is_retried_through_injected_503s(running: QdrantServer) -> None:
    running.reset_requests()
    running.set_faults(error_rate=1.0)
    before = (
        REGISTRY.get_sample_value(
            "qdrant_operator_client_retries_total",
            {"connection": "retry", "operation": "list_collections", "reason": "QdrantUnavailable"},
        )
        or 0.0
    )
    async with gateway_for(running, "retry", retry={"maxAttempts": 20, "initialDelaySeconds": 0.05}) as gateway:
        call = asyncio.create_task(gateway.list_collections())
        await eventually(lambda: running.count("GET", "/collections") >= 2, "two attempts answered 503")
        running.clear_faults()
        assert isinstance(await call, list)
    attempts = running.count("GET", "/collections")
    assert attempts >= 3
    retries = REGISTRY.get_sample_value(
        "qdrant_operator_client_retries_total",
        {"connection": "retry", "operation": "list_collections", "reason": "QdrantUnavailable"},
    )
    assert retries == before + attempts - 1


async def test_retries_are_bounded_and_the_error_is_typed(running: QdrantServer) -> None:
    running.reset_requests()
    running.set_faults(error_rate=1.0)
    gateway = gateway_for(running, "bounded", retry={"maxAttempts": 3, "initialDelaySeconds": 0.01})
    try:
        with pytest.raises(Transient, match="503") as raised:
            await gateway.list_collections()
        assert raised.value.reason == "QdrantUnavailable"
        assert running.count("GET", "/collections") == 3
    finally:
        await gateway.aclose()


async def test_breaker_opens_while_the_server_is_down_and_closes_after_restart(running: QdrantServer) -> None:
    transitions: list[BreakerState] = []
    gateway = gateway_for(
        running, "breaker", retry={"maxAttempts": 1}, circuitBreaker={"failureThreshold": 2, "openSeconds": 0.5}
    )
    gateway.subscribe(lambda report: transitions.append(report.circuit_breaker))
    try:
        assert await gateway.list_collections() is not None
        await asyncio.to_thread(running.stop)
        for _ in range(2):
            with pytest.raises(Unreachable):
                await gateway.list_collections()
        assert gateway.breaker_state is BreakerState.OPEN
        with pytest.raises(CircuitOpen) as refused:
            await gateway.list_collections()
        assert refused.value.reason == "CircuitOpen"

        await asyncio.to_thread(running.start)

        async def call_succeeds() -> bool:
            try:
                await gateway.list_collections()
            except CircuitOpen:
                return False
            return True

        await eventually(call_succeeds, "a trial call after the open period closes the breaker")
        assert gateway.breaker_state is BreakerState.CLOSED
        assert transitions == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    finally:
        await gateway.aclose()


async def test_health_goes_unhealthy_and_back_to_healthy(running: QdrantServer) -> None:
    reports: list[ConnectionReport] = []
    gateway = gateway_for(
        running,
        "health",
        healthCheck={"intervalSeconds": 0.1, "timeoutSeconds": 2, "failureThreshold": 2, "successThreshold": 1},
        circuitBreaker={"failureThreshold": 2, "openSeconds": 0.2},
    )
    gateway.subscribe(reports.append)
    assert gateway.health is Health.UNKNOWN
    async with gateway:
        await eventually(lambda: gateway.health is Health.HEALTHY, "healthy")
        assert gateway.server_version and gateway.report.distributed is False and gateway.report.peers == 1

        await asyncio.to_thread(running.stop)
        await eventually(lambda: gateway.health is Health.UNHEALTHY, "unhealthy once the server is gone")
        assert gateway.report.error_reason == "Unreachable"
        assert gateway.breaker_state in (BreakerState.OPEN, BreakerState.HALF_OPEN)

        await asyncio.to_thread(running.start)
        await eventually(lambda: gateway.health is Health.HEALTHY, "healthy after restart")
        # Probes count as trial calls once the open period is over: the breaker closes without any call.
        await eventually(lambda: gateway.breaker_state is BreakerState.CLOSED, "breaker closed by probes")
    healths = [report.health for report in reports]
    first_unhealthy = healths.index(Health.UNHEALTHY)
    assert Health.HEALTHY in healths[:first_unhealthy] and Health.HEALTHY in healths[first_unhealthy:]
    assert (
        REGISTRY.get_sample_value(
            "qdrant_operator_connection_health",
            {"connection": "health", "qdrant_operator_connection_health": "Healthy"},
        )
        == 1.0
    )


async def test_pool_limits_calls_and_reports_exhaustion(running: QdrantServer) -> None:
    running.set_faults(latency_ms=300)
    gateway = gateway_for(
        running, "pool", pool={"minConnections": 1, "maxConnections": 1, "acquireTimeoutSeconds": 0.05},
        retry={"maxAttempts": 1},
    )  # fmt: skip
    try:
        slow = asyncio.create_task(gateway.list_collections())
        await eventually(lambda: gateway.pool.in_use == 1, "first call holds the only lease")
        with pytest.raises(PoolExhausted, match="exhausted: 1/1 in use"):
            await gateway.list_collections()
        await slow
        assert gateway.breaker_state is BreakerState.CLOSED, "our own limit is not the server's failure"
        running.clear_faults()
        await gateway.pool.maintain()
        assert gateway.pool.size == 1, "the warm minimum is kept open"
    finally:
        await gateway.aclose()


async def test_many_concurrent_calls_share_a_small_pool(running: QdrantServer) -> None:
    gateway = gateway_for(running, "share", pool={"minConnections": 0, "maxConnections": 2})
    try:
        results = await asyncio.gather(*(gateway.list_collections() for _ in range(20)))
        assert len(results) == 20
        assert 1 <= gateway.pool.size <= 3  # two leases plus the connection kept for probes
    finally:
        await gateway.aclose()


async def test_create_that_times_out_has_an_unknown_outcome(running: QdrantServer) -> None:
    running.set_faults(create_timeout_but_applies=3.0)
    gateway = gateway_for(running, "unknown", retry={"maxAttempts": 5})
    body = {"vectors": {"size": 4, "distance": "Dot"}}
    try:
        if await gateway.collection_exists("outcome-unknown"):
            await gateway.delete_collection("outcome-unknown")
        running.reset_requests()
        with pytest.raises(OutcomeUnknown) as raised:
            await gateway.create_collection("outcome-unknown", body, timeout_seconds=0.5)
        assert raised.value.reason == "OutcomeUnknown"
        assert running.count("PUT", "/collections/{collection_name}") == 1, "a create is never retried"
        running.clear_faults()
        assert await gateway.collection_exists("outcome-unknown"), "it happened after all: observe before retrying"
        assert await gateway.delete_collection("outcome-unknown")
        assert not await gateway.delete_collection("outcome-unknown"), "deleting a missing collection is success"
    finally:
        await gateway.aclose()


async def test_wrong_api_key_is_unauthorized_and_rotation_fixes_it(
    qdrant_server_factory: Callable[..., QdrantServer],
) -> None:
    server = qdrant_server_factory(api_key="right-key")
    gateway = QdrantGateway(server.url, settings(retry={"maxAttempts": 3}), name="auth", api_key="wrong-key")
    try:
        with pytest.raises(Unauthorized) as raised:
            await gateway.list_collections()
        assert raised.value.status_code in (401, 403) and raised.value.reason == "Unauthorized"
        assert gateway.breaker_state is BreakerState.CLOSED, "an answer, even a refusal, means the server is up"
        await gateway.monitor.probe_once()
        assert gateway.report.error_reason == "Unauthorized"

        await gateway.update_credentials("right-key")
        assert isinstance(await gateway.list_collections(), list)
        await gateway.monitor.probe_once()
        assert gateway.health is Health.HEALTHY
    finally:
        await gateway.aclose()


async def test_tls_with_and_without_the_ca(qdrant_server_factory: Callable[..., QdrantServer]) -> None:
    server = qdrant_server_factory(tls=True)
    assert server.ca_cert is not None
    untrusted = QdrantGateway(server.url, settings(retry={"maxAttempts": 1}), name="tls-untrusted")
    trusted = QdrantGateway(server.url, settings(), name="tls", ca_pem=server.ca_cert.read_text())
    try:
        with pytest.raises(TLSError) as raised:
            await untrusted.list_collections()
        assert raised.value.reason == "TLSError"
        assert isinstance(await trusted.list_collections(), list)
        await untrusted.update_credentials(None, ca_pem=server.ca_cert.read_text())  # CA Secret rotated in
        assert isinstance(await untrusted.list_collections(), list)
    finally:
        await untrusted.aclose()
        await trusted.aclose()


async def test_address_policy_refuses_before_any_request_and_a_foreign_reply_never_reaches_a_message(
    own_server: QdrantServer,
) -> None:
    """The client layer alone: a URL outside allowed_hosts is sent nothing (calls, probes, warm-up)."""
    import http.server
    import threading

    from collection_operator.config.address_policy import AddressPolicy
    from collection_operator.qdrant import AddressNotAllowed

    own_server.reset_requests()
    policy = AddressPolicy(allowed_hosts=("127.0.0.2/32",))
    refused = settings(environment="Testing").model_copy(update={"address_policy": policy})
    async with QdrantGateway(own_server.url, refused, name="refused", api_key=own_server.api_key) as gateway:
        with pytest.raises(AddressNotAllowed, match="allowed_hosts"):
            await gateway.list_collections()
        report = await gateway.monitor.probe_once()
        assert report.error_reason == "AddressNotAllowed"
        assert gateway.breaker_state == BreakerState.CLOSED  # our refusal says nothing about the server
    assert sum(own_server.requests()["counts"].values()) == 0

    marker = "foreign-body-7f3a"

    class NotQdrant(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"<html>{marker}</html>".encode()
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotQdrant)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        async with QdrantGateway(url, settings(environment="Testing"), name="not-qdrant") as gateway:
            report = await gateway.monitor.probe_once()
            assert report.error is not None and marker not in report.error.message
            assert "not a Qdrant error response" in report.error.message
    finally:
        server.shutdown()
        server.server_close()
