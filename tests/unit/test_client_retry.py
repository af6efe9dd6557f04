"""The retry classifier and backoff: which failures are retried, how long to wait, only idempotent calls."""

from __future__ import annotations

import re
import ssl

import httpx
import pytest
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from collection_operator.config import RetrySettings
from collection_operator.qdrant import (
    AlreadyExists,
    Conflict,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    QdrantError,
    TLSError,
    Transient,
    Unauthorized,
    Unreachable,
    backoff_delay,
    classify,
    retrying,
)


def response(status: int, error: str = "boom", headers: dict[str, str] | None = None) -> UnexpectedResponse:
    body = f'{{"status": {{"error": "{error}"}}, "time": 0.0}}'.encode()
    return UnexpectedResponse(status, "", body, httpx.Headers(headers or {}))


def rest(reply: UnexpectedResponse) -> httpx.HTTPStatusError:
    """The same reply as the operator's own REST calls raise it (Session.send)."""
    request = httpx.Request("GET", "http://127.0.0.1:6333/collections")
    response = httpx.Response(reply.status_code, content=reply.content, headers=reply.headers, request=request)
    return httpx.HTTPStatusError("not 2xx", request=request, response=response)


def transport(error: Exception) -> ResponseHandlingException:
    return ResponseHandlingException(error)  # how qdrant-client wraps httpx failures


@pytest.mark.parametrize(
    ("raised", "kind", "retryable"),
    [
        (transport(httpx.ConnectError("[Errno 111] Connection refused")), Unreachable, True),
        (transport(httpx.ConnectTimeout("timed out")), Unreachable, True),
        (transport(httpx.ReadTimeout("timed out")), Transient, True),
        (TimeoutError(), Transient, True),
        (transport(httpx.RemoteProtocolError("server disconnected")), Transient, True),
        (response(429), Transient, True),
        (response(502), Transient, True),
        (response(503), Transient, True),
        (response(504), Transient, True),
        (response(500), Transient, False),
        (response(400, "Wrong input: bad vector size"), InvalidRequest, False),
        (response(422, "Format error in JSON body"), InvalidRequest, False),
        (response(401), Unauthorized, False),
        (response(403), Unauthorized, False),
        (response(404, "Collection `x` doesn't exist!"), NotFound, False),
        (response(409, "Collection `x` already exists!"), AlreadyExists, False),
        (response(400, "Wrong input: Collection `x` already exists!"), AlreadyExists, False),
        (response(409, "version conflict"), Conflict, False),
    ],
)
def test_classification(raised: Exception, kind: type[QdrantError], retryable: bool) -> None:
    for form in [raised, rest(raised)] if isinstance(raised, UnexpectedResponse) else [raised]:
        error = classify(form)
        assert type(error) is kind, form
        assert error.retryable is retryable


def test_reasons_map_to_condition_reasons() -> None:
    assert classify(response(401)).reason == "Unauthorized"
    assert classify(transport(httpx.ConnectError("refused"))).reason == "Unreachable"
    assert classify(response(400)).reason == "InvalidRequest" and classify(response(400)).permanent
    assert classify(response(503)).reason == "QdrantUnavailable"


def test_certificate_failure_is_a_tls_error() -> None:
    cause = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    connect = httpx.ConnectError("certificate verify failed")
    connect.__cause__ = cause
    error = classify(transport(connect))
    assert isinstance(error, TLSError) and not error.retryable and error.reason == "TLSError"


def test_a_lost_reply_of_a_non_idempotent_call_has_an_unknown_outcome() -> None:
    for raised in (TimeoutError(), transport(httpx.ReadTimeout("t")), transport(httpx.ReadError("reset"))):
        error = classify(raised, idempotent=False)
        assert isinstance(error, OutcomeUnknown) and not error.retryable
    # Nothing was sent when connecting failed: that stays Unreachable.
    assert isinstance(classify(transport(httpx.ConnectError("refused")), idempotent=False), Unreachable)


def test_retry_after_is_kept() -> None:
    assert classify(response(429, headers={"Retry-After": "3"})).retry_after == 3
    assert classify(rest(response(429, headers={"Retry-After": "3"}))).retry_after == 3
    assert classify(ResourceExhaustedResponse("slow down", 7)).retry_after == 7


def test_extra_patterns_make_an_error_retryable_but_never_auth() -> None:
    patterns = [re.compile("please retry", re.IGNORECASE)]
    assert classify(response(400, "Shard busy, please retry"), extra_retryable=patterns).retryable
    assert not classify(response(400, "bad vector size"), extra_retryable=patterns).retryable
    assert not classify(response(401, "please retry"), extra_retryable=patterns).retryable


SETTINGS = RetrySettings(max_attempts=5, initial_delay_seconds=1, max_delay_seconds=5, multiplier=2, jitter=0.1)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    assert [backoff_delay(SETTINGS, n, rand=lambda: 0.5) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert backoff_delay(SETTINGS, 2, rand=lambda: 0.0) == pytest.approx(1.8)
    assert backoff_delay(SETTINGS, 2, rand=lambda: 1.0) == pytest.approx(2.2)


class Calls:
    def __init__(self, *outcomes: Exception | str) -> None:
        self.outcomes, self.count, self.slept = list(outcomes), 0, []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)  # recorded, not slept

    async def __call__(self) -> str:
        self.count += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


async def test_idempotent_calls_retry_retryable_failures_with_backoff() -> None:
    calls = Calls(Transient("503"), Unreachable("refused"), "ok")
    controller = retrying(SETTINGS, idempotent=True, sleep=calls.sleep, rand=lambda: 0.5)
    assert await controller(calls) == "ok"
    assert calls.count == 3 and calls.slept == [1, 2]


async def test_retry_after_stretches_the_delay_within_the_maximum() -> None:
    calls = Calls(Transient("429", retry_after=3), Transient("429", retry_after=60), "ok")
    controller = retrying(SETTINGS, idempotent=True, sleep=calls.sleep, rand=lambda: 0.5)
    await controller(calls)
    assert calls.slept == [3, 5]


async def test_permanent_failures_are_not_retried() -> None:
    calls = Calls(InvalidRequest("400"), "ok")
    with pytest.raises(InvalidRequest):
        await retrying(SETTINGS, idempotent=True, sleep=calls.sleep)(calls)
    assert calls.count == 1


async def test_non_idempotent_calls_get_one_attempt() -> None:
    calls = Calls(Transient("503"), "ok")
    with pytest.raises(Transient):
        await retrying(SETTINGS, idempotent=False, sleep=calls.sleep)(calls)
    assert calls.count == 1


async def test_attempts_are_bounded() -> None:
    calls = Calls(*[Transient("503")] * 5, "never")
    with pytest.raises(Transient):
        await retrying(SETTINGS, idempotent=True, sleep=calls.sleep, rand=lambda: 0.5)(calls)
    assert calls.count == 5 and len(calls.slept) == 4
