"""QdrantConnection: the client's report -> status fields and verdict. Pure."""

from __future__ import annotations

from typing import Any

from ..api.connection import BreakerState, Health
from ..k8s.conditions import Verdict
from ..qdrant import ConnectionReport


def verdict(report: ConnectionReport) -> Verdict:
    if report.circuit_breaker == BreakerState.OPEN:
        cause = f" after {report.error_reason}" if report.error_reason else ""
        return Verdict("Failed", "CircuitOpen", f"circuit breaker open{cause}: {report.error_message or ''}".strip())
    if report.health == Health.UNKNOWN:
        return Verdict("Reconciling", "Connecting", "waiting for the first health probe")
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
