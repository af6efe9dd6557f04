"""Prometheus metrics of the operator: prefix `qdrant_operator_`, base units, labelled by connection name.

The client layer (collection_operator.qdrant) records requests, retries, pool figures, breaker state and
health here; latencies and pool figures go to metrics, never to a resource's status.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from prometheus_client import Counter, Enum, Gauge, Histogram

from .api.connection import BreakerState, Health

# Qdrant calls range from sub-millisecond (GET /) to minutes (create with a large WAL, snapshots).
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUEST_DURATION = Histogram(
    "qdrant_operator_client_request_duration_seconds",
    "Duration of one client call to Qdrant, retries included, by operation and outcome (ok or error reason).",
    ["connection", "operation", "outcome"],
    buckets=_LATENCY_BUCKETS,
)
RETRIES = Counter(
    "qdrant_operator_client_retries_total",
    "Retries of idempotent calls after a retryable failure, by the failure's reason.",
    ["connection", "operation", "reason"],
)
POOL_CONNECTIONS = Gauge(
    "qdrant_operator_client_pool_connections", "Open HTTP connections to the target.", ["connection"]
)
POOL_IN_USE = Gauge("qdrant_operator_client_pool_in_use", "Pool leases currently held by calls.", ["connection"])
POOL_WAITING = Gauge("qdrant_operator_client_pool_waiting", "Calls queued for a pool lease.", ["connection"])
POOL_ACQUIRE_DURATION = Histogram(
    "qdrant_operator_client_pool_acquire_duration_seconds",
    "Time a call waited for a pool lease.",
    ["connection"],
    buckets=(0.0001, 0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30),
)
POOL_EXHAUSTED = Counter(
    "qdrant_operator_client_pool_exhausted_total",
    "Calls that gave up waiting for a pool lease (acquire timeout).",
    ["connection"],
)
POOL_RECYCLED = Counter(
    "qdrant_operator_client_pool_recycled_total",
    "HTTP connections closed by the pool, by why (lifetime, expired).",
    ["connection", "why"],
)
BREAKER_STATE = Enum(
    "qdrant_operator_circuit_breaker_state",
    "Circuit breaker state per connection.",
    ["connection"],
    states=[state.value for state in BreakerState],
)
HEALTH = Enum(
    "qdrant_operator_connection_health",
    "Health of the target as the health monitor last judged it.",
    ["connection"],
    states=[health.value for health in Health],
)
HEALTH_PROBE_DURATION = Histogram(
    "qdrant_operator_health_probe_duration_seconds",
    "Duration of one health probe (GET / and GET /cluster).",
    ["connection", "outcome"],
    buckets=_LATENCY_BUCKETS,
)

# ----- several endpoints per connection (spec.endpoints): per endpoint, as the connection sees it -----------
# Each endpoint's own client also records the series above under connection="<connection>@<endpoint>".

ENDPOINT_HEALTH = Enum(
    "qdrant_operator_endpoint_health",
    "Health of one endpoint of a connection with several, from its own health probes.",
    ["connection", "endpoint"],
    states=[health.value for health in Health],
)
ENDPOINT_BREAKER_STATE = Enum(
    "qdrant_operator_endpoint_circuit_breaker_state",
    "Circuit breaker state of one endpoint of a connection with several.",
    ["connection", "endpoint"],
    states=[state.value for state in BreakerState],
)
ENDPOINT_IN_ROTATION = Gauge(
    "qdrant_operator_endpoint_in_rotation",
    "1 while calls are sent to the endpoint, 0 while it is taken out (breaker open or probes failing).",
    ["connection", "endpoint"],
)
ENDPOINT_OUTSTANDING = Gauge(
    "qdrant_operator_endpoint_outstanding_requests",
    "Attempts in flight on the endpoint (what least-outstanding balancing compares).",
    ["connection", "endpoint"],
)
ENDPOINT_ATTEMPTS = Counter(
    "qdrant_operator_endpoint_attempts_total",
    "Attempts sent to (or refused before reaching) the endpoint, by outcome (ok or error reason).",
    ["connection", "endpoint", "outcome"],
)
ENDPOINT_FAILOVERS = Counter(
    "qdrant_operator_endpoint_failovers_total",
    "Calls moved from the endpoint to another one after a failure, by the failure's reason.",
    ["connection", "endpoint", "reason"],
)

# ----- reconcilers (handlers record these) ---------------------------------------------------------------

RECONCILE_DURATION = Histogram(
    "qdrant_operator_reconcile_duration_seconds",
    "Duration of one reconcile of a resource, status write included.",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
)
RECONCILES = Counter(
    "qdrant_operator_reconciles_total",
    "Reconciles by kind and the Ready condition's resulting reason.",
    ["kind", "reason"],
)
DRIFT_CORRECTED = Counter(
    "qdrant_operator_drift_corrected_total", "Settings changed directly in Qdrant and set back to the spec."
)
COLLECTIONS_MANAGED = Gauge(
    "qdrant_operator_collections_managed", "VectorCollections using each connection.", ["connection"]
)
DELETES_ABANDONED = Counter(
    "qdrant_operator_deletes_abandoned_total",
    "Deleted resources released after their delete attempts ran out; their data was left in Qdrant.",
    ["kind"],
)
CREATE_CONFLICTS = Counter(
    "qdrant_operator_create_conflicts_total",
    "Collection creates Qdrant answered with 'already exists' (a retry after a lost reply, or a collection made "
    "elsewhere); the operator then observes it and never overwrites.",
)
PEERING_OBJECT_MISSING = Gauge(
    "qdrant_operator_peering_object_missing",
    "1 while the kopf peering object this replica meets the others in does not exist and the operator could not "
    "create it (kopf keeps the replica paused meanwhile; a WARNING log line says why and how to create it).",
    ["kind", "namespace", "name"],
)
RESOURCE_READY = Gauge(
    "qdrant_operator_resource_ready",
    "1 while a resource's Ready condition is True, 0 while it is False, by kind and resource (namespace/name), as "
    "the operator last wrote it. The series goes when the resource is deleted; a replica that stands by exports "
    "none (they are dropped when it pauses).",
    ["kind", "resource"],
)
OPERATOR_ACTIVE = Gauge(
    "qdrant_operator_active",
    "1 on the replica kopf lets process resources (the top priority alive in the peering object), 0 on one that "
    "stands by or is paused (a tie of priorities, the peering object missing). Without peering: 1.",
)
ACCESS_KEY_EXPIRY = Gauge(
    "qdrant_operator_access_key_expiry_timestamp_seconds",
    "When the token in a CollectionAccessKey's Secret expires (Unix time), by key (namespace/name).",
    ["access_key"],
)
ACCESS_KEY_ROTATION_DUE = Gauge(
    "qdrant_operator_access_key_rotation_due_timestamp_seconds",
    "When the operator writes a CollectionAccessKey's next token, at two thirds of the validity (Unix time); past "
    "it, the key is late to rotate.",
    ["access_key"],
)
BACKUP_VERIFIED = Gauge(
    "qdrant_operator_backup_verified",
    "1 when the last restore drill of a CollectionSnapshot (spec.verify) passed, 0 when it failed; by snapshot "
    "(namespace/name). Absent before its first drill.",
    ["snapshot"],
)
BACKUP_VERIFICATION_FAILURES = Counter(
    "qdrant_operator_backup_verification_failures_total",
    "Restore drills that failed (the snapshot could not be recovered, or its points differ from the record).",
    ["snapshot"],
)
BACKUP_LAST_VERIFIED = Gauge(
    "qdrant_operator_backup_last_verified_timestamp_seconds",
    "When a CollectionSnapshot's restore drill last passed (Unix time, status.verifiedAt).",
    ["snapshot"],
)
INTERNAL_ENTRIES = Gauge(
    "qdrant_operator_internal_entries",
    "Entries in the operator's in-memory bookkeeping, by what they are (asyncio tasks, resource locks, status "
    "cache, re-index gates, restores): bounded by the resources and the work in flight, so a steady rise is a leak.",
    ["holds"],
)


def backup_verified(snapshot: str, passed: bool | None, verified_at: str | None) -> None:
    """The drill gauges of one CollectionSnapshot, from its loop's state after each step (and at its start, so a
    restart keeps them); `passed` None: no drill yet, or spec.verify removed (the series goes, and its alert)."""
    if passed is None:
        with contextlib.suppress(KeyError):
            BACKUP_VERIFIED.remove(snapshot)
    else:
        BACKUP_VERIFIED.labels(snapshot).set(1 if passed else 0)
    if verified_at is not None:
        moment = datetime.strptime(verified_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        BACKUP_LAST_VERIFIED.labels(snapshot).set(moment.timestamp())


def forget_backup(snapshot: str) -> None:
    """The resource is gone (or its loop moved to another replica): its series go with it."""
    for metric in (BACKUP_VERIFIED, BACKUP_VERIFICATION_FAILURES, BACKUP_LAST_VERIFIED):
        with contextlib.suppress(KeyError):
            metric.remove(snapshot)


def watch_internal_entries(sizes: Mapping[str, Callable[[], int]]) -> None:
    """Read at each scrape (in the metrics server's thread): len() of the operator's containers."""
    for holds, size in sizes.items():
        INTERNAL_ENTRIES.labels(holds).set_function(size)


def forget_resource(kind: str, resource: str) -> None:
    """Drop a deleted resource's series."""
    try:
        RESOURCE_READY.remove(kind, resource)
    except KeyError:  # never written by this replica (deleted before its first status, or while standing by)
        pass
