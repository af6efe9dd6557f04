"""QdrantConnection: how to reach one Qdrant deployment, and how the client behind it behaves."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from .base import SecretKeyRef, StatusBase, StatusModel, WireModel, cel, immutable


class Environment(StrEnum):
    DEVELOPMENT = "Development"
    STAGING = "Staging"
    PRODUCTION = "Production"
    TESTING = "Testing"


class ApiKeySecretRef(SecretKeyRef):
    """The Secret key holding Qdrant's API key; re-read every health interval, so rotation needs no restart."""

    key: str = Field("api-key", min_length=1, max_length=253, description="Key within the Secret's data.")


class CaSecretRef(SecretKeyRef):
    """The Secret key holding a PEM CA bundle; re-read every health interval."""

    key: str = Field("ca.crt", min_length=1, max_length=253, description="Key within the Secret's data.")


class Tls(WireModel):
    """TLS settings for https:// URLs."""

    ca_secret_ref: CaSecretRef | None = Field(None, description="CA bundle that signed Qdrant's certificate.")
    insecure_skip_verify: bool = Field(False, description="Skip certificate verification. Never in production.")


class Pool(WireModel):
    """Connections kept to this Qdrant. Left-out fields come from the environment profile."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.minConnections) || !has(self.maxConnections) || "
                    "self.minConnections <= self.maxConnections",
                    "pool.minConnections must not exceed pool.maxConnections",
                )
            ]
        }
    )

    min_connections: int | None = Field(None, ge=0, le=1000, description="Connections kept open (warm).")
    max_connections: int | None = Field(None, ge=1, le=1000, description="Connections open at most.")
    idle_timeout_seconds: float | None = Field(None, gt=0, description="Seconds until an idle connection is closed.")
    max_lifetime_seconds: float | None = Field(None, gt=0, description="A connection is replaced after this long.")
    acquire_timeout_seconds: float | None = Field(
        None, gt=0, description="How long a call waits for a free connection before it fails (PoolExhausted)."
    )


class Retry(WireModel):
    """Retries of idempotent calls after transient failures, with exponential backoff and jitter."""

    max_attempts: int | None = Field(None, ge=1, le=20, description="Attempts per call, the first included.")
    initial_delay_seconds: float | None = Field(None, ge=0, description="Delay before the first retry.")
    max_delay_seconds: float | None = Field(None, ge=0, description="Upper bound of any delay.")
    multiplier: float | None = Field(None, ge=1, description="Each delay is the previous one times this.")
    jitter: float | None = Field(None, ge=0, le=1, description="Share of each delay randomised, 0.1 = 10 %.")


class Timeouts(WireModel):
    """Per-call timeouts."""

    connect_seconds: float | None = Field(None, gt=0, description="Opening a TCP (and TLS) connection.")
    request_seconds: float | None = Field(None, gt=0, description="One request, from sending to the full reply.")


class HealthCheck(WireModel):
    """The health monitor's probes of GET / and GET /cluster."""

    interval_seconds: float | None = Field(
        None, gt=0, description="Seconds between probes; Secrets are re-read at the same interval."
    )
    timeout_seconds: float | None = Field(None, gt=0, description="Timeout of one probe.")
    failure_threshold: int | None = Field(None, ge=1, description="Consecutive failed probes that make it Unhealthy.")
    success_threshold: int | None = Field(None, ge=1, description="Consecutive good probes that make it Healthy.")


class CircuitBreaker(WireModel):
    """Stops calling a Qdrant that keeps failing; its collections report ConnectionNotReady meanwhile."""

    failure_threshold: int | None = Field(None, ge=1, description="Consecutive failures that open the breaker.")
    open_seconds: float | None = Field(None, gt=0, description="How long it stays open before one trial call.")


# Credentials never go in the URL: the URL is logged, shown by `kubectl get` and readable by anyone who may
# read the resource. Both rules are CEL (RE2) and Python regexes alike.
URL_USERINFO = r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@"
URL_CREDENTIAL_PARAM = r"(?i)[?&;](api[-_]?key|apikey|access[-_]?token|token|secret|password|passwd|pwd)="
URL_CREDENTIALS_MESSAGE = (
    "spec.url must not contain credentials (user:password@ or an api-key/token query parameter): "
    "put the API key in a Secret and reference it with spec.apiKeySecretRef"
)


URL_PATTERN = r"^https?://[^\s/]+(/.*)?$"
URL_CREDENTIALS_RULE = f"!self.matches('{URL_USERINFO}') && !self.matches('{URL_CREDENTIAL_PARAM}')"
ENDPOINT_CREDENTIALS_MESSAGE = URL_CREDENTIALS_MESSAGE.replace("spec.url", "spec.endpoints")
MAX_ENDPOINTS = 16

# One of spec.endpoints: the same rules as spec.url, each URL on its own.
EndpointUrl = Annotated[
    str,
    Field(
        pattern=URL_PATTERN,
        max_length=2048,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(URL_CREDENTIALS_RULE, ENDPOINT_CREDENTIALS_MESSAGE, reason="FieldValueInvalid"),
            ]
        },
    ),
]


