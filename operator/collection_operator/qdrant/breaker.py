"""A per-target circuit breaker: Closed -> (N consecutive failures) -> Open -> (open period over) ->
HalfOpen -> one trial call -> Closed on success, Open again on failure.

Own code rather than pybreaker/aiobreaker/purgatory: the operator needs an injectable clock (unit tests
never sleep), exactly one trial call in half-open across concurrent tasks, outcomes recorded from outside
a wrapped call (health probes count too), and a state-change callback; none of those libraries offers all
of that for asyncio without patching its internals.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..api.connection import BreakerState
from .errors import CircuitOpen

OnStateChange = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int,
        open_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: OnStateChange | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self._clock = clock
        self._listeners: list[OnStateChange] = [on_change] if on_change else []
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    def subscribe(self, listener: OnStateChange) -> None:
        self._listeners.append(listener)

    @property
    def state(self) -> BreakerState:
        """The state as of now: an Open breaker whose period is over reads HalfOpen."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.open_seconds:
            self._set(BreakerState.HALF_OPEN)
        return self._state

    @property
    def retry_in(self) -> float:
        """Seconds until an Open breaker lets a trial call through (0 when not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.open_seconds - (self._clock() - self._opened_at))

    def before_call(self) -> None:
        """Admit a call or raise CircuitOpen. In HalfOpen only one trial call is admitted at a time."""
        state = self.state
        if state is BreakerState.OPEN:
            raise CircuitOpen(
                f"circuit open after {self.failure_threshold} consecutive failures; next trial in {self.retry_in:.1f}s"
            )
        if state is BreakerState.HALF_OPEN:
            if self._trial_in_flight:
                raise CircuitOpen("circuit half-open: a trial call is in flight")
            self._trial_in_flight = True

    def record_success(self) -> None:
        self._trial_in_flight = False
        self._failures = 0
        if self.state is BreakerState.HALF_OPEN:
            self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._trial_in_flight = False
        state = self.state
        if state is BreakerState.HALF_OPEN:
            self._open()
        elif state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._open()

    def release(self) -> None:
        """The admitted call ended without telling anything about the target (e.g. it was cancelled)."""
        self._trial_in_flight = False

    def record_probe(self, ok: bool) -> None:
        """A health probe's outcome. Probes run even while Open; a good one closes the breaker only once the
        open period is over, so a flapping target is not hammered."""
        if not ok:
            self.record_failure()
        elif self.state is not BreakerState.OPEN:
            self.record_success()

    def configure(self, failure_threshold: int, open_seconds: float) -> None:
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._failures = 0
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        old, self._state = self._state, state
        if old is not state:
            for listener in self._listeners:
                listener(old, state)
