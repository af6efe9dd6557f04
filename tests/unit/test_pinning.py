"""PinnedBackend as a function: a connection goes to an address the policy checked, whatever the resolver
answers next. The inner backend is httpcore's in-memory one, recording where it was asked to connect."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import httpcore
import pytest

from collection_operator.config.address_policy import AddressPolicy, IPAddress
from collection_operator.qdrant.errors import AddressNotAllowed, Unreachable
from collection_operator.qdrant.pinning import PinnedBackend

LOOPBACK_ONLY = AddressPolicy(allowed_hosts=("127.0.0.1/32",))


class Recording(httpcore.AsyncMockBackend):
    """httpcore's in-memory backend; `refuse` lists addresses that fail to connect."""

    def __init__(self, refuse: Iterable[str] = ()) -> None:
        super().__init__([])
        self.refuse = set(refuse)
        self.connected: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, *args: object, **kwargs: object) -> httpcore.AsyncNetworkStream:
        if host in self.refuse:
            raise httpcore.ConnectError(f"refused by {host}")
        self.connected.append((host, port))
        return await super().connect_tcp(host, port)


def answers(*rounds: list[str]):  # type: ignore[no-untyped-def]
    """A resolver giving each round's addresses in turn (the last one from then on), counting lookups."""
    given = [[ipaddress.ip_address(a) for a in r] for r in rounds]
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[IPAddress]:
        asked.append(host)
        return given[min(len(asked), len(given)) - 1]

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


async def test_a_rebound_name_never_leads_to_a_connection_to_the_excluded_address() -> None:
    inner = Recording()
    resolve = answers(["127.0.0.1"], ["127.0.0.2"])
    backend = PinnedBackend(lambda: LOOPBACK_ONLY, resolve, inner)
    await backend.connect_tcp("qdrant.test", 6333)
    with pytest.raises(AddressNotAllowed, match=r"127\.0\.0\.2.*not in the operator's allowed_hosts"):
        await backend.connect_tcp("qdrant.test", 6333)
    assert inner.connected == [("127.0.0.1", 6333)]  # by address: the name is never resolved again below us
    assert resolve.asked == ["qdrant.test", "qdrant.test"]  # type: ignore[attr-defined]


async def test_one_excluded_address_among_allowed_ones_refuses_the_connection() -> None:
    inner = Recording()
    backend = PinnedBackend(lambda: AddressPolicy(), answers(["127.0.0.1", "169.254.169.254"]), inner)
    with pytest.raises(AddressNotAllowed, match="cloud metadata address"):
        await backend.connect_tcp("qdrant.test", 6333)
    assert inner.connected == []


async def test_the_next_checked_address_when_one_does_not_answer() -> None:
    inner = Recording(refuse=["127.0.0.1"])
    policy = AddressPolicy(allowed_hosts=("127.0.0.0/8",))
    backend = PinnedBackend(lambda: policy, answers(["127.0.0.1", "127.0.0.1", "127.0.0.3"]), inner)
    await backend.connect_tcp("qdrant.test", 6333)
    assert inner.connected == [("127.0.0.3", 6333)]
    with pytest.raises(httpcore.ConnectError):
        await PinnedBackend(lambda: policy, answers(["127.0.0.1"]), inner).connect_tcp("qdrant.test", 6333)


async def test_the_policy_in_force_when_the_connection_is_made() -> None:
    policy = [AddressPolicy()]
    inner = Recording()
    backend = PinnedBackend(lambda: policy[0], answers(["127.0.0.2"]), inner)
    await backend.connect_tcp("qdrant.test", 6333)
    policy[0] = LOOPBACK_ONLY  # the settings file was reloaded
    with pytest.raises(AddressNotAllowed):
        await backend.connect_tcp("qdrant.test", 6333)
    assert inner.connected == [("127.0.0.2", 6333)]


async def test_a_name_that_does_not_resolve_is_unreachable() -> None:
    async def nothing(host: str, port: int) -> list[IPAddress]:
        raise OSError(-2, "Name or service not known")

    with pytest.raises(Unreachable, match="cannot resolve"):
        await PinnedBackend(lambda: LOOPBACK_ONLY, nothing, Recording()).connect_tcp("qdrant.test", 6333)
