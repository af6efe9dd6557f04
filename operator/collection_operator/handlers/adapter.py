"""What every handler does with a reconcile's Outcome: write the status (only what changed), post its
Events and the Event of a Ready transition, and ask kopf to look again. Also the VectorCollection
reconcile, shared by its own handlers and by its connection's drift sweep, and the delete retry budget."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import kopf

from .. import logs, metrics
from ..api import GROUP
from ..api.base import StatusModel
from ..api.kinds import KINDS, VECTOR_COLLECTION
from ..k8s.status import write_status
from ..reconcile import collection_step
from ..reconcile.bluegreen import CopyPace
from ..reconcile.outcome import Outcome, State, after_failed_delete
from ..reconcile.status import HANDS_OFF, desired_wire
from ..reconcile.target import CollectionOutcome, Target
from .context import Context

log = logging.getLogger(__name__)
COLLECTIONS = VECTOR_COLLECTION.plural
KIND_OF = {k.plural: k.kind for k in KINDS}
Bodies = kopf.Index[str, dict[str, Any]]  # an index of `indexed` bodies by "namespace/name"
# The default of an index parameter. kopf passes every index by its name to every handler; a default only
# makes a handler's signature fit kopf's handler types, whose other arguments all go through **kwargs.
INDEX: Any = None
KOPF_PREFIX = f"kopf.{GROUP}"  # kopf's own progress and diff-base annotations (set up in handlers/operator.py)
KOPF_ANNOTATIONS = f"{KOPF_PREFIX}/"
# A transition into these states is news a person should see as a Warning; Paused/Unmanaged (HANDS_OFF) were
# asked for and get a Normal Event.
WARN_STATES = (State.FAILED, State.STALLED)


async def write(ctx: Context, plural: str, body: Mapping[str, Any], outcome: Outcome[Any]) -> bool:
    """Write the outcome's status if it differs from what the resource has; post an Event when Ready's
    reason changes into a failure. Returns whether anything was written."""
    meta = body["metadata"]
    current = ctx.statuses.current(plural, body)
    status: StatusModel = outcome.status
    verdict = replace(outcome.verdict, message=ctx.secrets.scrub(outcome.verdict.message))
    aspects = [replace(a, message=ctx.secrets.scrub(a.message)) for a in outcome.aspects]
    desired = desired_wire(
        status, verdict, current, meta.get("generation"), reconciled=outcome.reconciled, aspects=aspects
    )
    ready: dict[str, Any] = next((c for c in desired["conditions"] if c.get("type") == "Ready"), {})
    resource = f"{meta['namespace']}/{meta['name']}"  # not a `namespace` label: a scrape's own (the Pod's) takes it
    metrics.RESOURCE_READY.labels(KIND_OF[plural], resource).set(1 if ready.get("status") == "True" else 0)
    patch = await write_status(ctx.kube, plural, meta["namespace"], meta["name"], current, desired)
    if not patch:
        return False
    ctx.statuses.remember(plural, meta["uid"], {**current, **patch})
    conditions = {c.get("type"): c for c in current.get("conditions") or []}
    ready = conditions.get("Ready") or {}
    if verdict.state in HANDS_OFF:
        if (conditions.get(verdict.state.value) or {}).get("status") != "True":
            ctx.post_event(body, "Normal", verdict.reason, verdict.message)
    elif ready.get("reason") != verdict.reason or ready.get("status") != ("True" if verdict.ready else "False"):
        if verdict.state in WARN_STATES:
            ctx.post_event(body, "Warning", verdict.reason, verdict.message)
    return True


async def report(ctx: Context, plural: str, body: Mapping[str, Any], outcome: Outcome[Any]) -> None:
    """Post the outcome's Events, then write its status."""
    for type_, reason, message in outcome.events:
        ctx.post_event(body, type_, reason, message)
    await write(ctx, plural, body, outcome)


def requeue(outcome: Outcome[Any]) -> None:
    """Ask kopf to run the handler again (an expected wait, not an error)."""
    if outcome.requeue_after is not None:
        v = outcome.verdict
        raise kopf.TemporaryError(
            f"{v.reason}: {v.message}; looking again in {outcome.requeue_after:.0f}s", delay=outcome.requeue_after
        )


def collection_lock(ctx: Context, body: Mapping[str, Any]) -> asyncio.Lock:
    """One VectorCollection's reconciles, drift sweeps and deletion run one at a time."""
    return ctx.lock(f"{COLLECTIONS}/{body['metadata']['namespace']}/{body['metadata']['name']}")


async def reconcile_collection(
    ctx: Context, body: Mapping[str, Any], uids: Mapping[str, Any], snapshots: Mapping[str, Any]
) -> CollectionOutcome:
    """One VectorCollection reconcile under its lock: step, metrics, Events, status."""
    with ctx.handling():
        async with collection_lock(ctx, body):
            return await _reconcile_collection(ctx, body, uids, snapshots)


