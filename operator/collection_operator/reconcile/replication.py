"""Replicas of a distributed collection. Qdrant records `replication_factor` but neither adds replicas when
it is raised on a live collection nor re-creates replicas lost with a node. This plans, from the
collection's placement (GET /collections/{name}/cluster) and the connection's topology, the one placement
change to make now: replicate a shard onto a reachable peer that holds none of it, or drop a replica
beyond the factor (those on unreachable peers first). Pure; the caller carries the action out and looks
again, so a lost reply or a crash between steps costs one more look, never a second transfer."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..qdrant import Topology

ACTIVE = "Active"
REPAIR_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class Replica:
    peer: int
    state: str


@dataclass(frozen=True)
class Shard:
    id: int
    key: str | None
    replicas: tuple[Replica, ...]

    def as_status(self) -> dict[str, Any]:
        # Peer ids are uint64: strings, so no JSON client rounds them.
        replicas = [{"peer": str(r.peer), "state": r.state} for r in self.replicas]
        return {"id": self.id, **({"key": self.key} if self.key is not None else {}), "replicas": replicas}


@dataclass(frozen=True)
class Action:
    """One placement change: `source` set -> replicate `shard` from `source` to `peer`; else drop it from `peer`."""

    shard: int
    peer: int
    source: int | None = None

    @property
    def body(self) -> dict[str, Any]:
        if self.source is not None:
            return {"replicate_shard": {"shard_id": self.shard, "from_peer_id": self.source, "to_peer_id": self.peer}}
        return {"drop_replica": {"shard_id": self.shard, "peer_id": self.peer}}

    @property
    def event(self) -> tuple[str, str]:
        if self.source is not None:
            return "ReplicaAdding", f"replicating shard {self.shard} from peer {self.source} to peer {self.peer}"
        return "ReplicaDropped", f"dropped the replica of shard {self.shard} on peer {self.peer}"


@dataclass
class ReplicaPlan:
    shards: list[Shard]
    transfers: list[str] = field(default_factory=list)  # in flight, as people read them
    action: Action | None = None
    short: list[str] = field(default_factory=list)  # shards with fewer Active replicas than the factor, and why
    unavailable: list[int] = field(default_factory=list)  # shards with no Active replica on a reachable peer


def shards_of(view: dict[str, Any]) -> list[Shard]:
    """Every shard with its replicas from one node's view of the collection's placement."""
    replicas: dict[int, list[Replica]] = {}
    keys: dict[int, str | None] = {}
    for local in view.get("local_shards") or []:
        replicas.setdefault(local["shard_id"], []).append(Replica(int(view["peer_id"]), local["state"]))
        keys[local["shard_id"]] = _key(local.get("shard_key"))
    for remote in view.get("remote_shards") or []:
        replicas.setdefault(remote["shard_id"], []).append(Replica(int(remote["peer_id"]), remote["state"]))
        keys[remote["shard_id"]] = _key(remote.get("shard_key"))
    return [
        Shard(sid, keys.get(sid), tuple(sorted(reps, key=lambda r: r.peer))) for sid, reps in sorted(replicas.items())
    ]


def _key(value: Any) -> str | None:
    return None if value is None else str(value)


def plan_replicas(view: dict[str, Any], topology: Topology, factor: int, now: float) -> ReplicaPlan:
    """A peer down for less than REPAIR_GRACE_SECONDS is waited for (a restart should not cost a full copy of
    its shards); after that its replicas are re-made elsewhere and then dropped."""
    shards = shards_of(view)
    plan = ReplicaPlan(shards)
    plan.transfers = [
        f"shard {t['shard_id']} from peer {t['from']} to peer {t['to']}" for t in view.get("shard_transfers") or []
    ]
    reachable = topology.reachable
    gone = topology.down_longer_than(REPAIR_GRACE_SECONDS, now)
    load = Counter(r.peer for shard in shards for r in shard.replicas)  # spread replicas over the peers
    for shard in shards:
        healthy = [r for r in shard.replicas if r.state == ACTIVE and r.peer in reachable]
        # Replicas Qdrant brings back itself (Dead, Partial ... on a reachable peer) or whose peer may return.
        coming = [r for r in shard.replicas if r.peer not in gone and r not in healthy]
        lost = [r for r in shard.replicas if r.peer in gone]
        if not healthy:
            plan.unavailable.append(shard.id)
        if len(healthy) < factor:
            down = [str(r.peer) for r in shard.replicas if r.peer not in reachable]
            on = f"; peer {', '.join(down)} not answering" if down else ""
            plan.short.append(f"shard {shard.id}: {len(healthy)} of {factor} replicas Active{on}")
        if len(healthy) + len(coming) < factor:
            free = sorted(reachable - {r.peer for r in shard.replicas}, key=lambda p: (load[p], p))
            if healthy and free and plan.action is None:
                plan.action = Action(shard.id, free[0], source=healthy[0].peer)
                load[free[0]] += 1
            elif healthy and not free:
                plan.short[-1] += " and no other reachable peer to place a replica on"
        elif plan.action is None and not coming and (lost or len(healthy) > factor):
            # The factor is met: a replica on a gone peer only holds the set back; else drop from the busiest peer.
            victim = lost[0] if lost else max(healthy, key=lambda r: (load[r.peer], r.peer))
            plan.action = Action(shard.id, victim.peer)
            load[victim.peer] -= 1
    if plan.transfers:
        plan.action = None  # one transfer at a time: wait for the one in flight, then look again
    return plan
