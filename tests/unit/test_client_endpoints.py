"""QdrantEndpoints without a server: balancing, failover and the combined report. Attempts run through each
endpoint's real gateway (address check, breaker, pool lease); `fn` plays the server per endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pydantic
import pytest

from collection_operator.api.connection import BreakerState, Health, QdrantConnectionSpec
from collection_operator.config import resolve
from collection_operator.qdrant import (
    CircuitOpen,
    HealthReport,
    OutcomeUnknown,
    QdrantEndpoints,
    Transient,
    Unreachable,
)
from collection_operator.qdrant.adapters import QdrantSnapshots
from collection_operator.qdrant.endpoints import quorum
from collection_operator.reconcile.connection import status, verdict

URLS = ("http://127.0.0.1:7001", "http://127.0.0.1:7002", "http://127.0.0.1:7003")


def endpoints(
    balancing: str = "LeastOutstanding", attempts: int = 3, **spec: Any
) -> tuple[QdrantEndpoints, list[float]]:
    fields = {
        "endpoints": list(URLS),
        "environment": "Testing",
        "loadBalancing": balancing,
        "retry": {"maxAttempts": attempts, "initialDelaySeconds": 0.5, "jitter": 0},
        **spec,
    }
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = QdrantEndpoints(URLS, resolve(QdrantConnectionSpec.model_validate(fields)), name="t/e", sleep=sleep)
    return client, sleeps


def server(client: QdrantEndpoints, behaviour: Callable[[int], Any]) -> tuple[Callable[[Any], Any], list[int]]:
    """An `fn` that records which endpoint it ran on and does what `behaviour(index)` says."""
    seen: list[int] = []

    async def fn(qdrant: Any) -> Any:
        index = next(i for i, m in enumerate(client.members) if m._session.qdrant is qdrant)
        seen.append(index)
        result = behaviour(index)
        if isinstance(result, BaseException):
            raise result
        return result

    return fn, seen


def refused() -> httpx.ConnectError:
    return httpx.ConnectError("[Errno 111] Connection refused")


def probed(client: QdrantEndpoints, index: int, health: Health, reason: str | None = None) -> None:
    client.members[index].monitor.report = HealthReport(
        health, "1.19.0", distributed=True, peers=3, error_reason=reason
    )


def test_spec_takes_url_or_endpoints_exactly_one() -> None:
    assert QdrantConnectionSpec.model_validate({"endpoints": list(URLS)}).targets == URLS
    assert QdrantConnectionSpec.model_validate({"url": URLS[0]}).targets == (URLS[0],)
    for wrong in ({}, {"url": URLS[0], "endpoints": list(URLS)}):
        with pytest.raises(pydantic.ValidationError, match=r"exactly one of spec\.url and spec\.endpoints"):
            QdrantConnectionSpec.model_validate(wrong)
    for bad in ("http://user:pw@q:6333", "http://q:6333/?api-key=x"):
        with pytest.raises(pydantic.ValidationError, match=r"spec\.endpoints must not contain credentials"):
            QdrantConnectionSpec.model_validate({"endpoints": [URLS[0], bad]})
    with pytest.raises(pydantic.ValidationError):
        QdrantConnectionSpec.model_validate({"endpoints": []})
    with pytest.raises(pydantic.ValidationError, match="repeat"):
        QdrantConnectionSpec.model_validate({"endpoints": [URLS[0], URLS[0]]})


async def test_round_robin_takes_endpoints_in_turn() -> None:
    client, _ = endpoints("RoundRobin")
    fn, seen = server(client, lambda i: i)
    for _ in range(6):
        await client.call("op", fn, idempotent=True)
    assert seen == [0, 1, 2, 0, 1, 2]
    await client.aclose()


async def test_least_outstanding_avoids_the_busy_endpoint() -> None:
    client, _ = endpoints()
    fn, seen = server(client, lambda i: i)
    client.outstanding[0] = 5  # calls in flight there
    for _ in range(4):
        await client.call("op", fn, idempotent=True)
    assert 0 not in seen and sorted(seen) == [1, 1, 2, 2]
    await client.aclose()


async def test_unreachable_endpoint_fails_over_at_once_even_with_one_attempt() -> None:
    client, sleeps = endpoints("RoundRobin", attempts=1)
    fn, seen = server(client, lambda i: refused() if i == 0 else "ok")
    assert await client.call("op", fn, idempotent=True) == "ok"
    assert await client.call("create", fn, idempotent=False) == "ok"  # nothing was sent to 0: safe to move on
    assert seen[:2] == [0, 1] and sleeps == []
    await client.aclose()


async def test_idempotent_retry_goes_to_another_endpoint_before_the_same_one() -> None:
    client, sleeps = endpoints("RoundRobin", attempts=4)
    fn, seen = server(client, lambda i: Transient("HTTP 503"))
    with pytest.raises(Transient):
        await client.call("op", fn, idempotent=True)
    assert seen == [0, 1, 2, 0]  # every endpoint once, then back to one already tried
    assert sleeps == [pytest.approx(0.5 * 2**2)]  # only the return to a tried endpoint waits (backoff of attempt 3)
    await client.aclose()


async def test_non_idempotent_call_is_never_sent_twice() -> None:
    client, _ = endpoints("RoundRobin", attempts=5)
    fn, seen = server(client, lambda i: httpx.ReadTimeout("lost reply"))
    with pytest.raises(OutcomeUnknown):
        await client.call("create", fn, idempotent=False)
    assert seen == [0]
    fn, seen = server(client, lambda i: Transient("HTTP 503"))
    with pytest.raises(Transient):
        await client.call("create", fn, idempotent=False)
    assert len(seen) == 1
    await client.aclose()


async def test_open_breaker_takes_an_endpoint_out_and_probes_bring_it_back() -> None:
    client, _ = endpoints("RoundRobin", circuitBreaker={"failureThreshold": 1, "openSeconds": 30})
    down = {1}
    fn, seen = server(client, lambda i: refused() if i in down else i)
    for _ in range(4):
        await client.call("op", fn, idempotent=True)
    assert client.members[1].breaker_state is BreakerState.OPEN and not client.in_rotation(1)
    seen.clear()
    for _ in range(4):
        await client.call("op", fn, idempotent=True)
    assert 1 not in seen  # out of rotation: not even tried
    down.clear()
    client.members[1].breaker.state  # noqa: B018 - the open period is not over: a good probe does not close it
    client.members[1].breaker.record_probe(True)
    assert not client.in_rotation(1)
    client.members[1].breaker._opened_at -= 31  # the open period is over
    client.members[1].breaker.record_probe(True)
    assert client.in_rotation(1)
    seen.clear()
    for _ in range(3):
        await client.call("op", fn, idempotent=True)
    assert sorted(seen) == [0, 1, 2]
    await client.aclose()


async def test_all_breakers_open_is_circuit_open() -> None:
    client, _ = endpoints(circuitBreaker={"failureThreshold": 1, "openSeconds": 30})
    for member in client.members:
        member.breaker.record_failure()
    fn, seen = server(client, lambda i: i)
    with pytest.raises(CircuitOpen):
        await client.call("op", fn, idempotent=True)
    assert seen == [] and client.report.circuit_breaker is BreakerState.OPEN
    await client.aclose()


async def test_all_unreachable_is_unreachable_after_the_retry_policy() -> None:
    client, sleeps = endpoints(attempts=2)
    fn, seen = server(client, lambda i: refused())
    with pytest.raises(Unreachable):
        await client.call("op", fn, idempotent=True)
    assert len(seen) == 3 + 2 and len(sleeps) == 2  # each endpoint once for free, then the policy's attempts
    await client.aclose()


async def test_report_healthy_degraded_unhealthy_by_quorum() -> None:
    assert [quorum(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]
    client, _ = endpoints()
    assert client.report.health is Health.UNKNOWN
    for i in range(3):
        probed(client, i, Health.HEALTHY)
    report = client.report
    assert report.health is Health.HEALTHY and verdict(report).reason == "Connected"
    assert [e.in_rotation for e in report.endpoints] == [True, True, True]

    probed(client, 2, Health.UNHEALTHY, "Unreachable")
    report = client.report
    assert report.health is Health.DEGRADED and report.server_version == "1.19.0"
    assert verdict(report).ready and verdict(report).reason == "Degraded"
    assert f"1 of 3 endpoints not answering: {URLS[2]} (Unreachable)" in (report.error_message or "")
    written = status(report, 0, URLS[0]).to_patch()
    assert [(e["url"], e["health"], e["inRotation"]) for e in written["endpoints"]] == [
        (URLS[0], "Healthy", True),
        (URLS[1], "Healthy", True),
        (URLS[2], "Unhealthy", False),
    ]
    assert written["health"] == "Degraded" and written["peers"] == 3

    probed(client, 1, Health.UNHEALTHY, "Unreachable")
    report = client.report
    assert report.health is Health.UNHEALTHY and not verdict(report).ready
    assert verdict(report).reason == "Unreachable"

    probed(client, 1, Health.HEALTHY)
    probed(client, 2, Health.HEALTHY)
    assert client.report.health is Health.HEALTHY
    await client.aclose()


async def test_jwt_rbac_is_the_first_endpoint_that_knows() -> None:
    """One API key for every endpoint: an endpoint not yet asked (None) does not hide one that answered."""
    client, _ = endpoints()
    assert client.report.jwt_rbac is None
    client.members[1].monitor.report = HealthReport(Health.HEALTHY, "1.19.0", jwt_rbac=True)
    assert client.report.jwt_rbac is True
    await client.aclose()


async def test_single_url_connection_writes_no_endpoint_list() -> None:
    from collection_operator.qdrant import QdrantGateway

    spec = QdrantConnectionSpec.model_validate({"url": URLS[0], "environment": "Testing"})
    gateway = QdrantGateway(URLS[0], resolve(spec), name="t/one")
    assert "endpoints" not in status(gateway.report, 0, URLS[0]).to_wire()
    await gateway.aclose()


async def test_snapshots_stay_on_the_first_endpoint() -> None:
    client, _ = endpoints(circuitBreaker={"failureThreshold": 1, "openSeconds": 30})
    client.members[0].breaker.record_failure()  # the first endpoint is out: other calls move on, snapshots do not
    fn, _ = server(client, lambda i: i)
    assert await client.call("op", fn, idempotent=True) in (1, 2)
    for snapshot_call in (client.list_snapshots("c"), client.delete_snapshot("c", "s"), client.create_snapshot("c")):
        with pytest.raises(CircuitOpen):
            await snapshot_call
    await client.aclose()


async def test_placement_is_read_on_the_first_endpoint_while_it_answers() -> None:
    client, _ = endpoints(circuitBreaker={"failureThreshold": 1, "openSeconds": 30})
    seen: list[int] = []

    def on(index: int) -> Any:
        async def send(method: str, path: str, **_: Any) -> dict[str, str]:
            assert (method, path) == ("GET", "/collections/c/cluster")
            seen.append(index)
            return {"result": f"placement from {index}"}

        return send

    for index, member in enumerate(client.members):
        member._session.send = on(index)  # type: ignore[method-assign]
    assert [await client.collection_cluster("c") for _ in range(3)] == ["placement from 0"] * 3
    client.members[0].breaker.record_failure()  # the first endpoint is out: read elsewhere rather than fail
    assert await client.collection_cluster("c") in ("placement from 1", "placement from 2")
    await client.aclose()


async def test_each_endpoint_names_its_own_peer_and_shard_snapshots_go_to_the_one_named() -> None:
    client, _ = endpoints(circuitBreaker={"failureThreshold": 1, "openSeconds": 30})
    sent: list[tuple[int, str, str]] = []

    def on(index: int) -> Any:
        async def send(method: str, path: str, **_: Any) -> dict[str, Any]:
            sent.append((index, method, path))
            if path == "/cluster":  # each node's own peer id; its `peers` URIs are p2p addresses
                return {"result": {"peer_id": 100 + index, "peers": {"101": {"uri": "http://127.0.0.1:9/"}}}}
            return {"result": {"name": f"c-shard-1-{index}.snapshot"}}

        return send

    for index, member in enumerate(client.members):
        member._session.send = on(index)  # type: ignore[method-assign]
    snapshots = QdrantSnapshots(client)
    client.members[1].breaker.record_failure()  # a node that does not answer now is left out, not guessed
    assert await snapshots.nodes() == {"100": URLS[0], "102": URLS[2]}
    assert (await snapshots.create_shard_snapshot("c", 1, URLS[2]))["name"] == "c-shard-1-2.snapshot"
    assert sent[-1] == (2, "POST", "/collections/c/shards/1/snapshots")
    await snapshots.recover_shard("c", 1, URLS[0], "http://127.0.0.1:7003/x", "abc", None)
    await snapshots.delete_shard_snapshot("c", 1, "c-shard-1-2.snapshot", URLS[2])
    assert sent[-2:] == [
        (0, "PUT", "/collections/c/shards/1/snapshots/recover"),
        (2, "DELETE", "/collections/c/shards/1/snapshots/c-shard-1-2.snapshot"),
    ]
    with pytest.raises(CircuitOpen):  # pinned to the node named: no failover to another
        await snapshots.create_shard_snapshot("c", 1, URLS[1])
    await client.aclose()
