"""Retries with exponential backoff and jitter, on tenacity, for retryable failures of idempotent calls."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ..config import RetrySettings
from .errors import QdrantError


def backoff_delay(settings: RetrySettings, attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Delay after failed attempt `attempt` (1-based): initial * multiplier^(attempt-1), capped, then
    randomised by +-jitter so many clients recovering together do not retry in lockstep."""
    delay = min(settings.max_delay_seconds, settings.initial_delay_seconds * settings.multiplier ** (attempt - 1))
    return max(0.0, delay * (1 + settings.jitter * (2 * rand() - 1)))


def should_retry(error: BaseException) -> bool:
    return isinstance(error, QdrantError) and error.retryable


def retrying(
    settings: RetrySettings,
    *,
    idempotent: bool,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
    on_retry: Callable[[QdrantError, float], None] | None = None,
) -> AsyncRetrying:
    """A tenacity controller: `async for attempt in retrying(...): with attempt: ...`. Non-idempotent
    calls get exactly one attempt. A server's Retry-After (429) stretches the delay, within max delay."""

    def wait(state: RetryCallState) -> float:
        delay = backoff_delay(settings, state.attempt_number, rand)
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, QdrantError) and error.retry_after:
            delay = max(delay, min(error.retry_after, settings.max_delay_seconds))
        return delay

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if on_retry is not None and isinstance(error, QdrantError):
            on_retry(error, state.upcoming_sleep)

    return AsyncRetrying(
        stop=stop_after_attempt(settings.max_attempts if idempotent else 1),
        wait=wait,
        retry=retry_if_exception(should_retry),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
