"""VectorCollection: every decision of one reconcile, in order: pause and unmanaged annotations, spec
validity, the connection (allowed, ready), restore, then the sync with Qdrant. Also the deletion
that honours deletionPolicy."""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.base import PREFIX
from ..api.collection import ImmutableChanges, VectorCollectionSpec, VectorCollectionStatus
from ..api.connection import QdrantConnectionSpec
from . import reasons
from .bluegreen import CopyPace, physical_collections, sync_blue_green
from .collection import Ownership, ownership
from .collection_sync import sync
from .connections import usable
from .gates import Cluster, ConnectionGate
from .outcome import Outcome, ReconcileError, Stalling, State, Verdict, outcome_for, parse
from .ports import ConnectionsPort, SecretsPort
from .restore import RestoreTracker, restore_step
from .snapshot import Offsite
from .target import CollectionOutcome, Target, collection_name, status, with_fields

PAUSED = f"{PREFIX}paused"
MANAGED = f"{PREFIX}managed"
CONNECTION_SETTLE_SECONDS = 15.0  # how long a reconcile waits for its connection's first health probe
MAX_NAME_LENGTH = 255  # of a collection or alias name (the schema's limit on collectionName)


@dataclass
class Environment:
    """What a VectorCollection step reaches beyond its own resource."""

    connections: ConnectionsPort
    secrets: SecretsPort
    gates: dict[str, ConnectionGate]  # per connection key
    restores: RestoreTracker
    owner_alive: Callable[[str], bool]  # is the VectorCollection of this uid still there?
    snapshots: Callable[[str], Mapping[str, Any] | None]  # CollectionSnapshot body by "namespace/name"
    offsite: Offsite  # object storage, for restores from it
    pace: CopyPace = field(default_factory=CopyPace)  # of BlueGreen copies


def _kept(current: Mapping[str, Any]) -> VectorCollectionStatus:
    """The status as it is (paused, unmanaged): everything but what the verdict rewrites."""
    return VectorCollectionStatus.model_validate(
        {k: v for k, v in current.items() if k not in ("conditions", "observedGeneration")}
    )


async def step(target: Target, env: Environment) -> CollectionOutcome:
    if target.annotations.get(PAUSED) == "true":
        return Outcome(
            Verdict(State.PAUSED, reasons.PAUSED, f"{PAUSED} is true: nothing is reconciled"), _kept(target.status)
        )
    if target.annotations.get(MANAGED) == "false":
        return Outcome(
            Verdict(State.UNMANAGED, reasons.UNMANAGED, f"{MANAGED} is false: Qdrant is never touched again"),
            _kept(target.status),
        )
    try:
        spec = parse(VectorCollectionSpec, target.spec)
    except ReconcileError as exc:
        return outcome_for(exc, status())
    name, key = collection_name(spec, target.name), target.connection
    await env.connections.settled(key, CONNECTION_SETTLE_SECONDS)
    try:
        runtime = usable(env.connections, key, target.namespace)
        spec = in_qdrant(spec, runtime.spec, target)
    except ReconcileError as exc:
        # The name applied last stays shown until the connection says what it is now.
        return with_fields(
            outcome_for(exc, status()), collection_name=target.status.get("collectionName") or name, connection=key
        )
    name = collection_name(spec, target.name)
    applied = target.status.get("collectionName")
    if target.ever_reconciled and applied and applied != name:
        message = (
            f"this resource's collection is {applied} in Qdrant, but QdrantConnection {key} now names it {name} "
            "(spec.collectionNames was changed, e.g. the connection re-created with another prefix); nothing was "
            f"written, {applied} is kept: restore the connection's collectionNames, or create a new VectorCollection"
        )
        return with_fields(
            Outcome(Verdict(State.STALLED, reasons.COLLECTION_NAME_CHANGED, message), status()),
            collection_name=applied,
            connection=key,
        )
    adoption_allowed = runtime.spec.adopts_from(runtime.namespace, target.namespace)
    restoring, restored = await restore_step(
        target, spec, name, runtime, env.restores, env.connections, env.secrets, env.snapshots, env.offsite
    )
    if restoring is not None:
        return with_fields(restoring, collection_name=name, connection=key)
    topology = runtime.topology
    # Placement changes have a gate of their own ("namespace/name/placement" cannot be a connection's key).
    cluster = Cluster(topology, env.gates.setdefault(f"{key}/placement", ConnectionGate())) if topology else None
    # Once the name is an alias it stays one, whatever the policy says now.
    blue_green = spec.change_policy.immutable == ImmutableChanges.BLUE_GREEN or bool(
        target.status.get("physicalCollection")
    )
    gate = env.gates.setdefault(key, ConnectionGate())
    if blue_green:
        outcome = await sync_blue_green(
            runtime.collections,
            spec,
            target,
            gate,
            env.owner_alive,
            runtime.operations,
            cluster,
            env.pace,
            adoption_allowed,
        )
    else:
        # BlueGreen keeps migrating for a changed set of vectors: a copy with a rollback window, not a delete in place.
        outcome = await sync(
            runtime.collections,
            spec,
            target,
            gate,
            env.owner_alive,
            write_slot=runtime.operations,
            cluster=cluster,
            in_place_vectors=runtime.in_place_vectors,
            adoption_allowed=adoption_allowed,
        )
    if restored is not None:
        outcome.event("Restored", f"collection {name} recovered from {restored}")
        with_fields(outcome, restored_from=restored)
    return outcome


