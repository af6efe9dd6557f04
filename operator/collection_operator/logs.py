"""One correlation id per reconcile, in every log line it causes (text and JSON formats alike)."""

from __future__ import annotations

import logging
import uuid
from contextvars import ContextVar

CORRELATION_ID: ContextVar[str] = ContextVar("correlation_id", default="-")
TEXT_FORMAT = "[%(asctime)s] %(name)-20.20s [%(levelname)-8.8s] [%(correlation_id)s] %(message)s"


class _CorrelationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = CORRELATION_ID.get()  # JSON formatters emit it as a field
        return True


def new_correlation_id() -> str:
    value = uuid.uuid4().hex[:12]
    CORRELATION_ID.set(value)
    return value


def install(json: bool) -> None:
    """Add the correlation id to the handlers kopf.configure() installed."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_CorrelationFilter())
        if not json and handler.formatter is not None:
            # kopf's own formatter class keeps its "[namespace/name]" prefix of object logs.
            handler.setFormatter(type(handler.formatter)(TEXT_FORMAT))
