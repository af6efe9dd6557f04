"""Which Qdrant URLs the operator may call: a pure policy on the URL and the addresses its host resolves to.

A QdrantConnection's URL is written by whoever may create one in any namespace; without a policy the
operator would call whatever it names (the cloud metadata service, the kube-apiserver) with its own
network position. The policy, checked by the client layer before every request and health probe:

- a URL with credentials in it (`user:password@`) is refused: the API key belongs in `apiKeySecretRef`;
- link-local addresses (169.254.0.0/16, fe80::/10), the cloud metadata addresses (169.254.169.254,
  fd00:ec2::254, 100.100.100.200, ...) and metadata host names (metadata.google.internal, ...) are
  refused unless `allow_link_local` is set; the unspecified addresses (0.0.0.0, ::) always are;
- when `allowed_hosts` is not empty, the URL must match one entry: a host name (`qdrant.db.svc`), a
  suffix (`.db.svc.cluster.local` matches every host under it) or a CIDR (`10.0.0.0/8`) that contains
  **every** address the host resolves to.

Addresses are normalised before any check: IPv4-mapped (`::ffff:169.254.169.254`), IPv4-compatible,
NAT64 (`64:ff9b::/96`) and 6to4 IPv6 forms are checked as the IPv4 address they carry, and IPv4 host
literals in the forms the C resolver accepts (`2852039166`, `0251.0376.0251.0376`, `0xa9fea9fe`,
`169.254.43518`) are decoded as the resolver would, so no spelling of an address slips past.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata and host-agent endpoints of the common clouds (the link-local ones are covered twice).
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle ...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS DNS
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS DNS over IPv6
    )
)
METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
LINK_LOCAL: tuple[IPNetwork, ...] = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class AddressPolicy(BaseModel):
    """The operator's address policy (settings keys `allowed_hosts`, `allow_link_local`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed_hosts: tuple[str, ...] = Field(
        (), description="Host names, .suffixes or CIDRs a Qdrant URL may name; empty: any (but see below)."
    )
    allow_link_local: bool = Field(False, description="Allow link-local and cloud metadata addresses.")

    @field_validator("allowed_hosts")
    @classmethod
    def _entries_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        entries = []
        for raw in value:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                raise ValueError(f"empty allowed_hosts entry {raw!r}")
            if "/" in entry:
                ipaddress.ip_network(entry, strict=False)  # ValueError names the bad entry
            entries.append(entry)
        return tuple(entries)

    def networks(self) -> list[IPNetwork]:
        return [ipaddress.ip_network(e, strict=False) for e in self.allowed_hosts if "/" in e]

    def names(self) -> list[str]:
        return [e for e in self.allowed_hosts if "/" not in e and parse_ip(e) is None]

    def literal_addresses(self) -> list[IPAddress]:
        return [a for e in self.allowed_hosts if "/" not in e and (a := parse_ip(e)) is not None]


class Refusal(ValueError):
    """The URL is not allowed; the message says why, in words fit for a status condition."""


def normalise(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        address = ipaddress.IPv6Address(int(address))  # drop a zone id (fe80::1%eth0)
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def parse_ip(host: str) -> IPAddress | None:
    """`host` as an IP address if it is one in any spelling the resolver accepts, else None. No I/O."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text and all(c in "0123456789abcdefxABCDEFX." for c in text) and text[0].isdigit():
        try:  # inet_aton: decimal, octal and hex parts, 1 to 4 of them; the C resolver accepts the same
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def host_of(url: str, credentials_go: str = "reference the API key with apiKeySecretRef") -> tuple[str, int]:
    """The host (lower case, no trailing dot, IPv6 without brackets) and port of a Qdrant (or S3) URL;
    `credentials_go` says where credentials belong instead of the URL."""
    try:
        parts: SplitResult = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise Refusal(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise Refusal("only http:// and https:// URLs are allowed")
    if "@" in parts.netloc:
        raise Refusal(f"credentials in the URL are not allowed: {credentials_go}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise Refusal("the URL has no host")
    return host, port or (443 if parts.scheme == "https" else 80)


def _refused_address(address: IPAddress, policy: AddressPolicy) -> str | None:
    if address.is_unspecified:
        return f"{address} is the unspecified address"
    if not policy.allow_link_local:
        if address in METADATA_ADDRESSES:
            return f"{address} is a cloud metadata address"
        if any(address in net for net in LINK_LOCAL):
            return f"{address} is link-local"
    return None


def check(host: str, addresses: Iterable[IPAddress], policy: AddressPolicy) -> None:
    """Raise Refusal unless `policy` allows calling `host`, which resolved to `addresses`. Pure."""
    name = host.lower().rstrip(".")
    resolved = [normalise(a) for a in addresses]
    literal = parse_ip(name)
    if literal is not None:
        resolved.append(normalise(literal))
    if not resolved:
        raise Refusal(f"host {host} resolved to no address")
    if not policy.allow_link_local and name in METADATA_HOSTS:
        raise Refusal(f"host {host} is a cloud metadata service")
    for address in resolved:
        if (why := _refused_address(address, policy)) is not None:
            raise Refusal(f"host {host}: {why}; set the operator setting allow_link_local to permit it")
    if not policy.allowed_hosts:
        return
    if literal is None and any(name == n or (n.startswith(".") and name.endswith(n)) for n in policy.names()):
        return
    networks = policy.networks()
    allowed_literals = {normalise(a) for a in policy.literal_addresses()}
    outside = [a for a in resolved if a not in allowed_literals and not any(a in net for net in networks)]
    if outside:
        raise Refusal(
            f"host {host} ({', '.join(sorted({str(a) for a in outside}))}) is not in the operator's allowed_hosts"
        )


def check_url(url: str, addresses: Iterable[IPAddress], policy: AddressPolicy) -> None:
    """check() on the host of `url`; also refuses URLs with credentials or another scheme. Pure."""
    host, _port = host_of(url)
    check(host, addresses, policy)
