"""Operator settings: one pydantic-settings class, `OperatorSettings`, read from four layers.

Precedence, lowest first: built-in defaults < the TOML settings file < `QDRANT_OPERATOR_*` environment
variables < code (`OperatorSettings(**fields)`, `load_settings(**fields)`, `SettingsBuilder.set`). Later layers
win field by field: nested blocks (`profiles`) merge, lists are replaced whole.

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

The layers are pydantic-settings sources (`settings_customise_sources`; `_layers` orders them). Each keeps
what it read, so an invalid value is reported with the layer it came from: the settings file's path, the
environment variable's name, or code. A file that is named but missing or not TOML is an error naming it.
"""

from __future__ import annotations

import errno
import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from ..api.connection import Environment, QdrantConnectionSpec
from .address_policy import AddressPolicy
from .profiles import PROFILES, ClientSettings, ProfileOverride, apply_overrides, resolve

ENV_PREFIX = "QDRANT_OPERATOR_"
SETTINGS_FILE_ENV = f"{ENV_PREFIX}SETTINGS_FILE"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False
    )

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

    @field_validator("profiles")
    @classmethod
    def _profiles_resolve(cls, value: dict[Environment, ProfileOverride]) -> dict[Environment, ProfileOverride]:
        for environment, override in value.items():  # e.g. a minimum above the profile's maximum, at load time
            try:
                apply_overrides(PROFILES[environment], override)
            except ValidationError as error:
                problems = "; ".join(item["msg"].removeprefix("Value error, ") for item in error.errors())
                raise ValueError(f"profile {environment.value}: {problems}") from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """`OperatorSettings(**fields)` reads the layers `load_settings(**fields)` reads (the file: the one
        `$QDRANT_OPERATOR_SETTINGS_FILE` names)."""
        return _layers(settings_cls, init_settings(), path=None, environ=None)

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
    if not isinstance(value, Mapping):
        return value
    by_lower = {env.value.lower(): env.value for env in Environment}
    return {by_lower.get(str(key).lower(), key): block for key, block in value.items()}


def _canonical(data: dict[str, Any]) -> dict[str, Any]:
    # Environment names in any case ("production" from an environment variable): one key per environment,
    # so that the layers' profile blocks merge field by field.
    if "profiles" not in data:
        return data
    return {**data, "profiles": _canonical_profiles(data["profiles"])}


class CodeSource(InitSettingsSource):
    """Fields given in code."""

    def __init__(self, settings_cls: type[BaseSettings], fields: Mapping[str, Any]) -> None:
        super().__init__(settings_cls, init_kwargs=dict(fields))
        self.data = _canonical(super().__call__())

    def __call__(self) -> dict[str, Any]:
        return self.data

    def origin(self, path: tuple[str | int, ...]) -> str:
        return "code"


class EnvironmentSource(EnvSettingsSource):
    """`QDRANT_OPERATOR_*` variables of `environ` (default: the process's)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        super().__init__(settings_cls)
        try:
            self.data = _canonical(super().__call__())
        except SettingsError as error:  # the message names the variable (prepare_field_value)
            raise SettingsError(str(error.__cause__ or error)) from error

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._environ.items()}

    def prepare_field_value(self, field_name: str, field: Any, value: Any, value_is_complex: bool) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as error:
            raise ValueError(f"{self.origin((field_name,))}: not valid JSON ({error})") from error

    def __call__(self) -> dict[str, Any]:
        return self.data

    def origin(self, path: tuple[str | int, ...]) -> str:
        for length in range(len(path), 0, -1):
            name = (ENV_PREFIX + "__".join(str(part) for part in path[:length])).lower()
            found = sorted(var.upper() for var in self.env_vars if var == name or var.startswith(f"{name}__"))
            if found:
                return f"environment variable{'s' if len(found) > 1 else ''} {', '.join(found)}"
        return "the environment"


class SettingsFileSource(TomlConfigSettingsSource):
    """The TOML settings file. Unlike pydantic-settings' own, a missing or malformed file is an error naming it."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(errno.ENOENT, "settings file not found", str(path))
        self.path = path
        super().__init__(settings_cls, toml_file=path)
        self.data = _canonical(super().__call__())

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            return super()._read_file(file_path)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"settings file {file_path}: not valid TOML: {error}") from None

    def __call__(self) -> dict[str, Any]:
        return self.data

    def origin(self, path: tuple[str | int, ...]) -> str:
        return f"settings file {self.path}"


