"""Connections go to the address the address policy checked, never to whatever the name resolves to later.

Checking a URL's host and then letting the HTTP client connect by name leaves a DNS-rebinding window: the
name may resolve to an allowed address for the check and to the metadata service for the connection. So
every new connection resolves its host once here, checks every address against the policy in force
(config.address_policy.check), and connects to a checked address. TLS still verifies the name: httpcore
hands the URL's host, not the address, to start_tls as the SNI and the name the certificate must carry,
and the Host header comes from the URL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

import httpcore

from ..config.address_policy import AddressPolicy, IPAddress, Refusal, check
from .errors import AddressNotAllowed, Unreachable

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The addresses the system resolver gives `host` (an IPv6 zone id kept for connecting)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0])) for info in infos]


def not_allowed(refusal: Refusal) -> AddressNotAllowed:
    return AddressNotAllowed(f"URL refused by the operator's address policy: {refusal}")


async def checked_addresses(host: str, port: int, policy: AddressPolicy, resolve: Resolver) -> list[IPAddress]:
    """`host` resolved once, every address checked: the addresses that may be connected to, in the resolver's
    order. AddressNotAllowed when the policy refuses one, Unreachable when the name does not resolve."""
    try:
        addresses = await resolve(host, port)
        check(host, addresses, policy)
    except Refusal as refusal:
        raise not_allowed(refusal) from None
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise Unreachable(f"cannot resolve the URL's host: {exc}") from None
    return list(dict.fromkeys(addresses))


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting each new connection to an address `checked_addresses` returned
    under the policy in force now (`policy()`: a hot-reloaded settings file applies to the next connection)."""

    def __init__(
        self,
        policy: Callable[[], AddressPolicy],
        resolve: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolve = resolve
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: Exception | None = None
        for address in await checked_addresses(host, port, self._policy(), self._resolve):
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:  # the next checked address, if any
                failure = exc
        assert failure is not None  # checked_addresses returns at least one address or raises
        raise failure

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
