"""QdrantConnection: its Secrets -> credentials, and the client's report -> verdict and status. Pure
but for reading Secrets through the SecretsPort."""

from __future__ import annotations

from ..api.base import SecretKeyRef
from ..api.connection import BreakerState, EndpointStatus, Health, QdrantConnectionSpec, QdrantConnectionStatus
from ..qdrant import ConnectionReport
from ..qdrant.errors import AddressNotAllowed, TLSError, Unauthorized, Unreachable
from . import reasons
from .outcome import State, Verdict, Waiting
from .ports import Credentials, SecretsPort

# The server answered and refused us, we cannot speak TLS to it, or the operator's address policy forbids
# calling it: a configuration problem that no number of further probes will cure, so it is reported at once
# rather than after the failure threshold.
REFUSED = (Unauthorized.reason, TLSError.reason, AddressNotAllowed.reason)


def secret_refs(spec: QdrantConnectionSpec) -> tuple[object, ...]:
    """What the credentials are read from: a change here is read at once, not at the next interval."""
    return (spec.api_key_secret_ref, spec.tls.ca_secret_ref if spec.tls else None)


async def _read(secrets: SecretsPort, namespace: str, ref: SecretKeyRef, context: str) -> bytes:
    try:
        return await secrets.read_secret_key(namespace, ref.name, ref.key)
    except LookupError as exc:
        raise Waiting(reasons.SECRET_NOT_FOUND, f"{context}{exc}") from exc


async def api_key(secrets: SecretsPort, namespace: str, spec: QdrantConnectionSpec, context: str = "") -> str | None:
    """The connection's API key; Waiting SecretNotFound (`context` before its message) when its Secret or
    key is missing."""
    ref = spec.api_key_secret_ref
    if ref is None:
        return None
    return (await _read(secrets, namespace, ref, context)).decode().strip()


async def credentials(secrets: SecretsPort, namespace: str, spec: QdrantConnectionSpec) -> Credentials:
    """Waiting SecretNotFound when a Secret or key is missing; any other failure to read is raised as it is."""
    ca = None
    if spec.tls and (ca_ref := spec.tls.ca_secret_ref):
        ca = (await _read(secrets, namespace, ca_ref, "")).decode()
    return Credentials(await api_key(secrets, namespace, spec), ca)


def verdict(report: ConnectionReport) -> Verdict:
    failing = report.error_reason is not None and report.health in (Health.DEGRADED, Health.UNHEALTHY)
    if report.circuit_breaker == BreakerState.OPEN or (
        report.circuit_breaker == BreakerState.HALF_OPEN and report.health == Health.UNHEALTHY
    ):
        # HalfOpen while still unhealthy is the same outage waiting for its trial call, not a new transition.
        cause = f" after {report.error_reason}" if report.error_reason else ""
        return Verdict(
            State.FAILED,
            reasons.CIRCUIT_OPEN,
            f"circuit breaker open{cause}: {report.error_message or ''}".strip().rstrip(":"),
        )
    if report.circuit_breaker == BreakerState.HALF_OPEN:
        # The probe that half-opened it decides within one call; until then collections hold back too,
        # since the breaker lets only that one trial through.
        return Verdict(State.RECONCILING, reasons.RECOVERING, "circuit breaker half-open: a trial call decides")
    if report.health == Health.UNKNOWN:
        return Verdict(State.RECONCILING, reasons.CONNECTING, "waiting for the first health probe")
    if failing and (report.error_reason in REFUSED or report.server_version is None):
        # Refused, or failing since the first probe: never Ready, even below the failure threshold.
        return Verdict(
            State.FAILED, report.error_reason or Unreachable.reason, report.error_message or "health probes fail"
        )
    if report.health == Health.UNHEALTHY:
        return Verdict(
            State.FAILED, report.error_reason or Unreachable.reason, report.error_message or "health probes fail"
        )
    if report.read_only:
        return Verdict(
            State.STALLED,
            reasons.READ_ONLY_KEY,
            "the API key is read-only (Qdrant refuses it every write): collections and snapshots cannot be created "
            "or changed; put a read-write key in the Secret (it is re-read within a health interval)",
        )
    if report.health == Health.DEGRADED:
        return Verdict(State.READY, reasons.DEGRADED, report.error_message or "some health probes fail")
    return Verdict(State.READY, reasons.CONNECTED, f"Qdrant {report.server_version}")


def status(report: ConnectionReport, collections: int, url: str) -> QdrantConnectionStatus:
    """`url`: the spec's, as the URL column shows it (QdrantConnectionSpec.shown_url)."""
    topology = report.topology
    return QdrantConnectionStatus(
        url=url,
        health=report.health,
        server_version=report.server_version,
        distributed=report.distributed,
        peers=report.peers,
        leader=str(topology.leader) if topology and topology.leader is not None else None,
        pending_operations=topology.pending_operations if topology else None,
        unreachable_peers=[str(peer) for peer in topology.unreachable] if topology else None,
        circuit_breaker=report.circuit_breaker,
        collections=collections,
        jwt_rbac=report.jwt_rbac,
        endpoints=[
            EndpointStatus(
                url=endpoint.url,
                health=endpoint.health,
                server_version=endpoint.server_version,
                circuit_breaker=endpoint.circuit_breaker,
                in_rotation=endpoint.in_rotation,
                reason=endpoint.error_reason,
            )
            for endpoint in report.endpoints
        ]
        or None,
    )
