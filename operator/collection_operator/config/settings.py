"""Operator settings: built-in defaults < TOML settings file < `QDRANT_OPERATOR_*` environment < code.

The settings file (all keys optional; snake_case or the API's camelCase inside profile blocks):

    resync_interval_seconds = 120
    existence_check_interval_seconds = 30   # 0: off
    migration_page_points = 256    # BlueGreen copies: points per page
    migration_copy_seconds = 5     # BlueGreen copies: copying per reconcile before progress is written
    metrics_port = 8080
    health_port = 8081
    log_format = "json"            # text | json
    log_level = "INFO"
    namespaces = ["qdrant", "search"]   # empty: watch all namespaces
    retryable_error_patterns = ["please retry"]
    settings_poll_seconds = 5      # how often a changed file is picked up (hot reload)
    allowed_hosts = ["qdrant.db.svc", ".qdrant.svc.cluster.local", "10.20.0.0/16"]  # empty: any host
    allow_link_local = false       # link-local and cloud metadata addresses stay refused

    [profiles.Production.pool]     # overrides of API.md's environment profiles
    max_connections = 30
    [profiles.Testing.retry]
    max_attempts = 2

Environment variables use the prefix and `__` for nesting, values as in the file (lists as JSON):
`QDRANT_OPERATOR_RESYNC_INTERVAL_SECONDS=60`, `QDRANT_OPERATOR_NAMESPACES='["a","b"]'`,
`QDRANT_OPERATOR_PROFILES__PRODUCTION__POOL__MAX_CONNECTIONS=30`,
`QDRANT_OPERATOR_ALLOWED_HOSTS='["10.20.0.0/16"]'`. `QDRANT_OPERATOR_SETTINGS_FILE`
names the file when the caller does not.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource

from ..api.connection import Environment, QdrantConnectionSpec
from .address_policy import AddressPolicy
from .profiles import PROFILES, ClientSettings, ProfileOverride, apply_overrides, resolve

ENV_PREFIX = "QDRANT_OPERATOR_"
SETTINGS_FILE_ENV = f"{ENV_PREFIX}SETTINGS_FILE"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class OperatorSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    resync_interval_seconds: float = Field(
        120.0, gt=0, description="How often each collection is re-checked in full (one GET of it in Qdrant)."
    )
    existence_check_interval_seconds: float = Field(
        30.0,
        ge=0,
        description="How often each connection lists its collections and aliases (two calls, whatever the "
        "number of collections) to notice one deleted or moved in Qdrant between resyncs; 0 turns it off.",
    )
    migration_page_points: int = Field(
        256, ge=1, le=10000, description="BlueGreen copies: points per scroll and upsert."
    )
    migration_copy_seconds: float = Field(
        5.0,
        gt=0,
        description="BlueGreen copies: how long one reconcile copies before it records its progress in status "
        "(what a restarted operator may copy again).",
    )
    metrics_port: int = Field(8080, ge=0, le=65535)
    health_port: int = Field(8081, ge=0, le=65535)
    log_format: LogFormat = LogFormat.TEXT
    log_level: str = "INFO"
    namespaces: tuple[str, ...] = Field((), description="Namespaces to watch; empty means all.")
    retryable_error_patterns: tuple[str, ...] = Field((), description="Extra regexes of retryable errors.")
    settings_poll_seconds: float = Field(5.0, gt=0, description="Poll interval of the settings-file watcher.")
    profiles: dict[Environment, ProfileOverride] = Field(default_factory=dict)
    allowed_hosts: tuple[str, ...] = Field(
        (), description="Host names, .suffixes or CIDRs Qdrant URLs may name (config.address_policy); empty: any."
    )
    allow_link_local: bool = Field(False, description="Let Qdrant URLs reach link-local and metadata addresses.")
    peering_name: str | None = Field(
        None,
        description="kopf peering object (ClusterKopfPeering, or KopfPeering per watched namespace) shared "
        "by the replicas: exactly one is active, the others stand by. None: standalone (one replica).",
    )
    peering_priority: int | None = Field(
        None, ge=0, description="This replica's priority in the peering (highest is active); None: random per start."
    )
    peering_lifetime_seconds: int = Field(
        15, ge=5, le=300, description="How long a silent replica counts as alive: the failover time after a crash."
    )

    @property
    def address_policy(self) -> AddressPolicy:
        return AddressPolicy(allowed_hosts=self.allowed_hosts, allow_link_local=self.allow_link_local)

    @field_validator("allowed_hosts")
    @classmethod
    def _allowed_hosts_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return AddressPolicy(allowed_hosts=value).allowed_hosts

    @field_validator("profiles", mode="before")
    @classmethod
    def _environment_names_any_case(cls, value: Any) -> Any:
        return _canonical_profiles(value)

    @model_validator(mode="after")
    def _profiles_resolve(self) -> OperatorSettings:
        for environment in Environment:  # reject e.g. a minimum above the profile's maximum at load time
            self.profile(environment)
        return self

    def profile(self, environment: Environment | str) -> ClientSettings:
        """API.md's profile for `environment` with this file's overrides and extra retry patterns applied."""
        env = Environment(environment)
        settings = PROFILES[env]
        if env in self.profiles:
            settings = apply_overrides(settings, self.profiles[env])
        if self.retryable_error_patterns:
            retry = settings.retry.model_copy(update={"extra_retryable_patterns": self.retryable_error_patterns})
            settings = settings.model_copy(update={"retry": retry})
        return settings.model_copy(update={"address_policy": self.address_policy})

    def resolve(self, spec: QdrantConnectionSpec) -> ClientSettings:
        """Client settings of one connection: this operator's profile, then the spec's explicit fields."""
        return resolve(spec, {env: self.profile(env) for env in Environment})


def _canonical_profiles(value: Any) -> Any:
    # Environment variable names arrive lower-cased: "production" means "Production".
    if not isinstance(value, Mapping):
        return value
    by_lower = {env.value.lower(): env.value for env in Environment}
    return {by_lower.get(str(key).lower(), key): block for key, block in value.items()}


class _EnvSchema(BaseSettings):
    """Only tells pydantic-settings which variables exist and how they nest; never instantiated."""

    resync_interval_seconds: float | None = None
    existence_check_interval_seconds: float | None = None
    migration_page_points: int | None = None
    migration_copy_seconds: float | None = None
    metrics_port: int | None = None
    health_port: int | None = None
    log_format: str | None = None
    log_level: str | None = None
    namespaces: list[str] | None = None
    retryable_error_patterns: list[str] | None = None
    settings_poll_seconds: float | None = None
    profiles: dict[str, ProfileOverride] | None = None
    allowed_hosts: list[str] | None = None
    allow_link_local: bool | None = None
    peering_name: str | None = None
    peering_priority: int | None = None
    peering_lifetime_seconds: int | None = None


def read_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The `QDRANT_OPERATOR_*` variables of `environ` (default: the process's) as nested settings data."""
    source = EnvSettingsSource(_EnvSchema, env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False)
    if environ is not None:
        source.env_vars = {key.lower(): value for key, value in environ.items()}
    return {key: value for key, value in source().items() if value is not None}


