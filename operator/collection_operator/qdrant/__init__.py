"""The client layer: one pooled, retried, breaker-guarded, health-monitored Qdrant client per target.
Knows nothing of Kubernetes; the operator's connection daemon owns one QdrantGateway per QdrantConnection.
It speaks Qdrant's REST API in JSON over httpx; qdrant-client is imported only when an application uses
`call` or `VectorOperations` (see `session`).

Construct and run:

    gateway = QdrantGateway(url, settings, name="qdrant/main", api_key=key, ca_pem=pem, verify=True)
    gateway.start()                        # health monitor + pool maintenance (warm minimum, recycling)
    gateway.subscribe(on_report)           # on_report(ConnectionReport), sync or async, on every change
    ...
    await gateway.update_credentials(new_key, new_pem)   # Secret rotated: state kept, new HTTP client
    await gateway.update_settings(new_settings)          # spec or settings file changed
    await gateway.aclose()

Several endpoints of one Qdrant (the nodes of a cluster): `QdrantEndpoints(urls, settings, name=...)` has
the same surface (start, subscribe, report, update_*, aclose, call and the typed calls) over one
QdrantGateway per URL, with balancing, failover and a quorum report (see `endpoints`). `Gateway` is the
Protocol of the two (`client`), what VectorOperations and the operator's adapters take.

`settings` is a `config.ClientSettings` (from `config.resolve(spec)` or `OperatorSettings.resolve`).

State: `gateway.health` (Health: Unknown before the first probe, then Healthy/Degraded/Unhealthy),
`gateway.breaker_state` (BreakerState: Closed/Open/HalfOpen), `gateway.server_version`, and
`gateway.report` (ConnectionReport: all of those plus distributed, peers and the last probe's error
reason), which is what `subscribe` callbacks receive.

Calls: typed collection methods in Qdrant's JSON (dicts in, the reply's `result` out) - `list_collections`,
`collection_exists`, `get_collection`, `create_collection(name, body)`, `update_collection(name, body)`
(PATCH), `delete_collection` (False if it was missing), `create_payload_index`, `delete_payload_index`,
`list_aliases`, `update_aliases`, `create_snapshot`, `list_snapshots`, `delete_snapshot`,
`recover_snapshot` - the general `await gateway.request(operation, method, path, body=..., params=...,
idempotent=...)` for any other REST call, and `await gateway.call(operation, fn, idempotent=...,
timeout_seconds=None)` running `fn(AsyncQdrantClient)`. Vector operations: `VectorOperations(gateway, collection)` with
`upsert`, `upsert_many(batch_size, concurrency)`, `search(Search(...))` (score threshold, filter,
hnsw_ef), `search_many` (parallel), `update_vectors`, `set_payload`, `delete(ids= | filter=)`, `count`.

Every call: breaker check (CircuitOpen without touching the network), a pool lease (PoolExhausted after
the acquire timeout), a per-attempt timeout, and for idempotent calls retries with exponential backoff
and jitter on retryable failures. Errors are the typed QdrantError subclasses in `errors`, each with a
`reason` that is the condition reason it maps to.
"""

from .breaker import CircuitBreaker
from .client import Gateway
from .endpoints import QdrantEndpoints
from .errors import (
    AddressNotAllowed,
    AlreadyExists,
    CircuitOpen,
    Conflict,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    PoolExhausted,
    QdrantError,
    TLSError,
    Transient,
    Unauthorized,
    Unreachable,
    classify,
)
from .gateway import QdrantGateway
from .health import HealthMonitor, HealthTracker
from .pool import ConnectionPool
from .report import ConnectionReport, EndpointReport, HealthReport, ProbeResult, Topology
from .retry import backoff_delay, retrying
from .vectors import Search, VectorOperations

__all__ = [
    "AddressNotAllowed",
    "AlreadyExists",
    "CircuitBreaker",
    "CircuitOpen",
    "Conflict",
    "ConnectionPool",
    "ConnectionReport",
    "EndpointReport",
    "Gateway",
    "HealthMonitor",
    "HealthReport",
    "HealthTracker",
    "InvalidRequest",
    "NotFound",
    "OutcomeUnknown",
    "PoolExhausted",
    "ProbeResult",
    "QdrantEndpoints",
    "QdrantError",
    "QdrantGateway",
    "Search",
    "TLSError",
    "Topology",
    "Transient",
    "Unauthorized",
    "Unreachable",
    "VectorOperations",
    "backoff_delay",
    "classify",
    "retrying",
]
