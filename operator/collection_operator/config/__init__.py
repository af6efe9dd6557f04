"""Operator settings: environment profiles, the resolver from a QdrantConnectionSpec, the TOML settings
file with per-environment overrides, `QDRANT_OPERATOR_*` environment variables, a builder, hot reload,
all as one pydantic-settings class.

    settings = load_settings()                    # defaults < file < environment < code
    client_settings = settings.resolve(spec)      # profile < settings-file override < explicit spec fields
    watcher = SettingsWatcher(path, on_change=apply); watcher.start()
"""

from .profiles import (
    PROFILES,
    BreakerSettings,
    ClientSettings,
    HealthSettings,
    PoolSettings,
    ProfileOverride,
    RetrySettings,
    TimeoutSettings,
    resolve,
)
from .reload import SettingsWatcher
from .settings import (
    ENV_PREFIX,
    LogFormat,
    OperatorSettings,
    SettingsBuilder,
    load_settings,
    settings_file,
)

__all__ = [
    "ENV_PREFIX",
    "PROFILES",
    "BreakerSettings",
    "ClientSettings",
    "HealthSettings",
    "LogFormat",
    "OperatorSettings",
    "PoolSettings",
    "ProfileOverride",
    "RetrySettings",
    "SettingsBuilder",
    "SettingsWatcher",
    "TimeoutSettings",
    "load_settings",
    "resolve",
    "settings_file",
]