class LoadBalancing(StrEnum):
    LEAST_OUTSTANDING = "LeastOutstanding"
    ROUND_ROBIN = "RoundRobin"


# A namespace's name (a DNS label), or "*" for every namespace.
NamespaceName = Annotated[str, Field(pattern=r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$", max_length=63)]
# Between the namespace and the name in a prefixed collection name. A namespace's name never holds a dot, so
# "<namespace>.<name>" is never another namespace's collection; Qdrant accepts dots in names.
PREFIX_SEPARATOR = "."


def lists(namespaces: list[str], namespace: str) -> bool:
    """Whether a list of namespaces names `namespace`, or every namespace with "*"."""
    return "*" in namespaces or namespace in namespaces


class Adoption(WireModel):
    """Who may take over (onExisting: Adopt) a collection in this Qdrant that no VectorCollection of their own
    namespace created: an unmarked one, or one a since deleted resource of another namespace created. A collection
    a live resource holds is never taken, whatever this says."""

    namespaces: list[NamespaceName] = Field(
        default_factory=list,
        max_length=256,
        description='Namespaces whose VectorCollections may adopt such a collection; "*" = all. The connection\'s '
        "own namespace always may; any other namespace allowed to use the connection (allowedNamespaces) adopts "
        "nothing unless listed here (Stalled/AdoptionNotAllowed), so a tenant can neither take over nor delete data "
        "it did not create.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class NamePrefix(StrEnum):
    NONE = "None"
    NAMESPACE = "Namespace"


class CollectionNames(WireModel):
    """How a VectorCollection's collectionName (and its aliases) become names in Qdrant."""

    prefix: NamePrefix = Field(
        NamePrefix.NONE,
        description="None: as written. Namespace: <namespace>.<name>, so two namespaces' collections of the same "
        "name never meet in one Qdrant (status.collectionName shows the name in Qdrant).",
    )


class QdrantConnectionSpec(WireModel):
    """How to reach one Qdrant. Blocks left out take the environment's defaults."""

    # A rejected value is never echoed in an error (it may hold a password): the errors name the field only.
    model_config = ConfigDict(
        hide_input_in_errors=True,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.url) != has(self.endpoints)",
                    "set exactly one of spec.url and spec.endpoints",
                    reason="FieldValueInvalid",
                ),
                # Another prefix would give every collection of this connection another name in Qdrant: the old
                # collections would be left behind and new, empty ones created.
                immutable("collectionNames"),
            ]
        },
    )

    url: str | None = Field(
        None,
        pattern=URL_PATTERN,
        max_length=2048,
        description="Qdrant's REST endpoint, http:// or https://, without credentials (see apiKeySecretRef). "
        "Exactly one of url and endpoints.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(URL_CREDENTIALS_RULE, URL_CREDENTIALS_MESSAGE, reason="FieldValueInvalid"),
            ]
        },
    )
    endpoints: list[EndpointUrl] | None = Field(
        None,
        min_length=1,
        max_length=MAX_ENDPOINTS,
        description="Several REST endpoints of one Qdrant deployment (the nodes of a cluster), each like url; "
        "the same API key and CA for all. Calls are spread over the endpoints that answer (see loadBalancing), "
        "an endpoint that fails is taken out until its probes pass again. Exactly one of url and endpoints.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    load_balancing: LoadBalancing = Field(
        LoadBalancing.LEAST_OUTSTANDING,
        description="With endpoints: LeastOutstanding sends each call to the endpoint with the fewest calls in "
        "flight; RoundRobin takes them in turn.",
    )
    api_key_secret_ref: ApiKeySecretRef | None = Field(None, description="Qdrant's API key, from a Secret.")
    tls: Tls | None = Field(None, description="TLS settings for https:// URLs.")
    environment: Environment = Field(
        Environment.PRODUCTION, description="Picks the defaults for every block left out; explicit fields win."
    )
    pool: Pool | None = Field(None, description="The client's connection pool.")
    retry: Retry | None = Field(None, description="Retries of idempotent calls after transient failures.")
    timeouts: Timeouts | None = Field(None, description="Per-call timeouts.")
    health_check: HealthCheck | None = Field(None, description="The health monitor.")
    circuit_breaker: CircuitBreaker | None = Field(None, description="The circuit breaker.")
    max_concurrent_operations: int = Field(4, ge=1, le=64, description="Collection create/update/delete in flight.")
    allowed_namespaces: list[str] = Field(
        default_factory=list,
        max_length=256,
        description='Namespaces whose collections may use this connection; "*" = all. Its own is always allowed.',
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    adoption: Adoption | None = Field(
        None,
        description="Who may adopt a collection their namespace did not create. Default: only the connection's "
        "own namespace.",
    )
    collection_names: CollectionNames | None = Field(
        None,
        description="How collection names map to Qdrant (default: as written). Immutable: create a new "
        "QdrantConnection to change it.",
    )

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, url: str | None) -> str | None:
        if url is not None and (re.search(URL_USERINFO, url) or re.search(URL_CREDENTIAL_PARAM, url)):
            raise ValueError(URL_CREDENTIALS_MESSAGE)
        return url

    @field_validator("endpoints")
    @classmethod
    def _endpoints_without_credentials(cls, endpoints: list[str] | None) -> list[str] | None:
        if endpoints is None:
            return None
        if any(re.search(URL_USERINFO, url) or re.search(URL_CREDENTIAL_PARAM, url) for url in endpoints):
            raise ValueError(ENDPOINT_CREDENTIALS_MESSAGE)
        if len(set(endpoints)) != len(endpoints):
            raise ValueError("spec.endpoints must not repeat a URL")
        return endpoints

    @model_validator(mode="after")
    def _url_or_endpoints(self) -> Any:
        if (self.url is None) == (self.endpoints is None):
            raise ValueError("set exactly one of spec.url and spec.endpoints")
        return self

    @property
    def targets(self) -> tuple[str, ...]:
        """The URLs the client calls: (url,) or the endpoints, in their order."""
        if self.endpoints is not None:
            return tuple(self.endpoints)
        assert self.url is not None  # one of the two, by the validator above
        return (self.url,)

    @property
    def shown_url(self) -> str:
        """status.url, the URL column: spec.url, or the first endpoint and how many more ("http://q0:6333 (+2)")."""
        first, *more = self.targets
        return f"{first} (+{len(more)})" if more else first

    def adopts_from(self, home: str, namespace: str) -> bool:
        """May a VectorCollection in `namespace` adopt a collection another namespace made or nobody marked?
        `home`: this connection's own namespace."""
        return namespace == home or (self.adoption is not None and lists(self.adoption.namespaces, namespace))

    def physical_name(self, namespace: str, name: str) -> str:
        """The name in Qdrant of a collection (or alias) `name` of a VectorCollection in `namespace`."""
        if self.collection_names is not None and self.collection_names.prefix == NamePrefix.NAMESPACE:
            return f"{namespace}{PREFIX_SEPARATOR}{name}"
        return name

    @property
    def primary_url(self) -> str:
        """The first target: where a snapshot of this connection is downloaded from by URL."""
        return self.targets[0]


