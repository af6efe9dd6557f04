"""The one error policy (reconcile/outcome.py): every typed error becomes exactly one verdict and one requeue."""

from __future__ import annotations

import inspect

import pytest

from collection_operator.api.collection import VectorCollectionSpec, VectorCollectionStatus
from collection_operator.qdrant import errors
from collection_operator.reconcile import reasons
from collection_operator.reconcile import snapshot as logic
from collection_operator.reconcile.outcome import (
    DELETE_ATTEMPTS,
    RETRY_SECONDS,
    Failed,
    ReconcileError,
    Stalling,
    Waiting,
    after_failed_delete,
    backoff,
    outcome_for,
    parse,
    reconcile_error,
)

# Every error class of the client layer -> (state, condition reason, requeue seconds or None).
QDRANT_POLICY: dict[type[errors.QdrantError], tuple[str, str, float | None]] = {
    errors.InvalidRequest: ("Stalled", "InvalidSpec", None),
    errors.Unreachable: ("Failed", "ConnectionNotReady", RETRY_SECONDS),
    errors.TLSError: ("Failed", "ConnectionNotReady", RETRY_SECONDS),
    errors.Unauthorized: ("Failed", "ConnectionNotReady", RETRY_SECONDS),
    errors.CircuitOpen: ("Failed", "ConnectionNotReady", RETRY_SECONDS),
    errors.AddressNotAllowed: ("Failed", "ConnectionNotReady", RETRY_SECONDS),
    errors.NotFound: ("Failed", "QdrantUnavailable", RETRY_SECONDS),
    errors.Conflict: ("Failed", "QdrantUnavailable", RETRY_SECONDS),
    errors.AlreadyExists: ("Failed", "QdrantUnavailable", RETRY_SECONDS),
    errors.Transient: ("Failed", "QdrantUnavailable", RETRY_SECONDS),
    errors.OutcomeUnknown: ("Failed", "QdrantUnavailable", RETRY_SECONDS),
    errors.PoolExhausted: ("Failed", "QdrantUnavailable", RETRY_SECONDS),
    errors.QdrantError: ("Failed", "QdrantUnavailable", RETRY_SECONDS),
}


def test_the_table_covers_every_error_of_the_client_layer() -> None:
    classes = {c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.QdrantError)}
    assert classes == set(QDRANT_POLICY)


@pytest.mark.parametrize(("error", "expected"), QDRANT_POLICY.items(), ids=lambda v: getattr(v, "__name__", ""))
def test_each_qdrant_error_has_one_verdict_and_requeue(
    error: type[errors.QdrantError], expected: tuple[str, str, float | None]
) -> None:
    outcome = outcome_for(error("HTTP 400: wrong"), VectorCollectionStatus(), "creating c: ")
    assert (outcome.verdict.state, outcome.verdict.reason, outcome.requeue_after) == expected
    # What was being done, then the error's own words (its reason names the cause when that is not shown).
    assert outcome.verdict.message.startswith("creating c: ") and outcome.verdict.message.endswith("HTTP 400: wrong")
    if expected[1] != "InvalidSpec":
        assert f"{error.reason}: HTTP 400" in outcome.verdict.message


@pytest.mark.parametrize(
    ("error", "state", "requeue"),
    [
        (Stalling(reasons.ALIAS_CONFLICT, "taken"), "Stalled", None),
        (Waiting(reasons.CONNECTION_NOT_READY, "down"), "Failed", RETRY_SECONDS),
        (Failed(reasons.QDRANT_UNAVAILABLE, "broke"), "Failed", RETRY_SECONDS),
        (logic.SourceNotReady(reasons.SNAPSHOT_NOT_READY, "no file yet"), "Failed", RETRY_SECONDS),
        (logic.SnapshotRefused(reasons.DISTRIBUTED_UNSUPPORTED, "partial"), "Stalled", None),
        (logic.RestoreFailed(reasons.RESTORE_VERIFICATION_FAILED, "12 points"), "Stalled", None),
        (logic.InvalidSchedule("not cron"), "Stalled", None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, ReconcileError) else None,
)
def test_each_reconcile_error_class_is_its_policy(error: ReconcileError, state: str, requeue: float | None) -> None:
    outcome = outcome_for(error, VectorCollectionStatus(), "ignored: ")
    assert (outcome.verdict.state, outcome.verdict.reason, outcome.requeue_after) == (state, error.reason, requeue)
    assert outcome.verdict.message == error.message  # the context prefixes only the client layer's words
    assert reconcile_error(error) is error


def test_anything_else_is_a_bug_and_raised_again() -> None:
    with pytest.raises(KeyError):
        reconcile_error(KeyError("status"))


def test_a_spec_the_model_refuses_stalls_as_invalid_spec() -> None:
    with pytest.raises(Stalling) as caught:
        parse(VectorCollectionSpec, {"connectionRef": {"name": "main"}, "vectors": "no"})
    assert caught.value.reason == reasons.INVALID_SPEC and "vectors" in caught.value.message


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff(n, 60.0) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert [after_failed_delete(n, "x", "y", OSError()).delay for n in range(DELETE_ATTEMPTS - 1)] == [5, 10, 20, 40]
    assert after_failed_delete(DELETE_ATTEMPTS - 1, "x", "y", OSError()).release


def test_every_reason_constant_is_a_distinct_camel_case_name() -> None:
    values = [v for k, v in vars(reasons).items() if k.isupper()]
    assert len(values) == len(set(values))
    assert all(v[0].isupper() and v.isalpha() for v in values)
