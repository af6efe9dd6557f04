"""One correlation id per reconcile, in every log line it causes (text and JSON formats alike), and no
secret material in any log line at any verbosity.

Client libraries log request and response bodies at DEBUG (kubernetes_asyncio logs every response body,
Secrets included, as base64): their loggers are pinned to WARNING whatever `--verbose` says. Every record
that reaches a handler is then scrubbed (`SecretValues.scrub`): credentials in URLs, credential-like query
parameters and headers, and the values of Secrets the operator read, in clear or base64.
"""

from __future__ import annotations

import logging
import uuid
from contextvars import ContextVar

from . import redact

CORRELATION_ID: ContextVar[str] = ContextVar("correlation_id", default="-")
TEXT_FORMAT = "[%(asctime)s] %(name)-20.20s [%(levelname)-8.8s] [%(correlation_id)s] %(message)s"
# Loggers of libraries that log HTTP bodies or headers at DEBUG/INFO: never below WARNING.
REQUEUE_MARK = " failed temporarily: "  # kopf's wording for a TemporaryError (kopf/_core/actions/execution.py)
QUIET_LOGGERS = (
    "kubernetes_asyncio",
    "kubernetes",
    "client",
    "urllib3",
    "aiohttp",
    "httpx",
    "httpcore",
    "h11",
    "h2",
    "hpack",
    "qdrant_client",
)


class _CorrelationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = CORRELATION_ID.get()  # JSON formatters emit it as a field
        return True


class _RedactingFilter(logging.Filter):
    """Formats the message once and scrubs it (and any traceback text) of secret material."""

    def __init__(self, secrets: redact.SecretValues) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: keep what logging itself would show
            message = str(record.msg)
        record.msg, record.args = self.secrets.scrub(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.secrets.scrub(record.exc_text)
        return True


class _RequeueLevelFilter(logging.Filter):
    """kopf logs every `kopf.TemporaryError` ("Handler ... failed temporarily: ...") at ERROR. Ours are expected
    requeues (ConnectionNotReady, Optimizing, a delete retry within its budget), so they go out at INFO:
    below `settings.posting.level` (WARNING), which also spares an Event every 10 s. kopf's "failed
    temporarily but will time out / exceed N retries" stay at ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and REQUEUE_MARK in str(record.msg):
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


def downgrade_requeues() -> None:
    """On kopf's object logger itself, so its Event poster and every handler see the lower level."""
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _RequeueLevelFilter) for f in objects.filters):
        objects.addFilter(_RequeueLevelFilter())


def quiet_libraries() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def new_correlation_id() -> str:
    value = uuid.uuid4().hex[:12]
    CORRELATION_ID.set(value)
    return value


def install(json: bool, secrets: redact.SecretValues) -> None:
    """Add the correlation id and the scrubbing of `secrets` to the handlers kopf.configure() installed."""
    quiet_libraries()
    downgrade_requeues()
    for handler in logging.getLogger().handlers:
        handler.addFilter(_CorrelationFilter())
        handler.addFilter(_RedactingFilter(secrets))
        if not json and handler.formatter is not None:
            # kopf's own formatter class keeps its "[namespace/name]" prefix of object logs.
            handler.setFormatter(type(handler.formatter)(TEXT_FORMAT))