class Health(StrEnum):
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    UNHEALTHY = "Unhealthy"
    UNKNOWN = "Unknown"


class BreakerState(StrEnum):
    CLOSED = "Closed"
    OPEN = "Open"
    HALF_OPEN = "HalfOpen"


class EndpointStatus(StatusModel):
    """One of spec.endpoints as the client last saw it."""

    url: str = Field(description="The endpoint, as in spec.endpoints.")
    health: Health = Field(description="From this endpoint's own health probes.")
    server_version: str | None = Field(None, description="Qdrant's version on this endpoint, from GET /.")
    circuit_breaker: BreakerState = Field(description="This endpoint's circuit breaker.")
    in_rotation: bool = Field(description="Whether calls are sent to it (false: taken out until its probes pass).")
    reason: str | None = Field(None, description="Why its last probe failed (Unreachable, Unauthorized ...).")


class QdrantConnectionStatus(StatusBase):
    url: str | None = Field(
        None, description="What the client calls: spec.url, or the first of spec.endpoints and how many more."
    )
    health: Health | None = Field(
        None,
        description="From the health probes: Healthy, Degraded (some fail), Unhealthy (failureThreshold "
        "reached) or Unknown (no probe yet).",
    )
    server_version: str | None = Field(None, description="Qdrant's version, from GET /.")
    distributed: bool | None = Field(None, description="Whether Qdrant runs in distributed (cluster) mode.")
    peers: int | None = Field(None, description="Peers in the Qdrant cluster.")
    leader: str | None = Field(None, description="Distributed Qdrant: the peer id of the consensus leader.")
    pending_operations: int | None = Field(
        None, description="Distributed Qdrant: consensus operations not yet applied on the node the URL reaches."
    )
    unreachable_peers: list[str] | None = Field(
        None, description="Distributed Qdrant: peers that did not answer the last health probe."
    )
    circuit_breaker: BreakerState | None = Field(
        None, description="Closed (calls pass), Open (calls refused) or HalfOpen (one trial call)."
    )
    collections: int | None = Field(None, description="How many VectorCollections use this connection.")
    jwt_rbac: bool | None = Field(
        None,
        description="Whether Qdrant takes tokens signed with the API key (service.jwt_rbac), which "
        "CollectionAccessKeys need; false without an API key.",
    )
    endpoints: list[EndpointStatus] | None = Field(
        None,
        description="With spec.endpoints: every endpoint with its health, version and breaker. The fields above "
        "are the connection's as a whole: Healthy while every endpoint answers, Degraded while a majority does, "
        "Unhealthy below that; serverVersion, peers and leader as an answering endpoint reports them.",
    )
