"""VectorCollection with changePolicy.immutable BlueGreen: collectionName is an alias of a collection the operator
versions, `<collectionName>-<hash of the settings Qdrant cannot change>`. A change Qdrant cannot make in place
builds the next version beside the one in use, fills it (points copied, or re-embedded by the application), and
switches the alias in one atomic request. The previous version is kept for the rollback window.

Every step is level-based and resumable: where a copy stands lives in status.migration, and one reconcile copies
for at most CopyPace.seconds before it writes its progress and asks to run again. Writes to the collection
during a copy are carried over by catch-up passes (see docs/blue-green.md for the contract)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ..api.collection import ImmutableChanges, MigrationStatus, PlanPhase, VectorCollectionSpec, duration_seconds
from ..qdrant.errors import QdrantError
from ..redact import foreign_text
from . import mapping, reasons
from .approval import approved, held_for_approval, plan_base, plan_status
from .collection import Difference, Ownership, estimated_vectors, observed_status, ownership, plan
from .collection_sync import sync
from .gates import Cluster, ConnectionGate
from .outcome import Failed, Outcome, ReconcileError, Stalling, State, Verdict, outcome_for
from .ports import CollectionsPort
from .target import CollectionOutcome, Target, collection_name, status, with_fields

COPY = "Copy"
REEMBED = "Reembed"
COPY_RECHECK_SECONDS = 0.2
REEMBED_RECHECK_SECONDS = 10.0
SWITCH_RECHECK_SECONDS = 0.5


@dataclass(frozen=True)
class CopyPace:
    """How a copy proceeds (operator settings migration_page_points, migration_copy_seconds): points per page, and
    how long one reconcile copies before its progress is written to status and it runs again."""

    page_points: int = 256
    seconds: float = 5.0


def physical_name(spec: VectorCollectionSpec, name: str) -> str:
    """`<name>-<hash>` of what only a new collection can change: the same settings always give the same name, so
    reverting the spec finds the previous collection again."""
    config = mapping.desired_config(mapping.apply_preset(spec), "")
    vectors = config.get("vectors") or {}
    dense = {"": vectors} if mapping.unnamed(vectors) else vectors
    fixed = {
        "vectors": {n: {k: v.get(k) for k in mapping.VECTOR_SPACE_KEYS} for n, v in dense.items()},
        "sparse": sorted(config.get("sparse_vectors") or {}),
        **{k: config.get(k) for k in ("shard_number", "sharding_method", "wal_config")},
    }
    digest = hashlib.sha256(json.dumps(fixed, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def mode_of(differences: list[Difference]) -> str:
    """Copy when the points fit the new collection as they are; Reembed when they need new vectors (a new size,
    a matrix instead of a vector, named instead of unnamed) or a shard key nobody knows."""
    for d in differences:
        leaf = d.path.rsplit(".", 1)[-1]
        if leaf in ("size", "multivector") or (d.path == "shardingMethod" and d.desired == "custom"):
            return REEMBED
        if d.path == "vectors" and (d.desired == [""]) != (d.actual == [""]):
            return REEMBED
    return COPY


def _carried_vectors(source: dict[str, Any], spec: VectorCollectionSpec) -> list[str] | None:
    """The vectors a copy carries: those both collections have (None: all, for the unnamed vector)."""
    params = (source.get("config") or {}).get("params") or {}
    live = params.get("vectors") or {}
    if mapping.unnamed(live):
        return None
    have = set(live) | set(params.get("sparse_vectors") or {})
    return sorted(have & ({v.name for v in spec.vectors} | {s.name for s in spec.sparse_vectors}))


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def sync_blue_green(
    gateway: CollectionsPort,
    spec: VectorCollectionSpec,
    target: Target,
    gate: ConnectionGate,
    owner_alive: Callable[[str], bool],
    write_slot: AbstractAsyncContextManager[Any] | None = None,
    cluster: Cluster | None = None,
    pace: CopyPace | None = None,
    adoption_allowed: bool = False,
) -> CollectionOutcome:
    """`adoption_allowed`: as for sync; a migration's target name is never adopted, whatever it says."""
    name = collection_name(spec, target.name)
    try:
        slot = write_slot or nullcontext()
        outcome = await _blue_green(
            gateway, spec, target, gate, owner_alive, slot, cluster, pace or CopyPace(), adoption_allowed
        )
    except (QdrantError, ReconcileError) as exc:
        outcome = outcome_for(exc, status())
    return with_fields(outcome, collection_name=name, connection=target.connection)


