"""The contract suite: the dev Qdrant server and a real Qdrant (tests/fixtures/qdrant.py tiers) driven through
qdrant-client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models as m


def dev_gap(reason: str) -> pytest.MarkDecorator:
    """What the dev server cannot reproduce: a strict expected failure on the dev tier; it must pass on the
    real one (tests/fixtures/qdrant.py turns the mark into the xfail)."""
    return pytest.mark.dev_gap(reason)


def pytest_configure(config: pytest.Config) -> None:
    # tests/conftest.py registers the plugin for the whole tree; this keeps the suite runnable on its own.
    if not config.pluginmanager.has_plugin("tests.fixtures.qdrant"):
        config.pluginmanager.import_plugin("tests.fixtures.qdrant")


@pytest.fixture(scope="session")
def client(qdrant_server) -> Iterator[QdrantClient]:  # type: ignore[no-untyped-def]
    c = qdrant_server.client()
    yield c
    c.close()


@pytest.fixture
def name(client: QdrantClient) -> Iterator[str]:
    """A fresh collection name, deleted (with its aliases) after the test."""
    value = f"contract-{uuid.uuid4().hex[:10]}"
    yield value
    client.delete_collection(value)


def wait_until(predicate, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def wait_green(client: QdrantClient, name: str, timeout: float = 30.0) -> m.CollectionInfo:
    return wait_until(
        lambda: (info := client.get_collection(name)).status == m.CollectionStatus.GREEN and info,
        timeout,
        f"collection {name} to be green",
    )
