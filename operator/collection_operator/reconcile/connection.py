"""QdrantConnection: the client's report -> status fields and verdict. Pure."""

from __future__ import annotations

from typing import Any

from ..api.connection import BreakerState, Health
from ..k8s.conditions import Verdict
from ..qdrant import ConnectionReport

# The server answered and refused us, or we cannot speak TLS to it: a configuration problem that no
# number of further probes will cure, so it is reported at once rather than after the failure threshold.
REFUSED = ("Unauthorized", "TLSError")


def verdict(report: ConnectionReport) -> Verdict:
    failing = report.error_reason is not None and report.health in (Health.DEGRADED, Health.UNHEALTHY)
    if report.circuit_breaker == BreakerState.OPEN or (
        report.circuit_breaker == BreakerState.HALF_OPEN and report.health == Health.UNHEALTHY
    ):
        # HalfOpen while still unhealthy is the same outage waiting for its trial call, not a new transition.
        cause = f" after {report.error_reason}" if report.error_reason else ""
        return Verdict("Failed", "CircuitOpen", f"circuit breaker open{cause}: {report.error_message or ''}".strip())
    if report.circuit_breaker == BreakerState.HALF_OPEN:
        # The probe that half-opened it decides within one call; until then collections hold back too,
        # since the breaker lets only that one trial through.
        return Verdict("Reconciling", "Recovering", "circuit breaker half-open: a trial call decides")
    if report.health == Health.UNKNOWN:
        return Verdict("Reconciling", "Connecting", "waiting for the first health probe")
    if failing and (report.error_reason in REFUSED or report.server_version is None):
        # Refused, or failing since the first probe: never Ready, even below the failure threshold.
        return Verdict("Failed", report.error_reason or "Unreachable", report.error_message or "health probes fail")
    if report.health == Health.UNHEALTHY:
        return Verdict("Failed", report.error_reason or "Unreachable", report.error_message or "health probes fail")
    if report.health == Health.DEGRADED:
        return Verdict("Ready", "Degraded", report.error_message or "some health probes fail")
    return Verdict("Ready", "Connected", f"Qdrant {report.server_version}")


def status_fields(report: ConnectionReport, collections: int) -> dict[str, Any]:
    return {
        "health": report.health.value,
        "serverVersion": report.server_version,
        "distributed": report.distributed,
        "peers": report.peers,
        "circuitBreaker": report.circuit_breaker.value,
        "collections": collections,
    }