def read_file(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    if "profiles" in top:
        top = {**top, "profiles": _canonical_profiles(top["profiles"])}
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class SettingsBuilder:
    """Layers of settings data, each later layer winning field by field; `build()` validates once.

    settings = SettingsBuilder().file(path).environment().set(metrics_port=0).build()
    """

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    def file(self, path: Path | str) -> SettingsBuilder:
        self._data = _merge(self._data, read_file(Path(path)))
        return self

    def environment(self, environ: Mapping[str, str] | None = None) -> SettingsBuilder:
        self._data = _merge(self._data, read_environment(environ))
        return self

    def set(self, **fields: Any) -> SettingsBuilder:
        self._data = _merge(self._data, fields)
        return self

    def profile(self, environment: Environment | str, **blocks: BaseModel | Mapping[str, Any]) -> SettingsBuilder:
        """Override blocks of one environment's profile, e.g. `.profile("Testing", pool=Pool(max_connections=3))`."""
        data = {
            name: block.model_dump(exclude_none=True) if isinstance(block, BaseModel) else dict(block)
            for name, block in blocks.items()
        }
        return self.set(profiles={Environment(environment).value: data})

    def build(self) -> OperatorSettings:
        return OperatorSettings.model_validate(self._data)


def settings_file(path: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The settings file to use: the one given, else `$QDRANT_OPERATOR_SETTINGS_FILE`, else none."""
    env = os.environ if environ is None else environ
    chosen = path if path is not None else env.get(SETTINGS_FILE_ENV)
    return Path(chosen) if chosen else None


def load_settings(path: Path | str | None = None, environ: Mapping[str, str] | None = None) -> OperatorSettings:
    """Defaults < settings file (if any) < environment variables."""
    builder = SettingsBuilder()
    file = settings_file(path, environ)
    if file is not None:
        builder.file(file)
    return builder.environment(environ).build()
