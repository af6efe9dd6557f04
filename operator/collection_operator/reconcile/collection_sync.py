"""One level-based reconcile of a VectorCollection against Qdrant: observe, plan, apply, report.

No Kubernetes here: the caller passes the resource's identity and current status and gets back an
Outcome (verdict, status fields, events, when to look again), which the handler writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

from ..api.collection import DriftPolicy, OnExisting, PlanPhase, VectorCollectionSpec, VectorCollectionStatus
from ..qdrant.errors import AlreadyExists, OutcomeUnknown, QdrantError
from ..redact import foreign_text
from . import reasons
from .approval import approved, held_for_approval, plan_base, plan_status
from .collection import (
    REINDEXING_BLOCKS,
    Difference,
    Ownership,
    Plan,
    estimated_vectors,
    live_digest,
    observed_status,
    ownership,
    plan,
    plan_actions,
)
from .gates import Cluster, ConnectionGate
from .outcome import Outcome, State, Verdict, outcome_for
from .placement import placement
from .ports import CollectionsPort
from .target import CollectionOutcome, Target, collection_name, status, with_fields

log = logging.getLogger(__name__)

OPTIMIZING_RECHECK_SECONDS = 2.0


async def sync(
    gateway: CollectionsPort,
    spec: VectorCollectionSpec,
    target: Target,
    gate: ConnectionGate,
    owner_alive: Callable[[str], bool],
    write_slot: AbstractAsyncContextManager[Any] | None = None,
    cluster: Cluster | None = None,
    physical: str | None = None,
    in_place_vectors: bool = False,
    info: dict[str, Any] | None = None,
    adoption_allowed: bool = False,
) -> CollectionOutcome:
    """`write_slot` bounds the connection's create/update/delete calls in flight (reads are not bounded);
    `cluster` is given for a distributed Qdrant, whose replicas are then kept at the factor; `physical` is the
    collection to work on when collectionName is an alias of it (blue/green); `in_place_vectors`: the server adds
    and removes named vectors (Qdrant 1.18+, see plan); `info`: the collection as the caller just read it;
    `adoption_allowed`: the connection lets this namespace adopt a collection another namespace made or nobody
    marked (QdrantConnectionSpec.adopts_from); one a deleted resource of this namespace made may be adopted always."""
    name = collection_name(spec, target.name)
    physical = physical or name
    slot = write_slot or nullcontext()
    try:
        try:
            # A resource whose collection was never seen most likely has none yet: create before looking,
            # and observe only when Qdrant answers that one exists (it never overwrites), saving a read.
            observe = target.seen_in_qdrant or physical != name
            outcome = await _sync(
                gateway,
                spec,
                target,
                gate,
                owner_alive,
                physical,
                slot,
                observe,
                in_place_vectors,
                info,
                adoption_allowed,
            )
        except AlreadyExists:
            outcome = await _sync(
                gateway, spec, target, gate, owner_alive, physical, slot, True, in_place_vectors, None, adoption_allowed
            )
            outcome.create_conflicts += 1
        if outcome.reconciled and (cluster is not None or spec.shard_keys):
            outcome = await placement(gateway, spec.shard_keys, target, physical, slot, cluster, outcome)
    except QdrantError as exc:
        outcome = outcome_for(exc, status())
    return with_fields(outcome, collection_name=name, connection=target.connection)


async def _sync(
    gateway: CollectionsPort,
    spec: VectorCollectionSpec,
    target: Target,
    gate: ConnectionGate,
    owner_alive: Callable[[str], bool],
    name: str,
    write_slot: AbstractAsyncContextManager[Any],
    observe: bool,
    in_place_vectors: bool = False,
    known: dict[str, Any] | None = None,
    adoption_allowed: bool = False,
) -> CollectionOutcome:
    managed_indexes = list(target.status.get("payloadIndexes") or [])
    managed_aliases = list(target.status.get("aliases") or [])
    managed_metadata = list(target.status.get("metadataKeys") or [])
    managed_vectors = list(target.status.get("vectorNames") or [])
    info = known if known is not None else await gateway.get_collection(name) if observe else None
    # Aliases are read only when this resource has any to create or remove; collection names only when an
    # alias is still to be created (it must not be a collection's name).
    aliases = await gateway.list_aliases() if spec.aliases or managed_aliases else {}
    names = await gateway.list_collections() if any(a not in aliases for a in spec.aliases) else []

    if info is None and target.ever_reconciled and spec.drift_policy == DriftPolicy.REPORT:
        missing = Difference("collection", name, None).as_status()
        return Outcome(
            Verdict(
                State.STALLED,
                reasons.COLLECTION_MISSING,
                f"collection {name} was deleted in Qdrant; driftPolicy "
                "Report leaves it so: set Enforce to re-create it (empty)",
            ),
            status(drift=[missing]),
        )

    outcome = Outcome(Verdict(State.READY, reasons.IN_SYNC), status())
    adopt = False
    if info is not None:
        owned, holder = ownership(info, target.marker)
        if owned == Ownership.OTHER and holder is not None and owner_alive(holder):
            return Outcome(
                Verdict(
                    State.STALLED,
                    reasons.RESOURCE_CONFLICT,
                    # The marker is Qdrant's metadata: bounded, one printable line.
                    f"collection {name} is managed by VectorCollection {foreign_text(holder.rsplit('/', 1)[0])}",
                ),
                status(),
            )
        if owned != Ownership.OURS:
            if spec.on_existing != OnExisting.ADOPT:
                return Outcome(
                    Verdict(
                        State.STALLED,
                        reasons.ALREADY_EXISTS,
                        f"collection {name} exists in Qdrant and was not created by this resource; "
                        "set onExisting: Adopt to manage it",
                    ),
                    status(),
                )
            if not adoption_allowed and (holder is None or holder.split("/", 1)[0] != target.namespace):
                return _adoption_refused(name, holder, target)
            adopt = True

    p = plan(
        spec,
        info,
        target.marker,
        live_aliases=aliases,
        managed_indexes=managed_indexes,
        managed_aliases=managed_aliases,
        collection=name,
        adopt=adopt,
        collections=names,
        managed_metadata=managed_metadata,
        in_place_vectors=in_place_vectors,
        managed_vectors=managed_vectors,
    )
    if p.alias_conflicts:
        held = ", ".join(
            f"{a} ({'a collection' if a in names or a == name else 'alias of ' + aliases[a]})"
            for a in p.alias_conflicts
        )
        conflict = Outcome(
            Verdict(
                State.STALLED,
                reasons.ALIAS_CONFLICT,
                f"aliases taken in Qdrant, nothing was written: {held}; rename them or free them in Qdrant",
            ),
            status(),
        )
        return with_fields(conflict, **observed_status(info)) if info is not None else conflict
    if p.immutable:
        changes = "; ".join(f"{d.path}: {d.actual} -> {d.desired}" for d in p.immutable)
        return Outcome(
            Verdict(
                State.STALLED,
                reasons.IMMUTABLE_FIELD_CHANGED,
                f"Qdrant cannot change these on an existing collection, nothing was touched: {changes}",
            ),
            status(drift=[d.as_status() for d in p.immutable]),
        )
    actions = plan_actions(p, name)
    planned, heavy = None, False
    if actions:
        reindex = p.reindexes and info is not None
        # Only the named vectors PATCHed are re-indexed when nothing collection-wide changes.
        touched = len(p.update["vectors"]) if p.update.keys() & REINDEXING_BLOCKS == {"vectors"} else None
        cost = estimated_vectors(info, touched) if reindex else None
        live = plan_base(info, target)
        planned = plan_status(target, spec, live, actions, reindex=reindex, cost=cost)
        heavy = reindex or bool(p.delete_vectors)  # a removed vector's data is gone
        if heavy and (waiting := held_for_approval(spec, target, planned)) is not None:
            with_fields(waiting, plan_base=live)
            return with_fields(waiting, **observed_status(info)) if info is not None else waiting
    if p.reindexes and info is not None:
        if info.get("status") != "green":
            return _optimizing(outcome, info, "waiting for Qdrant to finish optimizing before re-indexing")
        if not gate.admit(target.key):
            return _optimizing(outcome, info, f"another re-index on this connection is in flight ({gate.holder})")

    if planned is not None and heavy:
        approved(outcome, spec, planned)
    if p.writes:
        async with write_slot:
            if p.create is not None:
                info = await _create(gateway, name, p, target)
                outcome.qdrant_writes += 1
            outcome.qdrant_writes += await _apply(gateway, name, p)
    if p.create is not None:
        if target.ever_reconciled:
            outcome.event("Recreated", f"collection {name} was missing in Qdrant and was re-created (empty)", True)
            outcome.drift_corrected += 1
        else:
            outcome.event("Created", f"created collection {name}")
    if p.create_vectors or p.delete_vectors:
        outcome.event("VectorsChanged", _vector_changes(name, p), warning=bool(p.delete_vectors))
    if p.update and info is not None:
        spec_changed = target.status.get("appliedGeneration") != target.generation
        if spec_changed or adopt:
            outcome.event("Adopted" if adopt else "Updated", f"updated {', '.join(sorted(p.update))} of {name}")
        else:
            outcome.drift_corrected += len(p.drift)
            drifted = ", ".join(d.path for d in p.drift)
            outcome.event("DriftCorrected", f"corrected changes made in Qdrant: {drifted}", True)
    if outcome.qdrant_writes:
        info = await gateway.get_collection(name)
    if info is None:
        return Outcome(
            Verdict(State.FAILED, reasons.QDRANT_UNAVAILABLE, f"collection {name} vanished while reconciling"), status()
        )

    outcome.status = _status(info, spec, p, aliases, name)
    if p.kept_vectors:
        kept = ", ".join(p.kept_vectors)
        outcome.verdict = Verdict(
            State.READY,
            reasons.IN_SYNC,
            f"vectors in Qdrant this resource never declared are left with their data: {kept}",
        )
    if planned is not None:
        with_fields(outcome, plan=planned)
    elif (target.status.get("plan") or {}).get("phase") == PlanPhase.AWAITING_APPROVAL:
        with_fields(outcome, plan=None)  # the plan that waited is no longer needed (e.g. the spec was reverted)
    if spec.drift_policy == DriftPolicy.REPORT and p.drift:
        outcome.verdict = Verdict(
            State.READY,
            reasons.DRIFT_DETECTED,
            "driftPolicy Report: differences are listed in status.drift and left alone",
        )
    if info.get("status") != "green":
        return _optimizing(outcome, info, f"Qdrant reports the collection {info.get('status')}")
    gate.release(target.key)
    outcome.reconciled = True
    # What the next plan meets while nothing moves: this configuration, with this generation applied.
    return with_fields(outcome, applied_generation=target.generation, plan_base=live_digest(info, target.generation))


def _adoption_refused(name: str, holder: str | None, target: Target) -> CollectionOutcome:
    """A collection no resource of this namespace made, met by a namespace the connection does not let adopt:
    nothing is written, so a later delete of this resource finds it unmarked by it and keeps it."""
    made = "bears no owner marker" if holder is None else f"was created by VectorCollection {holder.rsplit('/', 1)[0]}"
    return Outcome(
        Verdict(
            State.STALLED,
            reasons.ADOPTION_NOT_ALLOWED,
            f"collection {name} exists in Qdrant and {made}; QdrantConnection {target.connection} does not let "
            f"namespace {target.namespace} adopt it: its owner may add {target.namespace} to spec.adoption.namespaces, "
            "or choose another collectionName. Nothing was written",
        ),
        status(),
    )


def _optimizing(outcome: CollectionOutcome, info: dict[str, Any], why: str) -> CollectionOutcome:
    if info.get("status") == "red":
        outcome.verdict = Verdict(
            State.FAILED, reasons.QDRANT_UNAVAILABLE, "Qdrant reports the collection red (optimizer failed)"
        )
    else:
        outcome.verdict = Verdict(State.RECONCILING, reasons.OPTIMIZING, why)
    with_fields(outcome, **observed_status(info))
    outcome.requeue_after = OPTIMIZING_RECHECK_SECONDS
    return outcome


async def _create(gateway: CollectionsPort, name: str, p: Plan, target: Target) -> dict[str, Any] | None:
    assert p.create is not None
    try:
        await gateway.create_collection(name, p.create)
    except OutcomeUnknown:
        # The reply was lost: look again; if the collection bears our marker, this create made it.
        # (AlreadyExists propagates: the caller observes the existing collection and plans afresh.)
        info = await gateway.get_collection(name)
        if info is None or ownership(info, target.marker)[0] != Ownership.OURS:
            raise
        return info
    return None


async def _apply(gateway: CollectionsPort, name: str, p: Plan) -> int:
    """New vectors first (the PATCH may tune them), removed vectors last (nothing is destroyed before the
    rest of the plan went through)."""
    writes = 0
    for vector, config in p.create_vectors.items():
        await gateway.create_vector(name, vector, config)
        writes += 1
    if p.update:
        await gateway.update_collection(name, p.update)
        writes += 1
    for field_name in p.delete_indexes:
        await gateway.delete_payload_index(name, field_name)
        writes += 1
    for field_name, schema in p.create_indexes.items():
        await gateway.create_payload_index(name, field_name, schema)
        writes += 1
    if p.alias_actions:
        await gateway.update_aliases(p.alias_actions)
        writes += 1
    for vector in p.delete_vectors:
        log.warning("collection %s: removing vector %s, which the spec no longer has, and its data", name, vector)
        await gateway.delete_vector(name, vector)
        writes += 1
    return writes


def _vector_changes(name: str, p: Plan) -> str:
    """The VectorsChanged Event: "added vector x to docs; removed vector y (its data is gone)"."""

    def listed(names: list[str]) -> str:
        return f"vector{'s' if len(names) > 1 else ''} {', '.join(names)}"

    changes = [f"added {listed(list(p.create_vectors))} to {name}"] if p.create_vectors else []
    if p.delete_vectors:
        gone = "its data is" if len(p.delete_vectors) == 1 else "their data is"
        changes.append(f"removed {listed(p.delete_vectors)} from {name} ({gone} gone)")
    return "; ".join(changes)


def _status(
    info: dict[str, Any], spec: VectorCollectionSpec, p: Plan, aliases_before: dict[str, str], name: str
) -> VectorCollectionStatus:
    aliases = dict(aliases_before)
    for action in p.alias_actions:
        if "create_alias" in action:
            aliases[action["create_alias"]["alias_name"]] = name
        else:
            aliases.pop(action["delete_alias"]["alias_name"], None)
    live_indexes = info.get("payload_schema") or {}
    live_metadata = (info.get("config") or {}).get("metadata") or {}
    params = (info.get("config") or {}).get("params") or {}
    live_dense, live_sparse = params.get("vectors") or {}, params.get("sparse_vectors") or {}
    return status(
        **observed_status(info),
        aliases=sorted(a for a in spec.aliases if aliases.get(a) == name),
        payload_indexes=sorted(i.field for i in spec.payload_indexes if i.field in live_indexes),
        metadata_keys=sorted(key for key in spec.metadata if key in live_metadata),
        vector_names=sorted(
            n
            for n in [*(v.name for v in spec.vectors), *(v.name for v in spec.sparse_vectors)]
            if n and (n in live_dense or n in live_sparse)
        ),
        drift=[d.as_status() for d in p.drift] if spec.drift_policy == DriftPolicy.REPORT else [],
    )
