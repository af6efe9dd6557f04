"""The pool's leases, lifetime and validation, on fake HTTP connections and a fake clock: no network, no sleeps."""

from __future__ import annotations

import asyncio

import pytest

from collection_operator.config import PoolSettings
from collection_operator.qdrant import ConnectionPool, PoolExhausted


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeConnection:
    def __init__(self, idle: bool = True, expired: bool = False) -> None:
        self.idle, self.expired, self.closed = idle, expired, False

    def is_idle(self) -> bool:
        return self.idle

    def is_closed(self) -> bool:
        return self.closed

    def has_expired(self) -> bool:
        return self.expired

    async def aclose(self) -> None:
        self.closed = True


class FakeHttp:
    """Stands in for httpcore's pool: a list of connections; `open(n)` adds n, as n concurrent requests would."""

    def __init__(self) -> None:
        self.connections: list[FakeConnection] = []
        self.opened: list[int] = []

    def list(self) -> list[FakeConnection]:
        return self.connections

    async def open(self, count: int) -> None:
        self.opened.append(count)
        self.connections.extend(FakeConnection() for _ in range(count))


def make_pool(**settings: float) -> tuple[ConnectionPool, FakeHttp, FakeClock]:
    http, clock = FakeHttp(), FakeClock()
    values = {"min_connections": 0, "max_connections": 2, "acquire_timeout_seconds": 0.0, **settings}
    pool = ConnectionPool("test", PoolSettings.model_validate(values), http.list, http.open, clock=clock)
    return pool, http, clock


async def test_exhausted_pool_fails_with_a_clear_error() -> None:
    pool, _, _ = make_pool(max_connections=2, acquire_timeout_seconds=0)
    async with pool.lease(), pool.lease():
        assert pool.in_use == 2
        with pytest.raises(PoolExhausted, match=r"exhausted: 2/2 in use.*maxConnections"):
            async with pool.lease():
                pass
    assert pool.in_use == 0 and pool.waiting == 0


async def test_waiters_queue_and_get_a_released_lease() -> None:
    pool, _, _ = make_pool(max_connections=1, acquire_timeout_seconds=60)
    order: list[str] = []

    async def use(tag: str) -> None:
        async with pool.lease():
            order.append(tag)

    async with pool.lease():
        waiters = [asyncio.create_task(use(tag)) for tag in ("a", "b")]
        for _ in range(5):  # let the tasks reach the queue (yields, not sleeps)
            await asyncio.sleep(0)
        assert pool.waiting == 2 and order == []
    await asyncio.gather(*waiters)
    assert order == ["a", "b"] and pool.in_use == 0 and pool.waiting == 0


async def test_a_larger_maximum_admits_waiters() -> None:
    pool, _, _ = make_pool(max_connections=1, acquire_timeout_seconds=60)
    async with pool.lease():
        waiter = asyncio.create_task(pool.lease().__aenter__())
        for _ in range(3):
            await asyncio.sleep(0)
        assert pool.waiting == 1
        await pool.reconfigure(PoolSettings(min_connections=0, max_connections=2))
        await waiter
        assert pool.in_use == 2


async def test_idle_connection_past_max_lifetime_is_closed_before_hand_out() -> None:
    pool, http, clock = make_pool(max_lifetime_seconds=100)
    old, busy = FakeConnection(), FakeConnection(idle=False)
    http.connections = [old, busy]
    await pool.validate()  # first seen now
    clock.now += 100
    async with pool.lease():
        assert old.closed, "an idle connection past its lifetime must not be handed out"
        assert not busy.closed, "a busy connection is left to finish its request"
    busy.idle = True
    await pool.validate()  # after return it is idle and too old
    assert busy.closed


async def test_the_sweep_drops_expired_or_server_closed_idle_connections() -> None:
    pool, http, _ = make_pool()
    stale, fresh = FakeConnection(expired=True), FakeConnection()
    http.connections = [stale, fresh]
    assert await pool.validate() == 0, "the hot path leaves expiry to httpcore's own check"
    assert await pool.validate(sweep=True) == 1
    assert stale.closed and not fresh.closed
    assert pool.size == 1


async def test_maintenance_keeps_the_warm_minimum() -> None:
    pool, http, _ = make_pool(min_connections=2, max_connections=4)
    await pool.maintain()
    assert http.opened == [2] and pool.size == 2
    http.connections[0].expired = True
    await pool.maintain()  # drops the expired one, opens one to get back to the minimum
    assert http.opened == [2, 1] and pool.size == 2
    assert pool.in_use == 0


async def test_warming_uses_only_free_leases() -> None:
    pool, http, _ = make_pool(min_connections=2, max_connections=2)
    async with pool.lease(), pool.lease():
        await pool.maintain()
    assert http.opened == []


async def test_a_failed_warm_up_releases_its_leases() -> None:
    pool, _, _ = make_pool(min_connections=1, max_connections=1)

    async def refuse(count: int) -> None:
        raise ConnectionRefusedError

    pool.attach(list, refuse)
    await pool.maintain()
    assert pool.in_use == 0
