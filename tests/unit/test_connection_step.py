"""The QdrantConnection daemon's decisions, one tick at a time, through the ports: status, Secrets, when the
client is built, when collections are swept or checked. Pure: the test supplies the clock."""

from __future__ import annotations

from typing import Any

import pytest

from collection_operator.api.connection import BreakerState, Health
from collection_operator.config import OperatorSettings
from collection_operator.qdrant import ConnectionReport
from collection_operator.reconcile.connection_step import (
    SECRET_RECHECK_SECONDS,
    SWEEP_SPREAD,
    TICK_SECONDS,
    ConnectionRun,
    Observed,
    Tick,
)
from collection_operator.reconcile.ports import Credentials, SecretUnavailable
from tests.fakes import FakeClients, FakeSecrets

SETTINGS = OperatorSettings(resync_interval_seconds=100, existence_check_interval_seconds=30)
HEALTH_INTERVAL = 15.0  # the production profile's health check interval
SPEC = {"url": "http://127.0.0.1:6333", "apiKeySecretRef": {"name": "qdrant"}}
KEY = ("ns", "qdrant", "api-key")


def report(health: Health = Health.HEALTHY, reason: str | None = None) -> ConnectionReport:
    return ConnectionReport(health, "1.19.0", False, 1, BreakerState.CLOSED, reason, reason and f"{reason} message")


UNKNOWN = ConnectionReport(Health.UNKNOWN, None, None, None, BreakerState.CLOSED, None)
DOWN = report(Health.UNHEALTHY, "Unreachable")


class Loop:
    """A ConnectionRun with its ports, started at time 0."""

    def __init__(self, reported: ConnectionReport = UNKNOWN, secret: bytes | None = b"key-1"):
        self.secrets = FakeSecrets({KEY: secret} if secret is not None else {})
        self.clients = FakeClients(reported)
        self.run = ConnectionRun(0.0, SETTINGS)

    async def tick(
        self,
        now: float,
        spec: dict[str, Any] = SPEC,
        *,
        conditions: bool = False,
        collections: tuple[str, ...] = (),
        sweeping: bool = False,
        checking: bool = False,
    ) -> Tick:
        bodies = [{"metadata": {"namespace": namespace, "name": f"c{i}"}} for i, namespace in enumerate(collections)]
        observed = Observed("ns", "main", spec, conditions, bodies, sweeping, checking)
        return await self.run.step(observed, now, SETTINGS, self.secrets, self.clients)

    def report(self, reported: ConnectionReport) -> None:
        self.clients.running["ns/main"].report = reported


async def test_a_new_connection_builds_its_client_and_says_connecting() -> None:
    loop = Loop()
    tick = await loop.tick(0.0)
    assert loop.clients.applied == [("ns/main", Credentials("key-1", None))]
    assert tick.outcome is not None and (tick.outcome.verdict.state, tick.outcome.verdict.reason) == (
        "Reconciling",
        "Connecting",
    )
    assert not tick.outcome.reconciled and not tick.probed
    assert (tick.delay, tick.sweep, tick.check) == (TICK_SECONDS, None, False)


async def test_after_a_restart_the_last_verdict_stands_until_the_first_probe() -> None:
    loop = Loop()
    assert (await loop.tick(0.0, conditions=True)).outcome is None
    loop.report(report())
    tick = await loop.tick(1.0, conditions=True)
    assert tick.probed and tick.outcome is not None and tick.outcome.reconciled
    assert tick.outcome.verdict.reason == "Connected"


async def test_an_unchanged_connection_keeps_its_client() -> None:
    loop = Loop(report())
    for now in range(0, 60):
        await loop.tick(float(now))
    assert len(loop.clients.applied) == 1  # the Secret was re-read every health interval, unchanged


async def test_an_invalid_spec_stalls_and_builds_nothing() -> None:
    loop = Loop()
    tick = await loop.tick(0.0, {**SPEC, "unknownField": 1})
    assert tick.outcome is not None and (tick.outcome.verdict.state, tick.outcome.verdict.reason) == (
        "Stalled",
        "InvalidSpec",
    )
    assert tick.delay == SETTINGS.resync_interval_seconds
    assert loop.clients.applied == []


async def test_a_missing_secret_fails_and_is_looked_for_again_soon() -> None:
    loop = Loop(secret=None)
    tick = await loop.tick(0.0)
    assert tick.outcome is not None and (tick.outcome.verdict.state, tick.outcome.verdict.reason) == (
        "Failed",
        "SecretNotFound",
    )
    assert "ns/qdrant" in tick.outcome.verdict.message
    assert tick.delay == min(HEALTH_INTERVAL, SECRET_RECHECK_SECONDS)
    assert loop.clients.applied == []
    loop.secrets.data[KEY] = b"key-1"
    await loop.tick(tick.delay)  # read again at once, not a health interval later
    assert loop.clients.applied == [("ns/main", Credentials("key-1", None))]


async def test_a_secret_deleted_later_keeps_the_running_client() -> None:
    loop = Loop(report())
    await loop.tick(0.0)
    del loop.secrets.data[KEY]
    tick = await loop.tick(HEALTH_INTERVAL)
    assert tick.outcome is not None and tick.outcome.verdict.reason == "SecretNotFound"
    assert len(loop.clients.applied) == 1 and "ns/main" in loop.clients.running