async def _blue_green(
    gateway: CollectionsPort,
    spec: VectorCollectionSpec,
    target: Target,
    gate: ConnectionGate,
    owner_alive: Callable[[str], bool],
    slot: AbstractAsyncContextManager[Any],
    cluster: Cluster | None,
    pace: CopyPace,
    adoption_allowed: bool,
) -> CollectionOutcome:
    name = collection_name(spec, target.name)
    want = physical_name(spec, name)
    if len(want) > 255:
        return Outcome(
            Verdict(
                State.STALLED, reasons.INVALID_SPEC, f"collectionName is too long for BlueGreen: {want} exceeds 255"
            ),
            status(),
        )
    aliases = await gateway.list_aliases()
    served = aliases.get(name)
    # Not an alias: a collection of that name was made before BlueGreen (a plain one, moved to the alias layout
    # on its first migration), or nothing is there yet.
    info = await gateway.get_collection(served or name)
    plain = served is None and info is not None
    served = name if plain else served
    if served is None:
        outcome = await sync(
            gateway, spec, target, gate, owner_alive, slot, cluster, physical=want, adoption_allowed=adoption_allowed
        )
        if outcome.reconciled:
            async with slot:
                await gateway.update_aliases([{"create_alias": {"collection_name": want, "alias_name": name}}])
            outcome.qdrant_writes += 1
        return with_fields(outcome, physical_collection=want)

    if info is None:
        return Outcome(
            Verdict(State.FAILED, reasons.QDRANT_UNAVAILABLE, f"alias {name} points at {served}, which is gone"),
            status(),
        )
    if changes := _immutable(spec, info, target, served):
        move = _Move(gateway, spec, target, name, served, want, plain, aliases)
        return await _migrate(move, info, changes, gate, slot, pace)
    outcome = await sync(
        gateway,
        spec,
        target,
        gate,
        owner_alive,
        slot,
        cluster,
        physical=served,
        info=info,
        adoption_allowed=adoption_allowed,
    )
    if outcome.reconciled:
        await _tidy(gateway, target, served, outcome)
    return with_fields(outcome, physical_collection=None if plain else served)


def _immutable(spec: VectorCollectionSpec, info: dict[str, Any], target: Target, collection: str) -> list[Difference]:
    """What the spec asks of `info` that only a new collection can give."""
    return plan(spec, info, target.marker, collection=collection).immutable


async def _owned(gateway: CollectionsPort, collection: str, target: Target) -> bool | None:
    """Whether `collection` bears this resource's marker; None when it does not exist."""
    info = await gateway.get_collection(collection)
    return None if info is None else ownership(info, target.marker)[0] == Ownership.OURS


async def _fits(gateway: CollectionsPort, spec: VectorCollectionSpec, target: Target, collection: str) -> bool:
    """`collection` exists, is this resource's and has every setting of the spec that Qdrant cannot change."""
    info = await gateway.get_collection(collection)
    if info is None or ownership(info, target.marker)[0] != Ownership.OURS:
        return False
    return not _immutable(spec, info, target, collection)


async def _tidy(gateway: CollectionsPort, target: Target, served: str, outcome: CollectionOutcome) -> None:
    """After a switch: delete the previous collection once the rollback window is over, and a half-built one a
    changed spec abandoned; only collections this resource created."""
    leftovers = []
    previous, until = target.status.get("previousCollection"), target.status.get("rollbackUntil")
    if previous and previous != served:
        if until and _now() >= datetime.fromisoformat(until.replace("Z", "+00:00")):
            leftovers.append((previous, "PreviousDeleted", f"the rollback window is over: deleted {previous}"))
    abandoned = (target.status.get("migration") or {}).get("target")
    if abandoned and abandoned not in (served, previous):
        message = f"the spec changed back: deleted the unfinished {abandoned}"
        leftovers.append((abandoned, "MigrationAbandoned", message))
    for collection, reason, message in leftovers:
        if await _owned(gateway, collection, target):
            await gateway.delete_collection(collection)
            outcome.qdrant_writes += 1
            outcome.event(reason, message)
    if leftovers:
        with_fields(outcome, migration=None)
    if any(reason == "PreviousDeleted" for _, reason, _ in leftovers):
        with_fields(outcome, previous_collection=None, rollback_until=None)


