"""What the client layer reports, as plain values: a probe's result and a target's health, the topology of a
distributed Qdrant, and the report a QdrantConnection's status is made from (one endpoint or several)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable

from ..api.connection import BreakerState, Health
from .errors import QdrantError

# The first Qdrant that adds and removes named vectors of an existing collection (PUT/DELETE .../vectors/{name}).
IN_PLACE_VECTORS_SINCE = (1, 18, 0)


def version_at_least(version: str | None, minimum: tuple[int, int, int]) -> bool:
    """Whether a server version ("1.19.0", "v1.18.1-rc.1") is at least `minimum`; an unknown one is not."""
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    return match is not None and tuple(int(part or 0) for part in match.groups()) >= minimum


@dataclasses.dataclass(frozen=True)
class Topology:
    """A distributed Qdrant's peers as the probed node sees them (peer ids are Qdrant's uint64s)."""

    peers: tuple[int, ...]
    down_since: tuple[tuple[int, float], ...] = ()  # (peer, epoch seconds) of peers not answering, since when
    leader: int | None = None
    pending_operations: int = 0  # consensus operations not yet applied on the probed node

    @property
    def unreachable(self) -> tuple[int, ...]:
        return tuple(peer for peer, _ in self.down_since)

    @property
    def reachable(self) -> frozenset[int]:
        return frozenset(self.peers) - frozenset(self.unreachable)

    def down_longer_than(self, seconds: float, now: float) -> frozenset[int]:
        return frozenset(peer for peer, since in self.down_since if now - since >= seconds)


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    server_version: str
    distributed: bool
    peers: int
    trouble: str | None = None  # the server answered but says something is wrong
    topology: Topology | None = None  # distributed only
    read_only: bool = False  # the API key may read but not write (Qdrant's read_only_api_key, or a JWT)
    jwt_rbac: bool | None = None  # the server takes tokens signed with the API key (None: not known yet)


@dataclasses.dataclass(frozen=True)
class HealthReport:
    health: Health = Health.UNKNOWN
    server_version: str | None = None
    distributed: bool | None = None
    peers: int | None = None
    error: QdrantError | None = dataclasses.field(default=None, compare=False)
    error_reason: str | None = None  # compared instead of the error object, so a repeated failure is no change
    trouble: str | None = None  # what the server said is wrong when it answered (Degraded)
    topology: Topology | None = None
    read_only: bool = False
    jwt_rbac: bool | None = None


@dataclasses.dataclass(frozen=True)
class EndpointReport:
    """One endpoint of a QdrantEndpoints, as its own gateway last saw it."""

    url: str
    health: Health
    server_version: str | None
    circuit_breaker: BreakerState
    in_rotation: bool  # calls are sent to it (False: taken out until its probes pass and its breaker closes)
    error_reason: str | None
    error_message: str | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class ConnectionReport:
    """What a QdrantConnection's status shows, as of the last probe and breaker transition."""

    health: Health
    server_version: str | None
    distributed: bool | None
    peers: int | None
    circuit_breaker: BreakerState
    error_reason: str | None  # reason of the last probe's failure (Unreachable, Unauthorized, TLSError ...)
    error_message: str | None = dataclasses.field(default=None, compare=False)
    topology: Topology | None = None  # distributed Qdrant: peers, which answer, leader, pending operations
    read_only: bool = False  # the API key may read but not write
    jwt_rbac: bool | None = None  # Qdrant's JWT RBAC is on for the API key (None: no answer yet)
    endpoints: tuple[EndpointReport, ...] = ()  # several endpoints (QdrantEndpoints): each one's own view

    @property
    def in_place_vectors(self) -> bool:
        """Whether named vectors can be added to and removed from existing collections: every endpoint's server
        is Qdrant 1.18 or newer (one not yet probed, or too old, makes it False: a mixed-version cluster
        would apply the change on some nodes only)."""
        versions = [endpoint.server_version for endpoint in self.endpoints] or [self.server_version]
        return all(version_at_least(version, IN_PLACE_VECTORS_SINCE) for version in versions)


OnReport = Callable[[ConnectionReport], Awaitable[None] | None]
