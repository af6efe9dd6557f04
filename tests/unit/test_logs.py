"""Expected requeues (kopf.TemporaryError) are logged at INFO, not ERROR."""

from __future__ import annotations

import inspect
import logging

import kopf
from kopf._core.actions import execution

from collection_operator import logs


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_kopf_still_logs_temporary_errors_with_the_phrase_we_match():
    source = inspect.getsource(execution)
    assert 'logger.error(f"{handler} failed temporarily: {str(e) or repr(e)}")' in source
    assert logs.REQUEUE_MARK in "Handler 'x' failed temporarily: ConnectionNotReady: ..."


def test_requeues_are_downgraded_to_info_other_errors_stay():
    logs.downgrade_requeues()
    logs.downgrade_requeues()  # idempotent
    objects = logging.getLogger("kopf.objects")
    assert sum(isinstance(f, logs._RequeueLevelFilter) for f in objects.filters) == 1
    capture = Records()
    objects.addHandler(capture)
    try:
        body = kopf.Body({"apiVersion": "v1", "kind": "X", "metadata": {"namespace": "ns", "name": "n"}})
        logger = kopf.ObjectLogger(body=body, settings=kopf.OperatorSettings())
        error = kopf.TemporaryError("ConnectionNotReady: connection ns/main is not Ready; looking again in 10s")
        logger.error(f"Handler 'reconcile' failed temporarily: {error}")
        logger.error("Handler 'reconcile' failed temporarily but will exceed 3 retries: boom")
        logger.error("Handler 'reconcile' failed with an exception. Will retry.")
    finally:
        objects.removeHandler(capture)
    assert [(r.levelname, r.levelno) for r in capture.records] == [
        ("INFO", logging.INFO),
        ("ERROR", logging.ERROR),
        ("ERROR", logging.ERROR),
    ]
