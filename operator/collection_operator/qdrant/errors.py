"""Typed errors of the client layer, one per condition reason, and the classifier that maps what
qdrant-client and httpx raise onto them.

| error            | reason             | from                                        | retried* | breaker |
|------------------|--------------------|---------------------------------------------|----------|---------|
| Unreachable      | Unreachable        | connection refused, DNS, connect timeout    | yes      | failure |
| TLSError         | TLSError           | certificate or handshake failure            | no       | failure |
| Unauthorized     | Unauthorized       | 401, 403                                    | no       | success |
| CircuitOpen      | CircuitOpen        | the breaker refused the call                | no       | -       |
| InvalidRequest   | InvalidSpec        | 400, 422 (and other 4xx)                    | no       | success |
| NotFound         | NotFound           | 404                                         | no       | success |
| Conflict         | ResourceConflict   | 409                                         | no       | success |
| AlreadyExists    | AlreadyExists      | 400/409 "... already exists"                | no       | success |
| Transient        | QdrantUnavailable  | 429, 5xx, read/write timeouts, broken reply | not 500  | failure |
| OutcomeUnknown   | OutcomeUnknown     | a non-idempotent call timed out or broke    | no       | failure |
| PoolExhausted    | PoolExhausted      | no pool lease within the acquire timeout    | yes      | -       |

*only idempotent calls are retried at all. "breaker: success" means the server answered, so it is up.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Iterable

import httpx
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


class QdrantError(Exception):
    """Base of every error the client layer raises. `reason` is the condition reason it maps to."""

    reason = "QdrantError"
    retryable = False  # worth another attempt within the same call (idempotent calls only)
    permanent = False  # no retry helps: the request itself must change
    breaker_failure = False  # counts against the target's circuit breaker

    def __init__(self, message: str, *, status_code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after  # seconds the server asked us to wait (429 Retry-After)


class Unreachable(QdrantError):
    reason = "Unreachable"
    retryable = True
    breaker_failure = True


class TLSError(QdrantError):
    reason = "TLSError"
    breaker_failure = True


class Unauthorized(QdrantError):
    reason = "Unauthorized"


class CircuitOpen(QdrantError):
    reason = "CircuitOpen"


class InvalidRequest(QdrantError):
    reason = "InvalidSpec"
    permanent = True


class NotFound(QdrantError):
    reason = "NotFound"
    permanent = True


class Conflict(QdrantError):
    reason = "ResourceConflict"
    permanent = True


class AlreadyExists(Conflict):
    reason = "AlreadyExists"


class Transient(QdrantError):
    reason = "QdrantUnavailable"
    retryable = True
    breaker_failure = True


class OutcomeUnknown(Transient):
    """A non-idempotent call (e.g. create) timed out or lost its reply: it may or may not have happened.
    Observe the target again before deciding to retry."""

    reason = "OutcomeUnknown"
    retryable = False


class PoolExhausted(Transient):
    reason = "PoolExhausted"
    breaker_failure = False  # our own limit, not the server's fault


_ALREADY_EXISTS = re.compile(r"already exists", re.IGNORECASE)


def _server_message(response: UnexpectedResponse) -> str:
    try:
        body = json.loads(response.content)
        return str(body["status"]["error"])
    except (ValueError, KeyError, TypeError):
        return response.content[:300].decode(errors="replace") or (response.reason_phrase or "")


def _is_tls(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError | ssl.CertificateError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(error) or "SSL" in type(error).__name__


def _from_status(status: int, message: str, retry_after: float | None) -> QdrantError:
    text = f"HTTP {status}: {message}"
    if status in (401, 403):
        return Unauthorized(text, status_code=status)
    if status == 404:
        return NotFound(text, status_code=status)
    if _ALREADY_EXISTS.search(message) and status in (400, 409):
        return AlreadyExists(text, status_code=status)
    if status == 409:
        return Conflict(text, status_code=status)
    if status in RETRYABLE_STATUS:
        return Transient(text, status_code=status, retry_after=retry_after)
    if status >= 500:
        error = Transient(text, status_code=status)
        error.retryable = False  # 500 is a server bug more often than a blip: do not hammer it
        return error
    return InvalidRequest(text, status_code=status)


def _retry_after(headers: httpx.Headers | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def classify(
    error: BaseException, *, idempotent: bool = True, extra_retryable: Iterable[re.Pattern[str]] = ()
) -> QdrantError:
    """The typed error for anything a call raised. `idempotent=False` turns a lost reply into OutcomeUnknown."""
    if isinstance(error, QdrantError):
        return error
    source = error.source if isinstance(error, ResponseHandlingException) else error
    result: QdrantError
    if isinstance(source, UnexpectedResponse) and source.status_code is not None:
        result = _from_status(source.status_code, _server_message(source), _retry_after(source.headers))
    elif isinstance(source, ResourceExhaustedResponse):
        result = Transient(f"HTTP 429: {source.message}", status_code=429, retry_after=float(source.retry_after_s))
    elif isinstance(source, httpx.ConnectTimeout | httpx.PoolTimeout):
        # Nothing was sent: safe to say unreachable even for a create.
        result = Unreachable(f"connect timed out: {source!r}")
    elif isinstance(source, httpx.ConnectError):
        result = TLSError(f"TLS failure: {source}") if _is_tls(source) else Unreachable(f"cannot connect: {source}")
    elif isinstance(source, ssl.SSLError):
        result = TLSError(f"TLS failure: {source}")
    elif isinstance(source, httpx.TimeoutException | TimeoutError):
        result = _lost_reply(f"timed out: {source!r}", idempotent)
    elif isinstance(source, httpx.TransportError):
        # The request may have reached the server before the connection broke.
        result = _lost_reply(f"connection broke: {source!r}", idempotent)
    else:
        result = QdrantError(f"unexpected client error: {source!r}")
    if not result.retryable and not isinstance(result, OutcomeUnknown | Unauthorized | TLSError):
        if any(pattern.search(str(source)) or pattern.search(result.message) for pattern in extra_retryable):
            result.retryable = True
    return result


def _lost_reply(message: str, idempotent: bool) -> QdrantError:
    return Transient(message) if idempotent else OutcomeUnknown(message)
