"""What one reconcile step decides, for every kind: a verdict, the status to write, Events, when to look
again. The one mapping of failures to verdicts (`outcome_for`) and the one release-after-N-attempts policy
of both delete handlers live here too."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from ..api.base import StatusModel
from ..qdrant.errors import (
    AddressNotAllowed,
    CircuitOpen,
    InvalidRequest,
    QdrantError,
    TLSError,
    Unauthorized,
    Unreachable,
)

S = TypeVar("S", bound=StatusModel)

# Failures of the connection itself rather than of one resource's request.
CONNECTION_ERRORS = (Unreachable, Unauthorized, TLSError, CircuitOpen, AddressNotAllowed)
RETRY_SECONDS = 10.0
DELETE_ATTEMPTS = 5  # then a deleted resource is released with a Warning; Qdrant is left as it is


class State(StrEnum):
    """How a verdict reads: Ready; Reconciling (work in progress); Stalled (a person must act); Failed
    (transient, retried); Paused and Unmanaged (the user told the operator to keep its hands off)."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    FAILED = "Failed"
    PAUSED = "Paused"
    UNMANAGED = "Unmanaged"


@dataclass(frozen=True)
class Verdict:
    """The summary of one reconcile, which becomes the kstatus conditions."""

    state: State
    reason: str
    message: str = ""

    @property
    def ready(self) -> bool:
        return self.state == State.READY


@dataclass
class Outcome(Generic[S]):
    """A step's result: the handler writes `status` (conditions are added from the verdict), posts `events`
    and asks kopf to look again after `requeue_after` seconds."""

    verdict: Verdict
    status: S
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    requeue_after: float | None = None
    qdrant_writes: int = 0
    drift_corrected: int = 0
    create_conflicts: int = 0  # creates Qdrant answered "already exists" (then observed, never overwritten)
    reconciled: bool = False  # the current generation is in effect (Ready); Stalled/Paused verdicts are final too

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(("Warning" if warning else "Normal", reason, message))


class ReconcileError(Exception):
    """A step cannot go on; `verdict` says why (raised inside steps, turned into an Outcome by the caller)."""

    def __init__(self, verdict: Verdict, requeue_after: float | None = None):
        super().__init__(verdict.message)
        self.verdict = verdict
        self.requeue_after = requeue_after


def verdict_for(exc: Exception, context: str = "") -> Verdict:
    """Any failure of a step as a verdict: ours (ReconcileError), the connection's (ConnectionNotReady),
    a request Qdrant refuses (InvalidSpec, Stalled) or Qdrant's (QdrantUnavailable)."""
    if isinstance(exc, ReconcileError):
        return exc.verdict
    if isinstance(exc, InvalidRequest):
        return Verdict(State.STALLED, "InvalidSpec", f"{context}Qdrant refused the request: {exc}")
    if isinstance(exc, QdrantError):
        reason = "ConnectionNotReady" if isinstance(exc, CONNECTION_ERRORS) else "QdrantUnavailable"
        return Verdict(State.FAILED, reason, f"{context}{exc.reason}: {exc}")
    raise exc


def outcome_for(exc: Exception, status: S, context: str = "") -> Outcome[S]:
    """The one place a failed step becomes an Outcome: Stalled waits for a person, the rest is retried."""
    verdict = verdict_for(exc, context)
    requeue = exc.requeue_after if isinstance(exc, ReconcileError) else None
    if verdict.state == State.STALLED:
        requeue = None
    elif requeue is None:
        requeue = RETRY_SECONDS
    return Outcome(verdict, status, requeue_after=requeue)


@dataclass(frozen=True)
class DeleteDecision:
    """What a delete handler does after a failed attempt: retry after `delay`, or release the resource
    (`release` True) with `warning` as the Event that says what was left behind."""

    release: bool
    delay: float = 0.0
    warning: str = ""


def after_failed_delete(attempt: int, what: str, left: str, exc: Exception) -> DeleteDecision:
    """Both delete handlers' retry budget: capped exponential backoff, then release after DELETE_ATTEMPTS
    so a resource is never trapped by an unreachable Qdrant."""
    if attempt + 1 >= DELETE_ATTEMPTS:
        return DeleteDecision(
            True,
            warning=f"{what} could not be deleted after {DELETE_ATTEMPTS} attempts ({exc}); "
            f"the resource is released and {left}",
        )
    return DeleteDecision(False, delay=min(5 * 2**attempt, 60))
