"""Typed errors of the client layer, one per kind of failure, and the classifier that maps what httpx
raises (and qdrant-client, for applications' calls) onto them. An error's `reason` names the failure: a
QdrantConnection's condition reason when its health probe fails so, and the cause quoted in a resource's
message. Which verdict a failed reconcile gets (InvalidSpec, ConnectionNotReady, QdrantUnavailable) is the
one error policy's choice, reconcile/outcome.py.

| error            | reason             | from                                        | retried* | breaker |
|------------------|--------------------|---------------------------------------------|----------|---------|
| Unreachable      | Unreachable        | connection refused, DNS, connect timeout    | yes      | failure |
| TLSError         | TLSError           | certificate or handshake failure            | no       | failure |
| Unauthorized     | Unauthorized       | 401, 403                                    | no       | success |
| CircuitOpen      | CircuitOpen        | the breaker refused the call                | no       | -       |
| InvalidRequest   | InvalidRequest     | 400, 422 (and other 4xx)                    | no       | success |
| NotFound         | NotFound           | 404                                         | no       | success |
| Conflict         | ResourceConflict   | 409                                         | no       | success |
| AlreadyExists    | AlreadyExists      | 400/409 "... already exists"                | no       | success |
| Transient        | QdrantUnavailable  | 429, 5xx, read/write timeouts, broken reply | not 500  | failure |
| OutcomeUnknown   | OutcomeUnknown     | a non-idempotent call timed out or broke    | no       | failure |
| PoolExhausted    | PoolExhausted      | no pool lease within the acquire timeout    | yes      | -       |
| AddressNotAllowed| AddressNotAllowed  | the operator's address policy refused the URL (nothing sent) | no | - |

*only idempotent calls are retried at all. "breaker: success" means the server answered, so it is up.

What of a server's answer a message may carry (it reaches status conditions, Events and logs):
- the status code and its standard phrase (redact.http_phrase), never the reason phrase the server sent;
- Qdrant's own error text (a JSON body of Qdrant's error shape `{"status": {"error": "..."}}`), useful to
  the person who configured that server, through redact.foreign_text: one line, printable, bounded. A URL
  the address policy refused is never sent a request, so no such server has an answer to quote;
- of a broken reply or a protocol error, only its type: their text quotes the peer's bytes.
Whatever else a peer answers (another body, an HTML page, a metadata service) is never quoted.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Iterable

import httpx

from ..redact import foreign_text, http_phrase

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


class QdrantError(Exception):
    """Base of every error the client layer raises. `reason` names the failure (see the module docstring)."""

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
    reason = "InvalidRequest"
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


class AddressNotAllowed(QdrantError):
    """The operator's address policy (config.address_policy) refused the URL; nothing was sent."""

    reason = "AddressNotAllowed"
    permanent = True


_ALREADY_EXISTS = re.compile(r"already exists", re.IGNORECASE)


def qdrant_error_text(content: bytes) -> str | None:
    """Qdrant's error text from a response body of Qdrant's error shape, made fit for a status message;
    None for any other body."""
    try:
        body = json.loads(content)
    except ValueError:
        return None
    status = body.get("status") if isinstance(body, dict) else None
    error = status.get("error") if isinstance(status, dict) else None
    return foreign_text(error) if isinstance(error, str) else None


def _server_message(status: int, content: bytes) -> str:
    text = qdrant_error_text(content)
    if text is not None:
        return text
    # Not Qdrant's error shape: the body may be anything (a metadata service, an HTML page), so never show it.
    return f"{http_phrase(status)} (not a Qdrant error response)"


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
    source = _qdrant_client_source(error)
    result: QdrantError
    if isinstance(source, httpx.HTTPStatusError):
        reply = source.response
        result = _from_status(
            reply.status_code, _server_message(reply.status_code, reply.content), _retry_after(reply.headers)
        )
    elif (from_client := _from_qdrant_client(source)) is not None:
        result = from_client
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
        # The request may have reached the server before the connection broke. A protocol error's text
        # quotes the peer's bytes (h11: "illegal status line: b'...'"), so only its type is said.
        result = _lost_reply(f"connection broke ({type(source).__name__})", idempotent)
    else:
        # Its text may quote the peer's reply (e.g. a validation error on a body that is not Qdrant's).
        result = QdrantError(f"unexpected reply or client error ({type(source).__name__}); is the URL a Qdrant?")
    if not result.retryable and not isinstance(result, OutcomeUnknown | Unauthorized | TLSError):
        if any(pattern.search(str(source)) or pattern.search(result.message) for pattern in extra_retryable):
            result.retryable = True
    return result


def _qdrant_client_source(error: BaseException) -> BaseException:
    """What qdrant-client wrapped (a reply it could not parse), else the error itself. qdrant-client is looked
    at only for its own errors, so an operator that never loads it never imports it here."""
    if type(error).__module__.startswith("qdrant_client"):
        from qdrant_client.http.exceptions import ResponseHandlingException

        if isinstance(error, ResponseHandlingException):
            return error.source
    return error


def _from_qdrant_client(source: BaseException) -> QdrantError | None:
    if not type(source).__module__.startswith("qdrant_client"):
        return None
    from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
    from qdrant_client.http.exceptions import UnexpectedResponse

    if isinstance(source, UnexpectedResponse) and source.status_code is not None:
        status = source.status_code
        return _from_status(status, _server_message(status, source.content), _retry_after(source.headers))
    if isinstance(source, ResourceExhaustedResponse):
        said = source.message  # Qdrant's error text, as qdrant-client took it from the body
        text = foreign_text(said) if isinstance(said, str) and said else http_phrase(429)
        return Transient(f"HTTP 429: {text}", status_code=429, retry_after=float(source.retry_after_s))
    return None


def _lost_reply(message: str, idempotent: bool) -> QdrantError:
    return Transient(message) if idempotent else OutcomeUnknown(message)
