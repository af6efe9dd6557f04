"""QdrantEndpoints (several endpoints per connection) against real servers: three dev servers of this module's
own, and the session's real 3-node cluster. One endpoint is stopped in the middle of a stream of searches,
writes and collection changes: the caller sees no failed call, the report shows the endpoint down and back.
Waits are polls with deadlines; nothing asserts on durations."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from qdrant_client import models

from collection_operator.api.connection import BreakerState, Health, QdrantConnectionSpec
from collection_operator.config import ClientSettings, resolve
from collection_operator.qdrant import QdrantEndpoints, QdrantError, Search, VectorOperations
from devenv import qdrant_real
from tests.fixtures.nodes import ensure_running, restart
from tests.fixtures.qdrant import QdrantServer

pytestmark = pytest.mark.integration
DIM = 4


def settings(urls: list[str], **spec: Any) -> ClientSettings:
    fields: dict[str, Any] = {
        "endpoints": urls,
        "environment": "Testing",
        # A call cut by the stopping node may be retried (idempotent ones), on another node first.
        "retry": {"maxAttempts": 3, "initialDelaySeconds": 0.2, "maxDelaySeconds": 1},
        "timeouts": {"requestSeconds": 10},
        "healthCheck": {"intervalSeconds": 0.5, "timeoutSeconds": 2, "failureThreshold": 2, "successThreshold": 2},
        "circuitBreaker": {"failureThreshold": 3, "openSeconds": 2},
        **spec,
    }
    return resolve(QdrantConnectionSpec.model_validate(fields))


async def eventually(check: Callable[[], bool], what: str, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {deadline_s}s: {what}")


def point(i: int) -> models.PointStruct:
    return models.PointStruct(id=i, vector=[1.0, float(i % 7), 0.5, float(i % 3)], payload={"i": i})


class Stream:
    """Searches, upserts and collection PATCHes in a loop on several tasks; counts calls and failures."""

    def __init__(self, client: QdrantEndpoints, collection: str, workers: int = 4) -> None:
        self.client = client
        self.vectors = VectorOperations(client, collection)
        self.collection = collection
        self.workers = workers
        self.calls = 0
        self.failures: list[str] = []
        self.written: set[int] = set()  # ids upserted by the stream (each acknowledged)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._waiting: list[tuple[int, asyncio.Event]] = []

    async def _one(self, n: int) -> None:
        kind = n % 10
        if kind < 7:
            await self.vectors.search(Search(vector=[1.0, 0.0, 0.5, 1.0], limit=5))
        elif kind < 9:
            await self.vectors.upsert_many([point(1000 + n)], batch_size=1)
            self.written.add(1000 + n)
        else:
            await self.client.update_collection(self.collection, {"metadata": {"touched": n}}, timeout_seconds=10)

    async def _worker(self, worker: int) -> None:
        n = worker
        while not self._stop.is_set():
            try:
                await self._one(n)
            except QdrantError as error:
                self.failures.append(f"{('search', 'upsert', 'patch')[min(n % 10 // 7 + n % 10 // 9, 2)]} {error!r}")
            self.calls += 1
            for target, reached in self._waiting:
                if self.calls >= target:
                    reached.set()
            n += self.workers
            await asyncio.sleep(0.005)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self.workers)]

    async def run_until(self, calls: int) -> None:
        reached = asyncio.Event()
        self._waiting.append((self.calls + calls, reached))
        await reached.wait()
        self._waiting = [w for w in self._waiting if w[1] is not reached]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


@contextlib.asynccontextmanager
async def started(client: QdrantEndpoints) -> AsyncIterator[QdrantEndpoints]:
    client.start()
    try:
        yield client
    finally:
        await client.aclose()


async def in_thread(fn: Callable[[], object]) -> None:
    await asyncio.to_thread(fn)


# ----- dev servers -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dev_servers(qdrant_server_factory: Callable[..., QdrantServer]) -> list[QdrantServer]:
    """Three dev servers of this module's own (tests here stop and start them). Not a cluster: each holds
    its own copy of what the test creates on all of them."""
    return [qdrant_server_factory() for _ in range(3)]


@pytest.fixture
def same_collection(dev_servers: list[QdrantServer]) -> str:
    name = f"ep-{uuid.uuid4().hex[:6]}"
    for server in dev_servers:
        if not server.running:
            server.start()
        client = server.client(timeout=30)
        try:
            client.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
            client.upsert(name, [point(i) for i in range(200)], wait=True)
        finally:
            client.close()
    return name


async def test_dev_servers_spread_and_survive_a_stopped_endpoint(
    dev_servers: list[QdrantServer], same_collection: str
) -> None:
    urls = [s.url for s in dev_servers]
    async with started(QdrantEndpoints(urls, settings(urls), name="ep/dev")) as client:
        await eventually(lambda: client.report.health is Health.HEALTHY, "Healthy")
        for server in dev_servers:
            server.reset_requests()
        stream = Stream(client, same_collection)
        stream.start()
        await stream.run_until(300)
        queries = [s.count("POST", "/collections/{collection_name}/points/query") for s in dev_servers]
        assert all(q > 0.15 * sum(queries) for q in queries), queries  # every endpoint takes its share

        await in_thread(dev_servers[1].stop)
        await eventually(
            lambda: (
                client.report.endpoints[1].health is Health.UNHEALTHY and not client.report.endpoints[1].in_rotation
            ),
            "the stopped endpoint reported down and out of rotation",
        )
        report = client.report
        assert report.health is Health.DEGRADED and report.circuit_breaker is BreakerState.CLOSED
        assert report.endpoints[1].error_reason == "Unreachable"
        assert [e.health for e in report.endpoints[::2]] == [Health.HEALTHY, Health.HEALTHY]
        await stream.run_until(300)
        # A create is not idempotent: it reaches exactly one server, never the stopped one.
        created = f"ep-new-{uuid.uuid4().hex[:6]}"
        for server in dev_servers[::2]:
            server.reset_requests()
        for _ in range(3):
            body = {"vectors": {"size": DIM, "distance": "Dot"}}
            await client.create_collection(f"{created}-{_}", body)
        creates = sum(s.count("PUT", "/collections/{collection_name}") for s in dev_servers[::2])
        assert creates == 3

        await in_thread(dev_servers[1].start)
        await eventually(
            lambda: client.report.health is Health.HEALTHY and client.report.endpoints[1].in_rotation,
            "the restarted endpoint back in rotation and the connection Healthy",
        )
        dev_servers[1].reset_requests()
        await stream.run_until(200)
        await stream.stop()
        assert dev_servers[1].count("POST", "/collections/{collection_name}/points/query") > 0
        assert stream.failures == [], stream.failures[:5]


async def test_dev_servers_round_robin_setting_applies_in_place(
    dev_servers: list[QdrantServer], same_collection: str
) -> None:
    urls = [s.url for s in dev_servers]
    async with started(QdrantEndpoints(urls, settings(urls), name="ep/rr")) as client:
        await client.update_settings(settings(urls, loadBalancing="RoundRobin"))
        for server in dev_servers:
            server.reset_requests()
        vectors = VectorOperations(client, same_collection)
        for _ in range(30):  # one at a time: least outstanding would tie-break the same way, so check the counts
            await vectors.count()
        assert [s.count("POST", "/collections/{collection_name}/points/count") for s in dev_servers] == [10, 10, 10]


# ----- the real 3-node cluster -------------------------------------------------------------------------------


async def test_cluster_node_stopped_during_searches_and_writes(qdrant_cluster: list[qdrant_real.Node]) -> None:
    nodes = qdrant_cluster
    await in_thread(lambda: ensure_running(nodes))
    urls = [n.url for n in nodes]
    name = f"ep-cluster-{uuid.uuid4().hex[:6]}"
    async with started(QdrantEndpoints(urls, settings(urls), name="ep/cluster")) as client:
        await eventually(lambda: client.report.health is Health.HEALTHY, "Healthy")
        assert client.report.distributed is True and client.report.peers == 3
        body = {
            "vectors": {"size": DIM, "distance": "Dot"},
            "shard_number": 3,
            "replication_factor": 3,  # every node holds every shard: the cluster serves with one node down
        }
        await client.create_collection(name, body, timeout_seconds=60)
        await VectorOperations(client, name).upsert_many([point(i) for i in range(500)], batch_size=100)

        stream = Stream(client, name)
        stream.start()
        victim = nodes[1]
        try:
            await stream.run_until(200)
            await in_thread(victim.stop)
            await eventually(
                lambda: (
                    client.report.endpoints[1].health is Health.UNHEALTHY and client.report.health is Health.DEGRADED
                ),
                "the stopped node reported down, the connection Degraded",
            )
            assert client.report.topology is not None and len(client.report.topology.unreachable) == 1
            await stream.run_until(300)
        finally:
            await in_thread(lambda: restart(victim))  # same storage and ports: it rejoins as the same peer
        await eventually(
            lambda: client.report.health is Health.HEALTHY and client.report.endpoints[1].in_rotation,
            "the restarted node back in rotation, the connection Healthy",
            deadline_s=120,
        )
        await stream.run_until(200)
        await stream.stop()
        assert stream.failures == [], stream.failures[:5]
        assert await VectorOperations(client, name).count() == 500 + len(stream.written)
        await client.delete_collection(name)
