"""The health state machine: Unknown, then thresholds decide Healthy, Degraded, Unhealthy."""

from __future__ import annotations

from collection_operator.api.connection import Health
from collection_operator.qdrant import HealthTracker


def test_unknown_until_the_first_probe() -> None:
    assert HealthTracker(3, 1).health is Health.UNKNOWN
    assert HealthTracker(3, 1).record(True) is Health.HEALTHY
    assert HealthTracker(3, 1).record(False) is Health.DEGRADED


def test_failures_degrade_then_make_unhealthy_at_the_threshold() -> None:
    tracker = HealthTracker(failure_threshold=3, success_threshold=2)
    tracker.record(True)
    assert [tracker.record(False) for _ in range(3)] == [Health.DEGRADED, Health.DEGRADED, Health.UNHEALTHY]
    assert tracker.record(True) is Health.DEGRADED, "recovering: one success of two needed"
    assert tracker.record(True) is Health.HEALTHY


def test_a_success_resets_the_failure_count() -> None:
    tracker = HealthTracker(failure_threshold=2, success_threshold=1)
    tracker.record(False)
    tracker.record(True)
    assert tracker.record(False) is Health.DEGRADED


def test_trouble_reported_by_the_server_is_degraded() -> None:
    tracker = HealthTracker(3, 1)
    assert tracker.record(True, trouble=True) is Health.DEGRADED
    assert tracker.record(True) is Health.HEALTHY