@dataclass
class _Move:
    """One resource's move of its name from the collection it resolves to (`served`) to another (`want`)."""

    gateway: CollectionsPort
    spec: VectorCollectionSpec
    target: Target
    name: str
    served: str
    want: str
    plain: bool  # `served` is a plain collection called `name` (made before BlueGreen)
    aliases: dict[str, str]  # every alias on the server when the reconcile began

    async def switch(self, outcome: CollectionOutcome) -> None:
        """Move the name and the declared aliases to `want` in one atomic request. A plain collection must be
        deleted first (a name is a collection or an alias, never both): the only moment the name does not
        resolve, reported."""
        name, served, want, gateway = self.name, self.served, self.want, self.gateway
        moved = [a for a in self.spec.aliases if self.aliases.get(a) == served]
        create = [{"create_alias": {"collection_name": want, "alias_name": a}} for a in [name, *moved]]
        if self.plain:
            info = await gateway.get_collection(served)
            if info is None:  # deleted meanwhile: the next reconcile builds the name anew
                raise Failed(reasons.QDRANT_UNAVAILABLE, f"{served} is gone; {name} was not switched")
            if (taken := _not_ours(info, self)) is not None:
                raise taken  # marked by another resource while the copy ran: a person must act
            if moved:
                await gateway.update_aliases([{"delete_alias": {"alias_name": a}} for a in moved])
            began = time.monotonic()
            await gateway.delete_collection(served)
            await gateway.update_aliases(create)
            gap_ms = (time.monotonic() - began) * 1000
            outcome.event("NameUnresolved", f"{name} did not resolve for {gap_ms:.0f} ms while it became an alias")
            with_fields(outcome, previous_collection=None, rollback_until=None)
        else:
            await gateway.update_aliases([{"delete_alias": {"alias_name": a}} for a in [name, *moved]] + create)
            window = timedelta(seconds=duration_seconds(self.spec.change_policy.rollback_window))
            with_fields(outcome, previous_collection=served, rollback_until=_stamp(_now() + window))
        outcome.qdrant_writes += 2 if self.plain else 1
        outcome.verdict = Verdict(State.RECONCILING, reasons.SWITCHED, f"{name} now points at {want}")
        outcome.requeue_after = SWITCH_RECHECK_SECONDS
        done = outcome.status.plan.model_copy(update={"phase": PlanPhase.APPLIED}) if outcome.status.plan else None
        with_fields(outcome, physical_collection=want, migration=None, plan=done)

    async def copy(
        self,
        m: MigrationStatus,
        vectors: list[str] | None,
        slot: AbstractAsyncContextManager[Any],
        pace: CopyPace,
    ) -> bool:
        """Copy pages for up to `pace.seconds` (at least one) and record where the copy stands in `m`. Pass 1
        upserts every point; each later pass writes only points missing or different in the target, then deletes
        those gone from the source. True when the copy is done: a later pass changed nothing, and exact counts
        agree."""
        deadline = time.monotonic() + pace.seconds
        while True:
            start = json.loads(m.resume_from) if m.resume_from else None
            async with slot:
                if m.pruning:
                    _, changed, following = await self.gateway.prune_points(
                        self.served, self.want, start, pace.page_points
                    )
                else:
                    _, changed, following = await self.gateway.copy_points(
                        self.served, self.want, start, pace.page_points, vectors=vectors, only_changed=m.passes > 1
                    )
                    m.copied_points += changed
            if m.passes > 1:
                m.pass_changes += changed
            m.resume_from = None if following is None else json.dumps(following)
            if following is None and not await self._next_pass(m):
                return True
            if time.monotonic() >= deadline:
                return False

    async def _next_pass(self, m: MigrationStatus) -> bool:
        """A (sub-)pass reached the end: start the next one and return True, or return False when the copy is
        done."""
        if m.passes == 1:
            m.passes, m.pass_changes, m.phase = 2, 0, "CatchingUp"
            return True
        if not m.pruning:
            m.pruning = True
            return True
        source, target = await self.count(m)
        if m.pass_changes == 0 and source == target:
            return False
        m.passes, m.pass_changes, m.pruning = m.passes + 1, 0, False
        return True

    async def count(self, m: MigrationStatus) -> tuple[int, int]:
        """Count the points of both collections into `m`: (in the source, in the target)."""
        m.source_points = source = await self.gateway.count_points(self.served)
        m.target_points = target = await self.gateway.count_points(self.want)
        return source, target


