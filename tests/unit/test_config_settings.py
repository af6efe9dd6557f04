"""Profiles, the spec resolver and settings precedence: defaults < TOML file < environment < code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from collection_operator.api.connection import Environment, Pool, QdrantConnectionSpec
from collection_operator.config import (
    PROFILES,
    LogFormat,
    OperatorSettings,
    SettingsBuilder,
    SettingsWatcher,
    load_settings,
    resolve,
)


@pytest.mark.parametrize(
    ("environment", "pool", "attempts", "interval", "connect", "health_timeout"),
    [
        (Environment.DEVELOPMENT, (1, 5), 2, 60, 10, 5),
        (Environment.STAGING, (2, 8), 3, 30, 10, 5),
        (Environment.PRODUCTION, (5, 20), 5, 15, 30, 10),
        (Environment.TESTING, (1, 2), 1, 5, 5, 5),
    ],
)
def test_profiles_match_the_api_table(
    environment: Environment, pool: tuple[int, int], attempts: int, interval: float, connect: float,
    health_timeout: float,
) -> None:  # fmt: skip
    profile = PROFILES[environment]
    assert (profile.pool.min_connections, profile.pool.max_connections) == pool
    assert profile.retry.max_attempts == attempts
    assert profile.health_check.interval_seconds == interval
    assert profile.timeouts.connect_seconds == connect
    assert profile.health_check.timeout_seconds == health_timeout
    # Shared defaults.
    assert (profile.retry.initial_delay_seconds, profile.retry.max_delay_seconds) == (1, 30)
    assert (profile.retry.multiplier, profile.retry.jitter) == (2.0, 0.1)
    assert (profile.pool.idle_timeout_seconds, profile.pool.max_lifetime_seconds) == (300, 1800)
    assert profile.pool.acquire_timeout_seconds == 30
    assert (profile.health_check.failure_threshold, profile.health_check.success_threshold) == (3, 1)
    assert (profile.circuit_breaker.failure_threshold, profile.circuit_breaker.open_seconds) == (5, 30)


def spec(**fields: object) -> QdrantConnectionSpec:
    return QdrantConnectionSpec.model_validate({"url": "http://qdrant:6333", **fields})


def test_explicit_spec_fields_win_over_the_profile() -> None:
    settings = resolve(spec(environment="Staging", retry={"maxAttempts": 9}, timeouts={"requestSeconds": 2}))
    assert settings.retry.max_attempts == 9
    assert settings.retry.initial_delay_seconds == 1  # the rest of the block stays the profile's
    assert settings.timeouts.request_seconds == 2 and settings.timeouts.connect_seconds == 10
    assert settings.pool == PROFILES[Environment.STAGING].pool


def test_the_environment_defaults_to_production() -> None:
    assert resolve(spec()) == PROFILES[Environment.PRODUCTION]


def test_a_lower_maximum_pulls_the_profile_minimum_down() -> None:
    settings = resolve(spec(environment="Production", pool={"maxConnections": 3}))
    assert (settings.pool.min_connections, settings.pool.max_connections) == (3, 3)


def test_toml_file_overrides_profiles_and_operator_settings(tmp_path: Path) -> None:
    path = tmp_path / "operator.toml"
    path.write_text(
        'resync_interval_seconds = 60\nlog_format = "json"\nnamespaces = ["a", "b"]\n'
        "[profiles.Production.pool]\nmax_connections = 30\n"
        "[profiles.Testing.healthCheck]\nintervalSeconds = 1\n"
    )
    settings = load_settings(path, environ={})
    assert settings.resync_interval_seconds == 60 and settings.log_format is LogFormat.JSON
    assert settings.namespaces == ("a", "b")
    assert settings.profile(Environment.PRODUCTION).pool.max_connections == 30
    assert settings.profile(Environment.PRODUCTION).pool.min_connections == 5
    assert settings.profile(Environment.TESTING).health_check.interval_seconds == 1
    # The spec still wins over the file's profile.
    assert settings.resolve(spec(pool={"maxConnections": 7})).pool.max_connections == 7
    assert settings.resolve(spec()).pool.max_connections == 30


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "operator.toml"
    path.write_text("metrics_port = 9000\nhealth_port = 9001\n[profiles.Production.pool]\nmax_connections = 30\n")
    environ = {
        "QDRANT_OPERATOR_METRICS_PORT": "9100",
        "QDRANT_OPERATOR_NAMESPACES": '["x"]',
        "QDRANT_OPERATOR_PROFILES__PRODUCTION__POOL__MIN_CONNECTIONS": "2",
        "QDRANT_OPERATOR_RETRYABLE_ERROR_PATTERNS": '["please retry"]',
        "UNRELATED": "1",
    }
    settings = load_settings(path, environ=environ)
    assert (settings.metrics_port, settings.health_port) == (9100, 9001)
    assert settings.namespaces == ("x",)
    pool = settings.profile("Production").pool
    assert (pool.min_connections, pool.max_connections) == (2, 30), "env and file merge field by field"
    assert settings.profile("Testing").retry.extra_retryable_patterns == ("please retry",)


def test_settings_file_can_be_named_by_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("resync_interval_seconds = 42\n")
    assert load_settings(environ={"QDRANT_OPERATOR_SETTINGS_FILE": str(path)}).resync_interval_seconds == 42
    assert load_settings(environ={}).resync_interval_seconds == 120


def test_builder_layers_in_call_order(tmp_path: Path) -> None:
    path = tmp_path / "operator.toml"
    path.write_text("metrics_port = 9000\n")
    settings = (
        SettingsBuilder()
        .file(path)
        .environment({"QDRANT_OPERATOR_METRICS_PORT": "9100"})
        .set(health_port=0)
        .profile("Testing", pool=Pool(max_connections=3))
        .build()
    )
    assert (settings.metrics_port, settings.health_port) == (9100, 0)
    assert settings.profile("Testing").pool.max_connections == 3
    later_wins = SettingsBuilder().set(metrics_port=1).environment({"QDRANT_OPERATOR_METRICS_PORT": "2"}).build()
    assert later_wins.metrics_port == 2


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValidationError):
        SettingsBuilder().set(unknown_key=1).build()
    with pytest.raises(ValidationError):
        SettingsBuilder().profile("Testing", pool={"min_connections": 5}).build()  # above Testing's max of 2


async def test_watcher_applies_a_changed_file_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = tmp_path / "operator.toml"
    path.write_text("resync_interval_seconds = 10\n")
    seen: list[float] = []
    watcher = SettingsWatcher(path, on_change=lambda s: seen.append(s.resync_interval_seconds), environ={})
    assert watcher.current.resync_interval_seconds == 10
    assert not await watcher.check_once()

    path.write_text("resync_interval_seconds = 20\n")
    assert await watcher.check_once()
    assert watcher.current.resync_interval_seconds == 20 and seen == [20]

    path.write_text("resync_interval_seconds = = broken\n")
    assert not await watcher.check_once()
    path.write_text("resync_interval_seconds = -1\n")
    assert not await watcher.check_once()
    path.write_text("[profiles.Testing.pool]\nmin_connections = 9\n")
    assert not await watcher.check_once()
    assert watcher.current.resync_interval_seconds == 20 and seen == [20]

    path.write_text("# same values, other bytes\nresync_interval_seconds = 20\n")
    assert not await watcher.check_once(), "an equal result is no change"


def test_every_setting_can_come_from_the_environment():
    values = {
        "resync_interval_seconds": ("61", 61),
        "existence_check_interval_seconds": ("0", 0),
        "migration_page_points": ("7", 7),
        "migration_copy_seconds": ("2.5", 2.5),
        "metrics_port": ("9100", 9100),
        "health_port": ("9101", 9101),
        "log_format": ("json", LogFormat.JSON),
        "log_level": ("DEBUG", "DEBUG"),
        "namespaces": ('["a"]', ("a",)),
        "retryable_error_patterns": ('["again"]', ("again",)),
        "settings_poll_seconds": ("0.5", 0.5),
        "profiles": ('{"Testing": {"pool": {"maxConnections": 2}}}', {"Testing": {"pool": {"max_connections": 2}}}),
        "allowed_hosts": ('["10.0.0.0/8"]', ("10.0.0.0/8",)),
        "allow_link_local": ("true", True),
        "peering_name": ("ops", "ops"),
        "peering_priority": ("7", 7),
        "peering_lifetime_seconds": ("20", 20),
    }
    assert set(values) == set(OperatorSettings.model_fields), "a new setting needs a line here"
    settings = load_settings(
        None, environ={f"QDRANT_OPERATOR_{name.upper()}": raw for name, (raw, _) in values.items()}
    )
    loaded = settings.model_dump(exclude_none=True)
    assert {name: loaded[name] for name in values} == {name: value for name, (_, value) in values.items()}


def test_code_beats_environment_beats_file_beats_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "operator.toml"
    path.write_text(
        "metrics_port = 1\nhealth_port = 1\nlog_level = 'WARNING'\n[profiles.Production.pool]\nmax_connections = 30\n"
    )
    environ = {
        "QDRANT_OPERATOR_METRICS_PORT": "2",
        "QDRANT_OPERATOR_HEALTH_PORT": "2",
        "QDRANT_OPERATOR_PROFILES__PRODUCTION__POOL__MIN_CONNECTIONS": "3",
    }
    settings = load_settings(path, environ, metrics_port=3)
    assert (settings.metrics_port, settings.health_port, settings.log_level) == (3, 2, "WARNING")
    assert settings.resync_interval_seconds == 120
    pool = settings.profile("Production").pool
    assert (pool.min_connections, pool.max_connections) == (3, 30)

    # The class itself reads the same layers: the process environment, and the file it names.
    for key, value in {**environ, "QDRANT_OPERATOR_SETTINGS_FILE": str(path)}.items():
        monkeypatch.setenv(key, value)
    assert OperatorSettings(metrics_port=3) == settings
    monkeypatch.delenv("QDRANT_OPERATOR_SETTINGS_FILE")
    assert OperatorSettings().log_level == "INFO"


def test_an_invalid_value_names_its_key_and_where_it_came_from(tmp_path: Path) -> None:
    path = tmp_path / "operator.toml"
    path.write_text("resync_interval_seconds = -1\nmetrics_port = 80\n[profiles.Testing.pool]\nmax_connections = 3\n")
    with pytest.raises(ValidationError) as raised:
        load_settings(path, environ={"QDRANT_OPERATOR_METRICS_PORT": "http"})
    text = str(raised.value)
    assert f"resync_interval_seconds\n  Input should be greater than 0 (from settings file {path})" in text
    assert (
        "metrics_port\n  Input should be a valid integer, unable to parse string as an integer (from "
        "environment variable QDRANT_OPERATOR_METRICS_PORT)" in text
    )

    environ = {"QDRANT_OPERATOR_PROFILES__TESTING__POOL__MIN_CONNECTIONS": "4"}
    with pytest.raises(ValidationError, match=r"profile Testing: pool min_connections 4 exceeds max_connections 3 "
                       rf"\(from environment variable QDRANT_OPERATOR_PROFILES__TESTING__POOL__MIN_CONNECTIONS "
                       rf"and settings file {re.escape(str(path))}\)"):  # fmt: skip
        load_settings(path, environ)
    with pytest.raises(
        ValidationError, match=r"metrics_port\n  Input should be less than or equal to 65535 \(from code\)"
    ):
        load_settings(None, {}, metrics_port=70000)

    with pytest.raises(ValidationError, match=r"'\{x\}/99' does not appear to be an IPv4 or IPv6 network \(from "
                       r"environment variable QDRANT_OPERATOR_ALLOWED_HOSTS\)"):  # fmt: skip
        load_settings(None, {"QDRANT_OPERATOR_ALLOWED_HOSTS": '["{x}/99"]'})
    with pytest.raises(ValueError, match=r"QDRANT_OPERATOR_NAMESPACES: not valid JSON"):
        load_settings(None, {"QDRANT_OPERATOR_NAMESPACES": "a,b"})
    path.write_text("resync_interval_seconds = = 1\n")
    with pytest.raises(ValueError, match=rf"settings file {re.escape(str(path))}: not valid TOML"):
        load_settings(path, {})
    with pytest.raises(FileNotFoundError, match="settings file not found"):
        load_settings(tmp_path / "missing.toml", {})
