"""QdrantConnection: one daemon per connection owns its client (pool, breaker, health monitor), writes
status when the report changes, and sweeps its collections for drift."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kopf

from .. import metrics
from ..api import GROUP, VERSION
from ..api.connection import QdrantConnectionSpec, QdrantConnectionStatus
from ..api.kinds import QDRANT_CONNECTION, VECTOR_COLLECTION
from ..k8s.api import KubeApiError
from ..qdrant.errors import QdrantError
from ..reconcile import connection as logic
from ..reconcile.collection_step import gone_from_qdrant
from ..reconcile.connection_step import ConnectionRun, Observed
from ..reconcile.dependents import Dependent, dependents, waiting_for
from ..reconcile.outcome import Outcome, ReconcileError, parse
from .adapter import COLLECTIONS, INDEX, Bodies, every, indexed, lookup, sweep_collection, write
from .context import ConnectionRuntime, Context, KubeSecrets

log = logging.getLogger(__name__)
PLURAL = QDRANT_CONNECTION.plural
# A drift sweep lets handler work (new and changed objects) go first, waiting before each resource at most
# this long and in all at most a budget, so a steady stream of changes delays a sweep but never stops it.
SWEEP_YIELD_SECONDS, SWEEP_YIELD_BUDGET_SECONDS = 5.0, 60.0


@kopf.index(GROUP, VERSION, PLURAL)
async def qdrantconnection_keys(namespace: str | None, name: str, **_: Any) -> dict[str, bool]:
    """Every QdrantConnection by "namespace/name", known before any handler runs (ConnectionRegistry.declared)."""
    return {f"{namespace}/{name}": True}


@kopf.index(GROUP, VERSION, VECTOR_COLLECTION.plural)
async def collections_by_connection(
    namespace: str | None, spec: kopf.Spec, body: kopf.Body, **_: Any
) -> dict[str, Any]:
    ref = spec.get("connectionRef") or {}
    return {f"{ref.get('namespace') or namespace}/{ref.get('name')}": indexed(body)}


@dataclass(frozen=True)
class Indexes:
    """The kopf indexes a sweep reads (live: each lookup sees the latest bodies)."""

    uids: kopf.Index[str, bool]  # vectorcollection_uids
    collections: Bodies  # vectorcollection_bodies
    snapshots: Bodies  # snapshot_bodies


async def _write(ctx: Context, body: kopf.Body, outcome: Outcome[QdrantConnectionStatus]) -> None:
    # A failed status write (API server restarting, throttled) is retried on the next tick; letting it end
    # the daemon would close the client and lose its breaker and health history.
    try:
        await write(ctx, PLURAL, body, outcome)
    except (TimeoutError, KubeApiError, OSError) as exc:
        log.warning(
            "connection %s/%s: status not written, retrying: %s",
            body["metadata"]["namespace"],
            body["metadata"]["name"],
            exc,
        )


async def _sweep(
    ctx: Context,
    bodies: list[dict[str, Any]],
    indexes: Indexes,
    follow_ups: dict[str, asyncio.Task[None]],
    spread: float = 0.0,
) -> None:
    """Drift sweep: the same reconcile as the handlers', one collection at a time, the i-th starting no earlier
    than i * spread / len(bodies) seconds in. One that asks to be looked at again (a re-index it started holds
    the connection's gate until it is seen done) gets a follow-up task, as a handler's requeue would, so the
    sweep itself never waits for it."""
    uids = indexes.uids
    ctx.statuses.keep_only(COLLECTIONS, uids)
    by_name = lookup(indexes.collections)
    budget = SWEEP_YIELD_BUDGET_SECONDS
    started, spacing = time.monotonic(), spread / max(len(bodies), 1)
    for i, body in enumerate(bodies):
        meta = body["metadata"]
        if (due := started + i * spacing - time.monotonic()) > 0:
            await asyncio.sleep(due)

        def latest(uid: str = meta["uid"], name: str = f"{meta['namespace']}/{meta['name']}") -> Any:
            current = by_name(name)
            return current if current is not None and current["metadata"]["uid"] == uid else None

        if budget > 0:
            waited = time.monotonic()
            await ctx.quiet(within=min(SWEEP_YIELD_SECONDS, budget))
            budget -= time.monotonic() - waited
        try:
            outcome = await sweep_collection(ctx, body, uids, indexes.snapshots, latest)
        except Exception:  # one broken resource must not stop the sweep of the others
            log.exception("drift sweep of %s/%s failed", body["metadata"]["namespace"], body["metadata"]["name"])
            continue
        uid = meta["uid"]
        if outcome is not None and outcome.requeue_after is not None and uid not in follow_ups:
            again = _follow_up(ctx, body, uids, indexes.snapshots, latest, outcome.requeue_after)
            follow_ups[uid] = asyncio.create_task(again, name=f"follow-up:{uid}")
            follow_ups[uid].add_done_callback(functools.partial(_forget, follow_ups, uid))


async def _existence_check(
    ctx: Context,
    runtime: ConnectionRuntime,
    bodies: list[dict[str, Any]],
    indexes: Indexes,
    follow_ups: dict[str, asyncio.Task[None]],
) -> None:
    """Between sweeps: one list of the connection's collections and one of its aliases. A collection deleted
    in Qdrant (or an alias of its removed or moved) is reconciled now, as the next sweep would, instead of up
    to a resync interval later."""
    try:
        collections = set(await runtime.collections.list_collections())
        aliases = await runtime.collections.list_aliases()
    except QdrantError as exc:  # an outage: the health monitor reports it, and the re-sweep follows recovery
        log.debug("existence check of connection %s/%s failed: %s", runtime.namespace, runtime.name, exc)
        return
    except Exception:  # e.g. a client replaced meanwhile: the next check uses the new one
        log.exception("existence check of connection %s/%s failed", runtime.namespace, runtime.name)
        return
    gone = [
        body
        for body in bodies
        if gone_from_qdrant(
            body["metadata"].get("annotations") or {},
            ctx.statuses.current(COLLECTIONS, body),
            collections,
            aliases,
        )
    ]
    if gone:
        log.info(
            "connection %s/%s: %d collection(s) or alias(es) gone from Qdrant, reconciling now: %s",
            runtime.namespace,
            runtime.name,
            len(gone),
            ", ".join(f"{b['metadata']['namespace']}/{b['metadata']['name']}" for b in gone[:10]),
        )
        await _sweep(ctx, gone, indexes, follow_ups)


def _forget(follow_ups: dict[str, asyncio.Task[None]], uid: str, _: asyncio.Task[None]) -> None:
    follow_ups.pop(uid, None)


async def _follow_up(
    ctx: Context,
    body: dict[str, Any],
    uids: Any,
    snapshots: Any,
    latest: Callable[[], Any],
    delay: float | None,
) -> None:
    try:
        while delay is not None:
            await asyncio.sleep(delay)
            outcome = await sweep_collection(ctx, body, uids, snapshots, latest)
            delay = outcome.requeue_after if outcome is not None else None
    except Exception:
        log.exception("follow-up of %s/%s failed", body["metadata"]["namespace"], body["metadata"]["name"])


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10)
async def connection_daemon(
    namespace: str | None,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    collections_by_connection: Bodies = INDEX,
    vectorcollection_uids: kopf.Index[str, bool] = INDEX,
    vectorcollection_bodies: Bodies = INDEX,
    snapshot_bodies: Bodies = INDEX,
    **_: Any,
) -> None:
    """The connection's loop (reconcile/connection_step.py decides each tick): status, the client, and the
    sweeps and existence checks of its collections, each in a task of its own so a long one never delays
    the status (breaker, health) writes."""
    ctx: Context = memo.context
    namespace = namespace or "default"  # always set: the kind is namespaced
    key = f"{namespace}/{name}"
    indexes = Indexes(vectorcollection_uids, vectorcollection_bodies, snapshot_bodies)
    ctx.connections.daemons.add(key)
    run = ConnectionRun(time.monotonic(), ctx.settings)
    sweeping: asyncio.Task[None] | None = None
    checking: asyncio.Task[None] | None = None
    follow_ups: dict[str, asyncio.Task[None]] = {}  # by collection uid
    try:
        while not stopped:
            bodies = list(collections_by_connection.get(key, ()))
            observed = Observed(
                namespace,
                name,
                body["spec"],
                bool((body.get("status") or {}).get("conditions")),
                bodies,
                sweeping is not None and not sweeping.done(),
                checking is not None and not checking.done(),
            )
            tick = await run.step(observed, time.monotonic(), ctx.settings, KubeSecrets(ctx.kube), ctx.connections)
            if tick.users is not None:
                metrics.COLLECTIONS_MANAGED.labels(key).set(tick.users)
            if tick.outcome is not None:
                await _write(ctx, body, tick.outcome)
            if tick.probed:
                ctx.connections.first_probe(key).set()
            if tick.sweep is not None:
                sweeping = asyncio.create_task(
                    _sweep(ctx, bodies, indexes, follow_ups, tick.sweep), name=f"sweep:{key}"
                )
            runtime = ctx.connections.get(key)
            if tick.check and runtime is not None:
                check = _existence_check(ctx, runtime, bodies, indexes, follow_ups)
                checking = asyncio.create_task(check, name=f"existence-check:{key}")
            await stopped.wait(tick.delay)
    finally:
        tasks = [t for t in (sweeping, checking, *follow_ups.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not (stopped.reason and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED):
            await ctx.connections.close(key)
        # else: the delete handler below owns the client until the resources that need it are gone.


WAIT_FOR_DEPENDENTS_SECONDS = 5.0


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def release_connection(
    body: kopf.Body,
    memo: kopf.Memo,
    namespace: str | None,
    name: str,
    collections_by_connection: Bodies = INDEX,
    snapshot_bodies: Bodies = INDEX,
    **_: Any,
) -> None:
    """Keep a deleted connection (and its client) while resources still need it to delete their data in
    Qdrant, as a namespace deletion removes everything at once; then close the client."""
    ctx: Context = memo.context
    key = f"{namespace}/{name}"
    snapshots = every(snapshot_bodies)
    waiting = await _still_there(ctx, dependents(key, collections_by_connection.get(key, ()), snapshots))
    if waiting and ctx.connections.get(key) is None:
        await _client_for_deletion(ctx, body, key)
    if waiting:
        await _write(ctx, body, Outcome(waiting_for(waiting), QdrantConnectionStatus()))
        raise kopf.TemporaryError(
            f"waiting for {len(waiting)} dependent resource(s)", delay=WAIT_FOR_DEPENDENTS_SECONDS
        )
    await ctx.connections.close(key)
    ctx.statuses.forget(PLURAL, body["metadata"]["uid"])


async def _client_for_deletion(ctx: Context, body: kopf.Body, key: str) -> None:
    """The operator restarted while the connection was being deleted (kopf starts no daemon for it): build
    the client its dependents need. Without its Secrets they fail and are released as for an outage."""
    namespace, name = key.split("/", 1)
    try:
        spec = parse(QdrantConnectionSpec, body["spec"])
        credentials = await logic.credentials(KubeSecrets(ctx.kube), namespace, spec)
    except ReconcileError as exc:  # InvalidSpec, SecretNotFound
        log.warning("connection %s: no client for its dependents' deletion: %s", key, exc)
        return
    ctx.connections.daemons.add(key)
    await ctx.connections.apply(key, namespace, name, spec, ctx.settings.resolve(spec), credentials)


async def _still_there(ctx: Context, waiting: list[Dependent]) -> list[Dependent]:
    """The dependents that exist now: kopf's indexes can keep an object whose DELETED event fell into a watch
    gap (API server restarted), and the connection must not wait for it forever."""
    listed: dict[tuple[str, str], set[str]] = {}
    out = []
    for plural, namespace, name in waiting:
        if (plural, namespace) not in listed:
            listed[(plural, namespace)] = await ctx.kube.names(plural, namespace)
        if name in listed[(plural, namespace)]:
            out.append((plural, namespace, name))
    return out
