"""What one connection's collections share while they reconcile: the one-heavy-change-at-a-time gate, and a
distributed Qdrant's topology with its own gate for shard transfers. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from ..qdrant import Topology


@dataclass
class ConnectionGate:
    """One heavy change in flight per connection (a re-index, a shard transfer): the holder keeps it until its
    collection is done; others wait (requeue) instead of piling rebuilds or copies onto one Qdrant."""

    holder: str | None = None

    def admit(self, key: str) -> bool:
        if self.holder in (None, key):
            self.holder = key
            return True
        return False

    def release(self, key: str) -> None:
        if self.holder == key:
            self.holder = None


@dataclass(frozen=True)
class Cluster:
    """A distributed Qdrant as one sync sees it: the connection's topology and its one-transfer-at-a-time gate."""

    topology: Topology
    gate: ConnectionGate