def in_qdrant(spec: VectorCollectionSpec, connection: QdrantConnectionSpec, target: Target) -> VectorCollectionSpec:
    """The spec with collectionName and aliases as Qdrant knows them (the connection's spec.collectionNames)."""
    name = connection.physical_name(target.namespace, collection_name(spec, target.name))
    aliases = [connection.physical_name(target.namespace, alias) for alias in spec.aliases]
    if too_long := [n for n in (name, *aliases) if len(n) > MAX_NAME_LENGTH]:
        raise Stalling(
            reasons.INVALID_SPEC,
            f"{too_long[0]} (the namespace prefix of QdrantConnection {target.connection} included) exceeds "
            f"{MAX_NAME_LENGTH} characters: choose a shorter collectionName or alias",
        )
    return spec.model_copy(update={"collection_name": name, "aliases": aliases})


def gone_from_qdrant(
    annotations: Mapping[str, str], status: Mapping[str, Any], collections: Container[str], aliases: Mapping[str, str]
) -> bool:
    """From one list of a connection's collections and one of its aliases: the collection this resource applied
    is gone, or one of its aliases is gone or points elsewhere. Paused, unmanaged and never applied resources
    are their handlers' business."""
    if annotations.get(PAUSED) == "true" or annotations.get(MANAGED) == "false":
        return False
    name = status.get("collectionName")
    if status.get("appliedGeneration") is None or not name:
        return False
    physical = status.get("physicalCollection")  # BlueGreen: the name is an alias of it
    held, pointing = physical or name, [*([name] if physical else []), *(status.get("aliases") or ())]
    return held not in collections or any(aliases.get(alias) != held for alias in pointing)


def deletes_collection(spec: Mapping[str, Any], annotations: Mapping[str, str], status: Mapping[str, Any]) -> bool:
    """Only a Delete-policy, managed resource that was applied to Qdrant once may delete anything."""
    return (
        spec.get("deletionPolicy") == "Delete"
        and annotations.get(MANAGED) != "false"
        and status.get("appliedGeneration") is not None
    )


async def delete(target: Target, connections: ConnectionsPort) -> tuple[str, str, str]:
    """deletionPolicy Delete: remove the Qdrant collection if this resource owns it. Returns the Event
    (type, reason, message); raises ReconcileError or QdrantError when it must be tried again."""
    runtime = usable(connections, target.connection)
    spec = in_qdrant(VectorCollectionSpec.model_validate(dict(target.spec)), runtime.spec, target)
    name = collection_name(spec, target.name)
    deleted, kept = [], []
    # BlueGreen: the name is an alias (Qdrant's GET would answer for the collection behind it, its DELETE
    # would do nothing); the collections behind it, in use, previous and half-built, go.
    resolved = (await runtime.collections.list_aliases()).get(name, name)
    for collection in physical_collections(target.status, resolved):
        info = await runtime.collections.get_collection(collection)
        if info is None:
            continue
        if ownership(info, target.marker)[0] != Ownership.OURS:
            kept.append(collection)
            continue
        async with runtime.operations:
            await runtime.collections.delete_collection(collection)
        deleted.append(collection)
    if kept:
        return "Warning", "NotDeleted", f"collection {', '.join(kept)} is not owned by this resource; kept"
    if not deleted:
        return "Normal", "Deleted", f"collection {name} was already gone"
    return "Normal", "Deleted", f"deleted collection {', '.join(deleted)} (deletionPolicy Delete)"