def _not_ours(info: dict[str, Any], move: _Move) -> Stalling | None:
    """Why the collection a migration would move the name from (and, if plain, delete) is not this resource's."""
    owned, holder = ownership(info, move.target.marker)
    if owned == Ownership.OURS:
        return None
    if owned == Ownership.OTHER and holder is not None:
        other = foreign_text(holder.rsplit("/", 1)[0])  # the marker is Qdrant's metadata: bounded
        return Stalling(
            reasons.OWNED_BY_ANOTHER_RESOURCE,
            f"{move.served} is marked as VectorCollection {other}'s, so this resource never migrates or deletes it; "
            f"{move.name} still points at it and {move.want}, if built, is kept. Decide which resource owns it: "
            f"delete or rename the other one, or revert this change (then delete {move.want})",
        )
    return Stalling(
        reasons.ALREADY_EXISTS,
        f"{move.served} was not created by this resource, so it is never migrated or deleted: adopt it first "
        "(onExisting: Adopt, with a spec it matches), then change it",
    )


async def _migrate(
    move: _Move,
    info: dict[str, Any],
    changes: list[Difference],
    gate: ConnectionGate,
    slot: AbstractAsyncContextManager[Any],
    pace: CopyPace,
) -> CollectionOutcome:
    spec, target, name, served = move.spec, move.target, move.name, move.served
    observed = observed_status(info)
    if spec.change_policy.immutable != ImmutableChanges.BLUE_GREEN:
        changed = "; ".join(f"{d.path}: {d.actual} -> {d.desired}" for d in changes)
        return Outcome(
            Verdict(
                State.STALLED,
                reasons.IMMUTABLE_FIELD_CHANGED,
                f"Qdrant cannot change these on an existing collection and changePolicy.immutable is Reject, "
                f"nothing was touched: {changed}",
            ),
            status(drift=[d.as_status() for d in changes], **observed),
        )
    if (taken := _not_ours(info, move)) is not None:
        gate.release(target.key)
        return Outcome(taken.verdict, status(**observed))
    previous = target.status.get("previousCollection")
    live = plan_base(info, target)
    if previous and previous != served and await _fits(move.gateway, spec, target, previous):
        return await _roll_back(replace(move, want=previous), observed, live)

    mode, want = mode_of(changes), move.want
    what = "; ".join(f"{d.path}: {d.actual} -> {d.desired}" for d in changes)
    fill = (
        f"copy every point of {served} into {want}, then catch up with writes made meanwhile"
        if mode == COPY
        else f"leave {want} empty for your pipeline to write re-embedded points; switch when it holds as many "
        f"points as {served}, or when approved"
    )
    actions = [
        f"create collection {want} ({what})",
        fill,
        f"switch alias {name} to {want}"
        + (f" (the collection {name} is deleted first: the name does not resolve for a moment)" if move.plain else ""),
        "" if move.plain else f"keep {served} for rollback for {spec.change_policy.rollback_window}",
    ]
    planned = plan_status(
        target,
        spec,
        live,
        [a for a in actions if a],
        migration=mode,
        cost=estimated_vectors(info),
        phase=PlanPhase.APPLYING,
    )
    before = target.status.get("migration")
    m = MigrationStatus.model_validate(before) if before else None
    abandoned = m.target if m else None
    if m is not None and (m.source, m.target) != (served, want):
        m = None  # another migration's progress: its target is abandoned below
    if m is None and (held := held_for_approval(spec, target, planned)) is not None:
        return with_fields(held, plan_base=live, **observed)

    outcome = Outcome(
        Verdict(State.RECONCILING, reasons.MIGRATING, f"building {want}"), status(plan=planned, **observed)
    )
    if abandoned and abandoned not in (want, served) and await _owned(move.gateway, abandoned, target):
        await move.gateway.delete_collection(abandoned)  # an unfinished version the spec no longer wants
        outcome.event("MigrationAbandoned", f"the spec changed again: deleted the unfinished {abandoned}")
    owned = await _owned(move.gateway, want, target)
    if owned is False:
        return Outcome(
            Verdict(
                State.STALLED,
                reasons.RESOURCE_CONFLICT,
                f"collection {want} exists in Qdrant and was not created by this resource: delete it or rename it",
            ),
            status(**observed),
        )
    if mode == COPY and not gate.admit(target.key):
        outcome.verdict = Verdict(
            State.RECONCILING, reasons.MIGRATING, f"waiting for another heavy change on this connection ({gate.holder})"
        )
        outcome.requeue_after = REEMBED_RECHECK_SECONDS
        return outcome
    if owned is None:
        new = plan(spec, None, target.marker, collection=want)
        assert new.create is not None
        async with slot:
            await move.gateway.create_collection(want, new.create)
            for field_name, schema in new.create_indexes.items():
                await move.gateway.create_payload_index(want, field_name, schema)
        outcome.qdrant_writes += 1 + len(new.create_indexes)
    if owned is None or m is None:
        approved(outcome, spec, planned)
        outcome.event("MigrationStarted", f"{what}: building {want} beside {served} ({mode})")
        m = MigrationStatus(
            source=served,
            target=want,
            mode=mode,
            phase="Copying" if mode == COPY else "AwaitingReembedding",
            started_at=_stamp(_now()),
            source_points=await move.gateway.count_points(served),
        )
    if mode == COPY:
        if await move.copy(m, _carried_vectors(info, spec), slot, pace):
            try:
                await move.switch(outcome)
            finally:
                gate.release(target.key)  # switched, or stopped: the next heavy change may go
            outcome.event("Switched", f"{name} now points at {want} ({m.target_points} points copied and verified)")
            return outcome
        copied = f"{m.copied_points} points written"
        if m.source_points is not None and m.passes == 1:
            copied += f" of {m.source_points}"
        outcome.verdict = Verdict(
            State.RECONCILING, reasons.MIGRATING, f"copying {served} -> {want}: pass {m.passes}, {copied}"
        )
        outcome.requeue_after = COPY_RECHECK_SECONDS
        return with_fields(outcome, migration=m)
    return await _await_reembedding(move, outcome, m)