async def sweep_collection(
    ctx: Context,
    body: Mapping[str, Any],
    uids: Mapping[str, Any],
    snapshots: Mapping[str, Any],
    latest: Callable[[], Mapping[str, Any] | None],
) -> CollectionOutcome | None:
    """The drift sweep's reconcile, on the resource as it is once its lock is held (`latest()`, from the live
    index; the sweep's list can be seconds old) and never on one that is gone or being deleted: acting on a
    stale body re-created a Delete-policy collection just removed by its delete handler."""
    async with collection_lock(ctx, body):
        current = latest()
        if current is None or current["metadata"].get("deletionTimestamp"):
            return None
        return await _reconcile_collection(ctx, current, uids, snapshots)


async def _reconcile_collection(
    ctx: Context, body: Mapping[str, Any], uids: Mapping[str, Any], snapshots: Mapping[str, Any]
) -> CollectionOutcome:
    logs.new_correlation_id()
    env = collection_step.Environment(
        ctx.connections,
        ctx.kube,
        ctx.gates,
        ctx.restores,
        owner_alive=lambda marker: marker.rsplit("/", 1)[-1] in uids,
        snapshots=lookup(snapshots),
        offsite=ctx.offsite,
        pace=CopyPace(ctx.settings.migration_page_points, ctx.settings.migration_copy_seconds),
    )
    with metrics.RECONCILE_DURATION.labels("VectorCollection").time():
        observed = Target.of(body, ctx.statuses.current(COLLECTIONS, body))
        outcome = await collection_step.step(observed, env)
        await report(ctx, COLLECTIONS, body, outcome)
    metrics.RECONCILES.labels("VectorCollection", outcome.verdict.reason).inc()
    if outcome.drift_corrected:
        metrics.DRIFT_CORRECTED.inc(outcome.drift_corrected)
    if outcome.create_conflicts:
        metrics.CREATE_CONFLICTS.inc(outcome.create_conflicts)
    return outcome


def indexed(body: Mapping[str, Any]) -> dict[str, Any]:
    """What an index keeps of a body: all the reconcilers read, without the server's managedFields and kopf's
    own annotations (its diff base repeats the spec). Those were about half of each body an index held, and
    the indexes hold every resource for the operator's lifetime.

    The index functions themselves are `async def`: kopf runs a plain function in its thread pool, and at
    start every index function of every resource runs before any handler may (3,000 thread hops for 1,000
    VectorCollections)."""
    meta = body["metadata"]
    kept_meta = {k: v for k, v in meta.items() if k != "managedFields"}
    if annotations := meta.get("annotations"):
        kept_meta["annotations"] = {k: v for k, v in annotations.items() if not k.startswith(KOPF_ANNOTATIONS)}
    return {**body, "metadata": kept_meta}


def lookup(index: Mapping[str, Any]) -> Callable[[str], Mapping[str, Any] | None]:
    """One body by "namespace/name" from a kopf index whose objects each return {key: body}."""
    return lambda key: next(iter(index.get(key, ())), None)


def every(index: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """All bodies of such an index."""
    return [body for store in index.values() for body in store]


async def delete_with_budget(
    ctx: Context,
    body: Mapping[str, Any],
    retry: int,
    what: str,
    left: str,
    attempt: Callable[[], Awaitable[tuple[str, str, str]]],
    retry_on: tuple[type[Exception], ...],
    connection: str | None = None,
) -> None:
    """Run one delete attempt; on a failure in `retry_on`, retry with backoff until the budget is spent,
    then release the resource with a Warning naming what was left behind: in a log line, a metric, an
    Event on the resource and one on its QdrantConnection `connection` ("namespace/name"), which may
    outlive a namespace being deleted."""
    try:
        type_, reason, message = await attempt()
    except retry_on as exc:
        decision = after_failed_delete(retry, what, left, exc)
        if decision.release:
            meta = body["metadata"]
            log.warning("%s %s/%s: %s", body.get("kind"), meta["namespace"], meta["name"], decision.warning)
            metrics.DELETES_ABANDONED.labels(body.get("kind", "")).inc()
            ctx.post_event(body, "Warning", "DeleteAbandoned", decision.warning)
            if connection is not None:
                ns, name = connection.split("/", 1)
                ref = {
                    "apiVersion": body.get("apiVersion"),
                    "kind": "QdrantConnection",
                    "metadata": {"namespace": ns, "name": name},
                }
                ctx.post_event(
                    ref,
                    "Warning",
                    "DeleteAbandoned",
                    f"{body.get('kind')} {meta['namespace']}/{meta['name']}: {decision.warning}",
                )
            return
        raise kopf.TemporaryError(str(exc), delay=decision.delay) from exc
    ctx.post_event(body, type_, reason, message)