class Unanswered(FakeSecrets):
    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        raise SecretUnavailable("GET /api/v1/namespaces/ns/secrets/key: 0 ReadTimeout")


class Broken(FakeSecrets):
    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        raise AttributeError("a bug, not an API server that did not answer")


async def test_an_unexpected_error_reading_secrets_is_not_retried_as_an_outage() -> None:
    loop = Loop()
    loop.secrets = Broken()
    with pytest.raises(AttributeError):
        await loop.tick(0.0)


async def test_secrets_that_cannot_be_read_wait_a_tick_without_a_client() -> None:
    loop = Loop()
    loop.secrets = Unanswered()
    tick = await loop.tick(0.0)
    assert (tick.outcome, tick.delay) == (None, TICK_SECONDS)
    assert loop.clients.applied == []


async def test_secrets_that_cannot_be_read_leave_a_running_client_as_it_is() -> None:
    loop = Loop(report())
    await loop.tick(0.0)
    loop.secrets = Unanswered()
    tick = await loop.tick(HEALTH_INTERVAL)
    assert tick.outcome is not None and tick.outcome.verdict.reason == "Connected"
    assert len(loop.clients.applied) == 1


async def test_a_rotated_secret_is_applied_within_a_health_interval() -> None:
    loop = Loop(report())
    await loop.tick(0.0)
    loop.secrets.data[KEY] = b"key-2"
    await loop.tick(HEALTH_INTERVAL - 1)
    assert [c.api_key for _, c in loop.clients.applied] == ["key-1"]
    await loop.tick(HEALTH_INTERVAL)
    assert [c.api_key for _, c in loop.clients.applied] == ["key-1", "key-2"]


async def test_a_changed_secret_reference_is_read_at_once() -> None:
    loop = Loop(report())
    await loop.tick(0.0)
    loop.secrets.data[("ns", "other", "api-key")] = b"key-3"
    await loop.tick(1.0, {**SPEC, "apiKeySecretRef": {"name": "other"}})
    assert [c.api_key for _, c in loop.clients.applied] == ["key-1", "key-3"]


async def test_collections_from_allowed_namespaces_count_as_users() -> None:
    loop = Loop(report())
    spec = {**SPEC, "allowedNamespaces": ["team-a"]}
    tick = await loop.tick(0.0, spec, collections=("ns", "team-a", "team-b"))
    assert tick.users == 2
    assert tick.outcome is not None and tick.outcome.status.collections == 2


async def test_no_sweep_at_start_then_one_spread_sweep_per_resync_interval() -> None:
    loop = Loop(report())
    resync = SETTINGS.resync_interval_seconds
    assert [(await loop.tick(now)).sweep for now in (0.0, 1.0, resync - 1)] == [None, None, None]
    assert (await loop.tick(resync)).sweep == resync * SWEEP_SPREAD
    assert (await loop.tick(resync + 1)).sweep is None
    # Due, but the last one still runs: it starts when that one is done.
    assert (await loop.tick(2 * resync, sweeping=True)).sweep is None
    assert (await loop.tick(2 * resync + 1)).sweep == resync * SWEEP_SPREAD


async def test_no_routine_sweep_while_the_connection_is_down() -> None:
    loop = Loop(DOWN)
    await loop.tick(0.0)
    assert (await loop.tick(SETTINGS.resync_interval_seconds)).sweep is None


async def test_an_outage_and_a_recovery_re_sweep_at_once_and_unspread() -> None:
    loop = Loop()
    await loop.tick(0.0)  # not probed yet
    loop.report(report())
    assert (await loop.tick(1.0)).sweep is None  # the first probe is no change of readiness
    loop.report(DOWN)
    assert (await loop.tick(2.0)).sweep == 0.0  # collections say ConnectionNotReady within a tick
    loop.report(report())
    assert (await loop.tick(3.0, sweeping=True)).sweep is None  # the re-sweep waits for the running one ...
    assert (await loop.tick(4.0)).sweep == 0.0  # ... and is not forgotten
    assert (await loop.tick(5.0)).sweep is None


async def test_existence_checks_run_on_their_interval_while_ready() -> None:
    loop = Loop(report())
    every = SETTINGS.existence_check_interval_seconds
    assert [(await loop.tick(now)).check for now in (0.0, every - 1)] == [False, False]
    assert (await loop.tick(every)).check
    assert not (await loop.tick(every + 1)).check
    assert not (await loop.tick(2 * every, checking=True)).check
    assert (await loop.tick(2 * every + 1)).check
    loop.report(DOWN)
    assert not (await loop.tick(4 * every)).check


async def test_existence_checks_can_be_switched_off() -> None:
    loop = Loop(report())
    off = SETTINGS.model_copy(update={"existence_check_interval_seconds": 0})
    observed = Observed("ns", "main", SPEC, False, [], False, False)
    ticks = [await loop.run.step(observed, now, off, loop.secrets, loop.clients) for now in (0.0, 1000.0)]
    assert not any(tick.check for tick in ticks)


@pytest.mark.parametrize("reported", [report(), DOWN])
async def test_status_says_what_the_client_reports(reported: ConnectionReport) -> None:
    tick = await Loop(reported).tick(0.0)
    assert tick.outcome is not None
    assert tick.outcome.status.health == reported.health
    assert tick.outcome.verdict.reason == ("Connected" if reported is not DOWN else "Unreachable")