async def _roll_back(move: _Move, observed: dict[str, Any], live: str) -> CollectionOutcome:
    """The spec fits the previous collection again (reverted within the window): switch back, copying nothing."""
    name, served, want = move.name, move.served, move.want
    actions = [f"switch alias {name} back from {served} to {want} (rollback, nothing is copied)"]
    planned = plan_status(move.target, move.spec, live, actions, migration="Rollback")
    if (held := held_for_approval(move.spec, move.target, planned)) is not None:
        return with_fields(held, plan_base=live, **observed)
    outcome = Outcome(Verdict(State.RECONCILING, reasons.SWITCHED, f"{name} points at {want} again"), status())
    approved(outcome, move.spec, planned)
    await move.switch(outcome)
    outcome.event("RolledBack", f"{name} switched back to {want}; {served} is kept until the rollback window ends")
    return with_fields(outcome, plan=planned, **observed)


async def _await_reembedding(move: _Move, outcome: CollectionOutcome, m: MigrationStatus) -> CollectionOutcome:
    """The application writes re-embedded points into `want`; the alias moves when it holds as many points as the
    collection in use, or earlier when a person approves the switch plan."""
    name, served, want = move.name, move.served, move.want
    source, written = await move.count(m)
    # A second plan of the same spec and live state as the migration's: its own kind, so approving the
    # migration never approves switching early.
    switch = plan_status(
        move.target,
        move.spec,
        plan_base(None, move.target),
        [f"switch alias {name} from {served} to {want} before {want} holds as many points"],
        kind=f"switch {served} -> {want}",
        migration=REEMBED,
        phase=PlanPhase.AWAITING_APPROVAL,
    )
    if written >= source or move.target.approved == switch.hash:
        why = "approved" if written < source else "re-embedded"
        await move.switch(outcome)
        points = f"{written} of {source} points"
        outcome.event("Switched", f"{name} now points at {want} ({why}: {points})")
        return outcome
    outcome.verdict = Verdict(
        State.RECONCILING,
        reasons.AWAITING_REEMBEDDING,
        f"write the re-embedded points into the collection {want} ({written} of {source} so "
        f"far); {name} keeps pointing at {served} until {want} holds as many, or switch now with kubectl annotate "
        f"vectorcollection {move.target.name} qdrant.collection-operator.dev/approve-plan={switch.hash} --overwrite",
    )
    outcome.requeue_after = REEMBED_RECHECK_SECONDS
    return with_fields(outcome, migration=m, plan=switch)


def physical_collections(status: dict[str, Any] | Any, name: str) -> list[str]:
    """Every collection a resource may hold in Qdrant, for deletionPolicy Delete: the one in use, the previous
    one, a half-built one, and `name` itself (a plain collection; with BlueGreen an alias, which is skipped by
    the caller's lookup only if no collection bears that name)."""
    found = [status.get("physicalCollection"), status.get("previousCollection")]
    found.append((status.get("migration") or {}).get("target"))
    return list(dict.fromkeys(c for c in [*found, name] if c))
