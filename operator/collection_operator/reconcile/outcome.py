"""What one reconcile step decides, for every kind: a verdict, the status to write, Events, when to look
again. The one error policy lives here too: the typed errors a step raises (Stalling, Waiting, Failed),
the mapping of the client layer's errors onto them (`reconcile_error`, `outcome_for`), the backoff, and the
release-after-N-attempts policy of both delete handlers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

import pydantic

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
from . import reasons

S = TypeVar("S", bound=StatusModel)
M = TypeVar("M", bound=pydantic.BaseModel)

# Failures of the connection itself rather than of one resource's request.
CONNECTION_ERRORS = (Unreachable, Unauthorized, TLSError, CircuitOpen, AddressNotAllowed)
RETRY_SECONDS = 10.0
DELETE_ATTEMPTS = 5  # then a deleted resource is released with a Warning; Qdrant is left as it is
DELETE_BACKOFF_CAP_SECONDS = 60.0


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


@dataclass(frozen=True)
class Aspect:
    """A condition of a type of its own beside the kstatus ones the verdict makes (a CollectionSnapshot's
    BackupVerified): the status writer adds it to them."""

    type: str
    status: bool
    reason: str
    message: str = ""


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
    aspects: list[Aspect] = field(default_factory=list)  # conditions beside Ready, Reconciling and Stalled

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(("Warning" if warning else "Normal", reason, message))


class ReconcileError(Exception):
    """A step cannot go on. Its class is the policy, as Flux's ComputeReconcileResult: Stalling waits for a
    person, Waiting looks again for something outside the resource, Failed retries a failed call. Raised
    inside steps, turned into an Outcome by `outcome_for`."""

    state = State.FAILED
    requeue_after: float | None = RETRY_SECONDS

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason  # a constant of reconcile/reasons.py
        self.message = message

    @property
    def verdict(self) -> Verdict:
        return Verdict(self.state, self.reason, self.message)


class Stalling(ReconcileError):
    """No retry helps (invalid spec, conflict, refused): Stalled, never requeued; a change of the resource
    (or a drift sweep) looks again."""

    state = State.STALLED
    requeue_after = None


class Waiting(ReconcileError):
    """Something this resource depends on is not ready yet (its connection, a snapshot, a Secret): Failed,
    looked at again after `requeue_after`."""


class Failed(ReconcileError):
    """A call failed (Qdrant answered an error, or not at all): Failed, retried."""


def parse(model: type[M], data: Mapping[str, Any]) -> M:
    """A spec as its model; Stalling InvalidSpec when the model refuses what the CRD schema let through."""
    try:
        return model.model_validate(dict(data))
    except pydantic.ValidationError as exc:
        raise Stalling(reasons.INVALID_SPEC, str(exc)) from exc


def reconcile_error(exc: Exception, context: str = "") -> ReconcileError:
    """The policy for any failure of a step. Ours (ReconcileError) as raised; the client layer's by type:
    a request Qdrant refuses Stalls (InvalidSpec), the connection's failures wait for it
    (ConnectionNotReady), the rest of Qdrant's are retried (QdrantUnavailable). `context` says what was
    being done, before a Qdrant error's own words. Anything else is a bug and raised again."""
    if isinstance(exc, ReconcileError):
        return exc
    if isinstance(exc, InvalidRequest):
        return Stalling(reasons.INVALID_SPEC, f"{context}Qdrant refused the request: {exc}")
    if isinstance(exc, CONNECTION_ERRORS):
        return Waiting(reasons.CONNECTION_NOT_READY, f"{context}{exc.reason}: {exc}")
    if isinstance(exc, QdrantError):
        return Failed(reasons.QDRANT_UNAVAILABLE, f"{context}{exc.reason}: {exc}")
    raise exc


def verdict_for(exc: Exception, context: str = "") -> Verdict:
    return reconcile_error(exc, context).verdict


def outcome_for(exc: Exception, status: S, context: str = "") -> Outcome[S]:
    """The one place a failed step becomes an Outcome: Stalled waits for a person, the rest is retried."""
    error = reconcile_error(exc, context)
    return Outcome(error.verdict, status, requeue_after=error.requeue_after)


def backoff(failures: int, cap: float) -> float:
    """Capped exponential backoff after `failures` (>= 1) failures in a row: 5, 10, 20 ... `cap` seconds."""
    return min(5.0 * 2 ** (failures - 1), cap)


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
    return DeleteDecision(False, delay=backoff(attempt + 1, DELETE_BACKOFF_CAP_SECONDS))
