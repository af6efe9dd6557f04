"""The circuit breaker's state machine with a fake clock."""

from __future__ import annotations

import pytest

from collection_operator.api.connection import BreakerState
from collection_operator.qdrant import CircuitBreaker, CircuitOpen


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def make(threshold: int = 3, open_seconds: float = 30) -> tuple[CircuitBreaker, Clock, list[tuple[str, str]]]:
    clock, changes = Clock(), []
    breaker = CircuitBreaker(threshold, open_seconds, clock=clock, on_change=lambda a, b: changes.append((a, b)))
    return breaker, clock, changes


def test_opens_after_consecutive_failures_only() -> None:
    breaker, _, _ = make(threshold=3)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    breaker.before_call()
    breaker.record_success()  # a success resets the count
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen, match=r"next trial in 30\.0s"):
        breaker.before_call()


def test_half_open_admits_one_trial_and_closes_on_success() -> None:
    breaker, clock, changes = make(threshold=1, open_seconds=30)
    breaker.record_failure()
    clock.now = 29.9
    assert breaker.state is BreakerState.OPEN and breaker.retry_in == pytest.approx(0.1)
    clock.now = 30
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()
    with pytest.raises(CircuitOpen, match="trial call is in flight"):
        breaker.before_call()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()
    assert changes == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


def test_failed_trial_reopens_for_a_full_period() -> None:
    breaker, clock, _ = make(threshold=1, open_seconds=10)
    breaker.record_failure()
    clock.now = 10
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now = 19.9
    assert breaker.state is BreakerState.OPEN
    clock.now = 20
    assert breaker.state is BreakerState.HALF_OPEN


def test_a_released_trial_lets_the_next_one_through() -> None:
    breaker, clock, _ = make(threshold=1, open_seconds=1)
    breaker.record_failure()
    clock.now = 1
    breaker.before_call()
    breaker.release()  # e.g. the call was cancelled
    breaker.before_call()
    assert breaker.state is BreakerState.HALF_OPEN


def test_probes_close_only_after_the_open_period() -> None:
    breaker, clock, _ = make(threshold=2, open_seconds=5)
    breaker.record_probe(False)
    breaker.record_probe(False)
    assert breaker.state is BreakerState.OPEN
    breaker.record_probe(True)
    assert breaker.state is BreakerState.OPEN, "a good probe during the open period does not close it"
    clock.now = 5
    breaker.record_probe(True)
    assert breaker.state is BreakerState.CLOSED
