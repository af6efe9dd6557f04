"""QdrantConnection verdicts from the client's report: pure, no I/O."""

from __future__ import annotations

import dataclasses

import pytest

from collection_operator.api.connection import BreakerState, Health
from collection_operator.qdrant import ConnectionReport, EndpointReport
from collection_operator.reconcile.connection import status, verdict


def report(
    health: Health,
    version: str | None = "1.19.0",
    breaker: BreakerState = BreakerState.CLOSED,
    reason: str | None = None,
) -> ConnectionReport:
    return ConnectionReport(health, version, False, 1, breaker, reason, f"{reason} message" if reason else None)


@pytest.mark.parametrize(
    ("given", "state", "reason"),
    [
        (report(Health.UNKNOWN, None), "Reconciling", "Connecting"),
        (report(Health.HEALTHY), "Ready", "Connected"),
        # A refusal is a configuration problem: Failed at the first probe, not after the failure threshold.
        (report(Health.DEGRADED, None, reason="Unauthorized"), "Failed", "Unauthorized"),
        (report(Health.DEGRADED, reason="TLSError"), "Failed", "TLSError"),
        # Never connected and failing: not Ready either.
        (report(Health.DEGRADED, None, reason="Unreachable"), "Failed", "Unreachable"),
        # Was connected, one probe failed: Ready but Degraded until the threshold.
        (report(Health.DEGRADED, reason="Unreachable"), "Ready", "Degraded"),
        (report(Health.DEGRADED), "Ready", "Degraded"),  # answered, but reports trouble
        (report(Health.UNHEALTHY, reason="Unreachable"), "Failed", "Unreachable"),
        (report(Health.UNHEALTHY, breaker=BreakerState.OPEN, reason="Unreachable"), "Failed", "CircuitOpen"),
        # Half-open while still unhealthy: the same outage, so the reason does not flap (no new Event).
        (report(Health.UNHEALTHY, breaker=BreakerState.HALF_OPEN, reason="Unreachable"), "Failed", "CircuitOpen"),
        (report(Health.HEALTHY, breaker=BreakerState.HALF_OPEN), "Reconciling", "Recovering"),
        # A read-only key: a person must give a read-write one; an outage still reads as an outage.
        (dataclasses.replace(report(Health.HEALTHY), read_only=True), "Stalled", "ReadOnlyKey"),
        (
            dataclasses.replace(report(Health.UNHEALTHY, reason="Unreachable"), read_only=True),
            "Failed",
            "Unreachable",
        ),
    ],
)
def test_verdict(given: ConnectionReport, state: str, reason: str) -> None:
    v = verdict(given)
    assert (v.state, v.reason) == (state, reason)


@pytest.mark.parametrize(
    ("versions", "supported"),
    [
        (["1.19.0"], True),
        (["1.18.0"], True),
        (["v1.18.1-rc.1"], True),
        (["1.17.9"], False),
        (["0.99.0"], False),
        ([None], False),  # not probed yet: as an old server
        (["garbage"], False),
        (["1.19.0", "1.19.0"], True),
        (["1.19.0", "1.17.1"], False),  # a rolling upgrade: some nodes could not apply it
        (["1.19.0", None], False),
    ],
)
def test_in_place_vectors_need_qdrant_1_18_on_every_endpoint(versions: list[str | None], supported: bool) -> None:
    single = report(Health.HEALTHY, versions[0])
    if len(versions) == 1:
        assert single.in_place_vectors is supported
        return
    endpoints = tuple(
        EndpointReport(f"http://q{i}:6333", Health.HEALTHY, v, BreakerState.CLOSED, True, None)
        for i, v in enumerate(versions)
    )
    assert dataclasses.replace(single, endpoints=endpoints).in_place_vectors is supported


@pytest.mark.parametrize("jwt_rbac", [True, False, None])
def test_status_shows_whether_qdrant_takes_tokens(jwt_rbac: bool | None) -> None:
    given = dataclasses.replace(report(Health.HEALTHY), jwt_rbac=jwt_rbac)
    wire = status(given, 0, "http://q:6333").to_patch()
    assert wire["jwtRbac"] is jwt_rbac
    assert verdict(given).reason == "Connected"  # JWT RBAC off is the keys' concern, not the connection's