# A settings source that keeps what it read (`data`) and can say where a value in it came from (`origin`).
Layer = CodeSource | EnvironmentSource | SettingsFileSource


def _layers(
    settings_cls: type[BaseSettings],
    fields: Mapping[str, Any],
    path: Path | str | None,
    environ: Mapping[str, str] | None,
) -> tuple[Layer, ...]:
    """The precedence, highest first: code, the environment, the settings file (pydantic-settings adds the
    defaults last)."""
    layers: list[Layer] = [CodeSource(settings_cls, fields), EnvironmentSource(settings_cls, environ)]
    if (file := settings_file(path, environ)) is not None:
        layers.append(SettingsFileSource(settings_cls, file))
    return tuple(layers)


def _depth(data: Any, loc: tuple[str | int, ...]) -> tuple[int, Any]:
    """How much of `loc` is present in `data`, and the value found at that depth."""
    depth = 0
    for part in loc:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, Sequence) and not isinstance(data, str) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            break
        depth += 1
    return depth, data


def _origin(loc: tuple[str | int, ...], layers: Sequence[Layer]) -> str | None:
    """Where the value at `loc` came from: the highest layer holding it, or every layer whose blocks merged there."""
    found = [(*_depth(layer.data, loc), layer) for layer in layers]
    deepest = max((depth for depth, _, _ in found), default=0)
    if deepest == 0:
        return None
    holders = [(value, layer) for depth, value, layer in found if depth == deepest]
    if not isinstance(holders[0][0], Mapping):
        holders = holders[:1]  # a plain value: the highest layer's won
    return " and ".join(layer.origin(loc[:deepest]) for _, layer in holders)


def _build(layers: Iterable[Layer]) -> OperatorSettings:
    """Validate the layers (highest first) once; each error names its key and the layer it came from."""
    ordered = tuple(layers)
    try:
        return OperatorSettings(_build_sources=(ordered, {}))
    except ValidationError as error:
        details: list[InitErrorDetails] = []
        for item in error.errors(include_url=False):
            where = _origin(item["loc"], ordered)
            message = item["msg"] if where is None else f"{item['msg']} (from {where})"
            details.append(
                {"type": PydanticCustomError(item["type"], message), "loc": item["loc"], "input": item["input"]}
            )
        raise ValidationError.from_exception_data(error.title, details) from None


class SettingsBuilder:
    """Layers of settings, each later layer winning field by field; `build()` validates once.

    settings = SettingsBuilder().file(path).environment().set(metrics_port=0).build()
    """

    def __init__(self) -> None:
        self._layers: list[Layer] = []

    def file(self, path: Path | str) -> SettingsBuilder:
        self._layers.append(SettingsFileSource(OperatorSettings, Path(path)))
        return self

    def environment(self, environ: Mapping[str, str] | None = None) -> SettingsBuilder:
        self._layers.append(EnvironmentSource(OperatorSettings, environ))
        return self

    def set(self, **fields: Any) -> SettingsBuilder:
        self._layers.append(CodeSource(OperatorSettings, fields))
        return self

    def profile(self, environment: Environment | str, **blocks: BaseModel | Mapping[str, Any]) -> SettingsBuilder:
        """Override blocks of one environment's profile, e.g. `.profile("Testing", pool=Pool(max_connections=3))`."""
        data = {
            name: block.model_dump(exclude_none=True) if isinstance(block, BaseModel) else dict(block)
            for name, block in blocks.items()
        }
        return self.set(profiles={Environment(environment).value: data})

    def build(self) -> OperatorSettings:
        return _build(reversed(self._layers))


def settings_file(path: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The settings file to use: the one given, else `$QDRANT_OPERATOR_SETTINGS_FILE`, else none."""
    env = os.environ if environ is None else environ
    chosen = path if path is not None else env.get(SETTINGS_FILE_ENV)
    return Path(chosen) if chosen else None


def load_settings(
    path: Path | str | None = None, environ: Mapping[str, str] | None = None, **fields: Any
) -> OperatorSettings:
    """Defaults < settings file (`path`, else `$QDRANT_OPERATOR_SETTINGS_FILE`, else none) < environment < `fields`."""
    return _build(_layers(OperatorSettings, fields, path, environ))
