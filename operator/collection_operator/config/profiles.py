"""Resolved client settings, the four environment profiles, and the resolver from a QdrantConnectionSpec.

A profile is a complete `ClientSettings`; a spec (or the operator settings file) only overrides the
fields it states. The override shapes are the API's own optional blocks (`api.connection.Pool` ...), so
a field added to the API is also overridable from the settings file.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..api.connection import (
    CircuitBreaker,
    Environment,
    HealthCheck,
    LoadBalancing,
    Pool,
    QdrantConnectionSpec,
    Retry,
    Timeouts,
)
from .address_policy import AddressPolicy


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PoolSettings(_Frozen):
    min_connections: int = Field(ge=0)
    max_connections: int = Field(ge=1)
    idle_timeout_seconds: float = Field(300.0, gt=0)
    max_lifetime_seconds: float = Field(1800.0, gt=0)
    acquire_timeout_seconds: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _min_not_above_max(self) -> PoolSettings:
        if self.min_connections > self.max_connections:
            raise ValueError(
                f"pool min_connections {self.min_connections} exceeds max_connections {self.max_connections}"
            )
        return self


class RetrySettings(_Frozen):
    max_attempts: int = Field(ge=1)
    initial_delay_seconds: float = Field(1.0, ge=0)
    max_delay_seconds: float = Field(30.0, ge=0)
    multiplier: float = Field(2.0, ge=1)
    jitter: float = Field(0.1, ge=0, le=1)
    # Regular expressions matched against an error's text: a match makes an otherwise permanent error retryable.
    extra_retryable_patterns: tuple[str, ...] = ()


class TimeoutSettings(_Frozen):
    connect_seconds: float = Field(gt=0)
    # Not in API.md's table: one budget per request attempt, shared by all environments.
    request_seconds: float = Field(30.0, gt=0)


class HealthSettings(_Frozen):
    interval_seconds: float = Field(gt=0)
    timeout_seconds: float = Field(5.0, gt=0)
    failure_threshold: int = Field(3, ge=1)
    success_threshold: int = Field(1, ge=1)


class BreakerSettings(_Frozen):
    failure_threshold: int = Field(5, ge=1)
    open_seconds: float = Field(30.0, gt=0)


class ClientSettings(_Frozen):
    """Everything the client layer needs for one target, with no field left open."""

    pool: PoolSettings
    retry: RetrySettings
    timeouts: TimeoutSettings
    health_check: HealthSettings
    circuit_breaker: BreakerSettings = BreakerSettings()
    max_concurrent_operations: int = Field(4, ge=1)
    load_balancing: LoadBalancing = LoadBalancing.LEAST_OUTSTANDING  # several endpoints: how calls are spread
    # The operator's, not the spec's: which URLs may be called at all (OperatorSettings.address_policy).
    address_policy: AddressPolicy = AddressPolicy()


class ProfileOverride(BaseModel):
    """Per-environment overrides from the operator settings file: the API's own optional blocks."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    pool: Pool | None = None
    retry: Retry | None = None
    timeouts: Timeouts | None = None
    health_check: HealthCheck | None = Field(None, alias="healthCheck")
    circuit_breaker: CircuitBreaker | None = Field(None, alias="circuitBreaker")


def _profile(
    pool: tuple[int, int], attempts: int, interval: float, connect: float, health_timeout: float = 5.0
) -> ClientSettings:
    return ClientSettings(
        pool=PoolSettings(min_connections=pool[0], max_connections=pool[1]),
        retry=RetrySettings(max_attempts=attempts),
        timeouts=TimeoutSettings(connect_seconds=connect),
        health_check=HealthSettings(interval_seconds=interval, timeout_seconds=health_timeout),
    )


# API.md, "QdrantConnection": the profile table and the shared defaults (the field defaults above).
PROFILES: dict[Environment, ClientSettings] = {
    Environment.DEVELOPMENT: _profile((1, 5), 2, 60, 10),
    Environment.STAGING: _profile((2, 8), 3, 30, 10),
    Environment.PRODUCTION: _profile((5, 20), 5, 15, 30, health_timeout=10.0),
    Environment.TESTING: _profile((1, 2), 1, 5, 5),
}


def apply_overrides(base: ClientSettings, override: ProfileOverride | QdrantConnectionSpec) -> ClientSettings:
    """`base` with every field that `override` states explicitly; the rest stays."""
    data = base.model_dump()
    for block in ("pool", "retry", "timeouts", "health_check", "circuit_breaker"):
        given: BaseModel | None = getattr(override, block)
        if given is not None:
            data[block].update(given.model_dump(exclude_none=True))
    _fit_pool_minimum(data["pool"], override.pool)
    if isinstance(override, QdrantConnectionSpec):
        data["max_concurrent_operations"] = override.max_concurrent_operations
        data["load_balancing"] = override.load_balancing
    return ClientSettings.model_validate(data)


def _fit_pool_minimum(pool: dict[str, Any], explicit: Pool | None) -> None:
    # A spec that only lowers maxConnections below the profile's minimum means "small pool",
    # not an error: the profile's minimum follows it down. Two explicit values are checked by CEL.
    if explicit is not None and explicit.min_connections is None and pool["min_connections"] > pool["max_connections"]:
        pool["min_connections"] = pool["max_connections"]


def resolve(spec: QdrantConnectionSpec, profiles: dict[Environment, ClientSettings] | None = None) -> ClientSettings:
    """The settings of one connection: its environment's profile, then the spec's explicit fields."""
    table = PROFILES if profiles is None else profiles
    return apply_overrides(table[Environment(spec.environment)], spec)
