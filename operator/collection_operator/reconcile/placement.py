"""Where a synced collection's shards live: its shard keys exist, and on a distributed Qdrant every shard has
the declared number of Active replicas. Carries out, one change per pass, what replication.py plans."""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from typing import Any

from . import reasons, replication
from .gates import Cluster
from .outcome import State, Verdict
from .ports import CollectionsPort
from .target import CollectionOutcome, Target, with_fields

REPLICATION_RECHECK_SECONDS = 2.0  # a transfer in flight, or replicas short of the factor


async def placement(
    gateway: CollectionsPort,
    shard_keys: list[str],
    target: Target,
    name: str,
    write_slot: AbstractAsyncContextManager[Any],
    cluster: Cluster | None,
    outcome: CollectionOutcome,
) -> CollectionOutcome:
    """After the collection itself is in sync: its shard keys exist, and on a distributed Qdrant every shard
    has the declared number of Active replicas (one placement change per pass, then look again)."""
    view = await gateway.cluster_view(name)
    live_keys = {shard.key for shard in replication.shards_of(view)}
    missing_keys = [key for key in shard_keys if key not in live_keys]
    if missing_keys:
        async with write_slot:
            for key in missing_keys:
                await gateway.create_shard_key(name, key)
                outcome.qdrant_writes += 1
        outcome.event("ShardKeysCreated", f"created shard keys {', '.join(missing_keys)} in {name}")
    if cluster is None:
        return outcome
    if missing_keys:
        view = await gateway.cluster_view(name)  # the new keys' shards, placed by Qdrant
    factor = outcome.status.replication_factor or 1
    rp = replication.plan_replicas(view, cluster.topology, factor, time.time())
    with_fields(outcome, shards=[shard.as_status() for shard in rp.shards])
    if rp.unavailable:
        cluster.gate.release(target.key)
        ids = ", ".join(map(str, rp.unavailable))
        outcome.verdict = Verdict(
            State.FAILED,
            reasons.SHARD_UNAVAILABLE,
            f"no Active replica on a reachable peer for shard {ids}: " + "; ".join(rp.short),
        )
        outcome.requeue_after = REPLICATION_RECHECK_SECONDS
        outcome.reconciled = False
        return outcome
    if rp.transfers:
        return _replicating(outcome, f"shard transfer in flight: {'; '.join(rp.transfers)}")
    if rp.action is not None:
        if not cluster.gate.admit(target.key):
            return _replicating(outcome, f"waiting for another collection's shard transfer ({cluster.gate.holder})")
        async with write_slot:
            await gateway.change_placement(name, rp.action.body)
        outcome.qdrant_writes += 1
        outcome.event(*rp.action.event)
        return _replicating(outcome, rp.action.event[1])
    cluster.gate.release(target.key)
    if rp.short:
        outcome.verdict = Verdict(State.READY, reasons.DEGRADED, "; ".join(rp.short))
        outcome.requeue_after = REPLICATION_RECHECK_SECONDS
    return outcome


def _replicating(outcome: CollectionOutcome, why: str) -> CollectionOutcome:
    outcome.verdict = Verdict(State.RECONCILING, reasons.REPLICATING, why)
    outcome.requeue_after = REPLICATION_RECHECK_SECONDS
    outcome.reconciled = False
    return outcome
