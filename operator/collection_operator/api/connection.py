"""QdrantConnection: how to reach one Qdrant deployment, and how the client behind it behaves."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import ConfigDict, Field, field_validator

from .base import SecretKeyRef, StatusBase, WireModel, cel


class Environment(StrEnum):
    DEVELOPMENT = "Development"
    STAGING = "Staging"
    PRODUCTION = "Production"
    TESTING = "Testing"


class ApiKeySecretRef(SecretKeyRef):
    key: str = Field("api-key", min_length=1, max_length=253)


class CaSecretRef(SecretKeyRef):
    key: str = Field("ca.crt", min_length=1, max_length=253)


class Tls(WireModel):
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

    min_connections: int | None = Field(None, ge=0, le=1000)
    max_connections: int | None = Field(None, ge=1, le=1000)
    idle_timeout_seconds: float | None = Field(None, gt=0)
    max_lifetime_seconds: float | None = Field(None, gt=0)
    acquire_timeout_seconds: float | None = Field(None, gt=0)


class Retry(WireModel):
    """Retries of idempotent calls after transient failures, with exponential backoff and jitter."""

    max_attempts: int | None = Field(None, ge=1, le=20)
    initial_delay_seconds: float | None = Field(None, ge=0)
    max_delay_seconds: float | None = Field(None, ge=0)
    multiplier: float | None = Field(None, ge=1)
    jitter: float | None = Field(None, ge=0, le=1, description="Share of each delay randomised, 0.1 = 10 %.")


class Timeouts(WireModel):
    connect_seconds: float | None = Field(None, gt=0)
    request_seconds: float | None = Field(None, gt=0)


class HealthCheck(WireModel):
    interval_seconds: float | None = Field(None, gt=0)
    timeout_seconds: float | None = Field(None, gt=0)
    failure_threshold: int | None = Field(None, ge=1)
    success_threshold: int | None = Field(None, ge=1)


class CircuitBreaker(WireModel):
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


class QdrantConnectionSpec(WireModel):
    # A rejected value is never echoed in an error (it may hold a password): the errors name the field only.
    model_config = ConfigDict(hide_input_in_errors=True)

    url: str = Field(
        pattern=r"^https?://[^\s/]+(/.*)?$",
        max_length=2048,
        description="Qdrant's REST endpoint, http:// or https://, without credentials (see apiKeySecretRef).",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(f"!self.matches('{URL_USERINFO}') && !self.matches('{URL_CREDENTIAL_PARAM}')",
                    URL_CREDENTIALS_MESSAGE, reason="FieldValueInvalid"),
            ]
        },
    )
    api_key_secret_ref: ApiKeySecretRef | None = None
    tls: Tls | None = None
    environment: Environment = Field(
        Environment.PRODUCTION, description="Picks the defaults for every block left out; explicit fields win."
    )
    pool: Pool | None = None
    retry: Retry | None = None
    timeouts: Timeouts | None = None
    health_check: HealthCheck | None = None
    circuit_breaker: CircuitBreaker | None = None
    max_concurrent_operations: int = Field(4, ge=1, le=64, description="Collection create/update/delete in flight.")
    allowed_namespaces: list[str] = Field(
        default_factory=list,
        max_length=256,
        description='Namespaces whose collections may use this connection; "*" = all. Its own is always allowed.',
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, url: str) -> str:
        if re.search(URL_USERINFO, url) or re.search(URL_CREDENTIAL_PARAM, url):
            raise ValueError(URL_CREDENTIALS_MESSAGE)
        return url


class Health(StrEnum):
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    UNHEALTHY = "Unhealthy"
    UNKNOWN = "Unknown"


class BreakerState(StrEnum):
    CLOSED = "Closed"
    OPEN = "Open"
    HALF_OPEN = "HalfOpen"


class QdrantConnectionStatus(StatusBase):
    health: Health | None = None
    server_version: str | None = None
    distributed: bool | None = None
    peers: int | None = None
    circuit_breaker: BreakerState | None = None
    collections: int | None = Field(None, description="How many VectorCollections use this connection.")
