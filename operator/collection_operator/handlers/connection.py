"""QdrantConnection: one daemon per connection owns its client (pool, breaker, health monitor), writes
status when the report changes, and sweeps its collections for drift."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import kopf
import pydantic

from .. import metrics
from ..api import GROUP, VERSION
from ..api.connection import QdrantConnectionSpec, QdrantConnectionStatus
from ..k8s.api import KubeApiError
from ..qdrant.errors import QdrantError
from ..reconcile import connection as logic
from ..reconcile.collection_step import gone_from_qdrant
from ..reconcile.dependents import Dependent, dependents, waiting_for
from ..reconcile.outcome import Outcome, State, Verdict
from .adapter import COLLECTIONS, indexed, lookup, sweep_collection, write
from .context import ConnectionRuntime, Context

log = logging.getLogger(__name__)
PLURAL = "qdrantconnections"
# A drift sweep lets handler work (new and changed objects) go first, waiting before each resource at most
# this long and in all at most a budget, so a steady stream of changes delays a sweep but never stops it.
SWEEP_YIELD_SECONDS, SWEEP_YIELD_BUDGET_SECONDS = 5.0, 60.0
# A routine sweep spreads its collections evenly over this share of the resync interval instead of checking
# them back to back: each is still checked once per interval, and Qdrant, the API server and new objects see
# a steady trickle rather than a burst of 1,000 reconciles. A re-sweep after an outage is not spread.
SWEEP_SPREAD = 0.5
TICK_SECONDS = 1.0  # how often the daemon compares the client's report with status (no I/O when equal)


@kopf.index(GROUP, VERSION, PLURAL)
async def qdrantconnection_keys(namespace: str | None, name: str, **_: Any) -> dict[str, bool]:
    """Every QdrantConnection by "namespace/name", known before any handler runs (ConnectionRegistry.declared)."""
    return {f"{namespace}/{name}": True}


@kopf.index(GROUP, VERSION, COLLECTIONS)
async def collections_by_connection(
    namespace: str | None, spec: kopf.Spec, body: kopf.Body, **_: Any
) -> dict[str, Any]:
    ref = spec.get("connectionRef") or {}
    return {f"{ref.get('namespace') or namespace}/{ref.get('name')}": indexed(body)}


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


def _failed(state: State, reason: str, message: str) -> Outcome[QdrantConnectionStatus]:
    return Outcome(Verdict(state, reason, message), QdrantConnectionStatus())


async def _sweep(
    ctx: Context,
    bodies: list[dict[str, Any]],
    kwargs: dict[str, Any],
    follow_ups: dict[str, asyncio.Task[None]],
    spread: float = 0.0,
) -> None:
    """Drift sweep: the same reconcile as the handlers', one collection at a time, the i-th starting no earlier
    than i * spread / len(bodies) seconds in. One that asks to be looked at again (a re-index it started holds
    the connection's gate until it is seen done) gets a follow-up task, as a handler's requeue would, so the
    sweep itself never waits for it."""
    uids = kwargs["vectorcollection_uids"]
    ctx.statuses.keep_only(COLLECTIONS, uids)
    by_name = lookup(kwargs["vectorcollection_bodies"])
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
            outcome = await sweep_collection(ctx, body, uids, kwargs["snapshot_bodies"], latest)
        except Exception:  # one broken resource must not stop the sweep of the others
            log.exception("drift sweep of %s/%s failed", body["metadata"]["namespace"], body["metadata"]["name"])
            continue
        uid = meta["uid"]
        if outcome is not None and outcome.requeue_after is not None and uid not in follow_ups:
            again = _follow_up(ctx, body, uids, kwargs["snapshot_bodies"], latest, outcome.requeue_after)
            follow_ups[uid] = asyncio.create_task(again, name=f"follow-up:{uid}")
            follow_ups[uid].add_done_callback(functools.partial(_forget, follow_ups, uid))


async def _existence_check(
    ctx: Context,
    runtime: ConnectionRuntime,
    bodies: list[dict[str, Any]],
    kwargs: dict[str, Any],
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
        await _sweep(ctx, gone, kwargs, follow_ups)


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
    namespace: str | None, name: str, body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, **kwargs: Any
) -> None:
    ctx: Context = memo.context
    namespace = namespace or "default"  # always set: the kind is namespaced
    key = f"{namespace}/{name}"
    ctx.connections.daemons.add(key)
    applied: tuple[Any, ...] | None = None
    credentials: logic.Credentials | None = None
    read_refs: tuple[Any, ...] | None = None
    next_credentials_check = 0.0
    # No sweep at start: kopf resumes (or creates) every collection then, and a sweep beside them doubled the
    # work of an operator restart (1,005 reconciles more while 1,005 were resumed).
    next_sweep = time.monotonic() + ctx.settings.resync_interval_seconds
    sweeping: asyncio.Task[None] | None = None
    checking: asyncio.Task[None] | None = None
    follow_ups: dict[str, asyncio.Task[None]] = {}  # by collection uid
    was_ready: bool | None = None  # the connection's readiness at the last probed tick
    resweep = False  # readiness changed: every collection re-checks now, not at the next resync
    next_existence_check = time.monotonic() + ctx.settings.existence_check_interval_seconds
    try:
        while not stopped:
            now = time.monotonic()
            try:
                spec = QdrantConnectionSpec.model_validate(dict(body["spec"]))
            except pydantic.ValidationError as exc:
                await _write(ctx, body, _failed(State.STALLED, "InvalidSpec", str(exc)))
                await stopped.wait(ctx.settings.resync_interval_seconds)
                continue
            settings = ctx.settings.resolve(spec)
            # Rotated Secrets are picked up on the health interval; a changed reference at once.
            if now >= next_credentials_check or logic.secret_refs(spec) != read_refs:
                next_credentials_check = now + settings.health_check.interval_seconds
                try:
                    credentials = await logic.credentials(ctx.kube, namespace, spec)
                    read_refs = logic.secret_refs(spec)
                except LookupError as exc:
                    # A client already running keeps its last good credentials; status says what is wrong.
                    await _write(ctx, body, _failed(State.FAILED, "SecretNotFound", str(exc)))
                    await stopped.wait(min(settings.health_check.interval_seconds, 10))
                    next_credentials_check = 0.0
                    continue
                except (TimeoutError, KubeApiError, OSError, UnicodeDecodeError) as exc:
                    log.warning("connection %s: reading its Secrets failed, retrying: %s", key, exc)
                    next_credentials_check = 0.0
                    if credentials is None:
                        await stopped.wait(TICK_SECONDS)
                        continue
            assert credentials is not None
            wanted = (spec.targets, settings, credentials, spec.tls.insecure_skip_verify if spec.tls else False)
            runtime = ctx.connections.get(key)
            if runtime is None or wanted != applied:
                runtime = await ctx.connections.apply(key, namespace, name, spec, settings, credentials)
                applied = wanted
            runtime.spec = spec  # allowedNamespaces and the rest take effect on the next collection reconcile
            report = runtime.gateway.report
            bodies = kwargs["collections_by_connection"].get(key, ())
            users = sum(1 for b in bodies if runtime.allows(b["metadata"]["namespace"]))
            metrics.COLLECTIONS_MANAGED.labels(key).set(users)
            probed = report.health.value != "Unknown"
            # After a restart the last verdict stands until the first probe; a new connection says Connecting.
            if probed or not (body.get("status") or {}).get("conditions"):
                await _write(ctx, body, Outcome(logic.verdict(report), logic.status(report, users), reconciled=probed))
            ready = runtime.not_ready() is None
            if probed:
                ctx.connections.first_probe(key).set()
                # An outage or a recovery reaches the collections' status within a tick, not at the next resync:
                # while the connection is down their reconcile stops before any Qdrant call.
                resweep = resweep or (was_ready is not None and ready != was_ready)
                was_ready = ready
            if (resweep or (ready and now >= next_sweep)) and (sweeping is None or sweeping.done()):
                # In its own task, so a long sweep never delays this loop's status (breaker, health) writes.
                spread = 0.0 if resweep else ctx.settings.resync_interval_seconds * SWEEP_SPREAD
                next_sweep, resweep = now + ctx.settings.resync_interval_seconds, False
                sweep = _sweep(ctx, list(bodies), kwargs, follow_ups, spread)
                sweeping = asyncio.create_task(sweep, name=f"sweep:{key}")
            interval = ctx.settings.existence_check_interval_seconds
            if ready and interval and now >= next_existence_check and (checking is None or checking.done()):
                # Beside a sweep too: a spread sweep takes half the resync interval to reach its last collection.
                next_existence_check = now + interval
                check = _existence_check(ctx, runtime, list(bodies), kwargs, follow_ups)
                checking = asyncio.create_task(check, name=f"existence-check:{key}")
            await stopped.wait(TICK_SECONDS)
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
async def release_connection(body: kopf.Body, memo: kopf.Memo, namespace: str | None, name: str, **kwargs: Any) -> None:
    """Keep a deleted connection (and its client) while resources still need it to delete their data in
    Qdrant, as a namespace deletion removes everything at once; then close the client."""
    ctx: Context = memo.context
    key = f"{namespace}/{name}"
    snapshots = [b for values in kwargs["snapshot_bodies"].values() for b in values]
    waiting = await _still_there(ctx, dependents(key, kwargs["collections_by_connection"].get(key, ()), snapshots))
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
        spec = QdrantConnectionSpec.model_validate(dict(body["spec"]))
        credentials = await logic.credentials(ctx.kube, namespace, spec)
    except (pydantic.ValidationError, LookupError) as exc:
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
