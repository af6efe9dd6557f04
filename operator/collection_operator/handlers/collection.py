"""VectorCollection: one reconcile for create, spec update, resume, annotation toggles and the drift
sweep of its connection's daemon. Deletion honours deletionPolicy and never traps the resource."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import kopf
import pydantic

from .. import logs, metrics
from ..api import GROUP, PREFIX, VERSION
from ..api.collection import VectorCollectionSpec
from ..api.snapshot import RESTORE_FROM
from ..k8s.conditions import Verdict
from ..qdrant import QdrantError
from ..reconcile.collection import Ownership, owner_marker, ownership
from ..reconcile.collection_sync import Outcome, Target, collection_name, sync
from .common import post_event, write_status
from .runtime import RUNTIME
from .snapshot import restore_step

log = logging.getLogger(__name__)
PLURAL = "vectorcollections"
PAUSED = f"{PREFIX}paused"
MANAGED = f"{PREFIX}managed"
NOT_READY_RECHECK_SECONDS = 10.0
CONNECTION_SETTLE_SECONDS = 5.0  # how long a reconcile waits for its connection's first health probe
DELETE_ATTEMPTS = 5  # then the resource is released with a Warning; Qdrant is left as it is

Uids = kopf.Index[str, bool]


@kopf.index(GROUP, VERSION, PLURAL)
def vectorcollection_uids(uid: str, **_: Any) -> dict[str, bool]:
    """Every live VectorCollection's uid: an ownership marker naming another uid is a deleted resource's."""
    return {uid: True}


def _connection_key(body: Mapping[str, Any]) -> str:
    ref = body["spec"]["connectionRef"]
    return f"{ref.get('namespace') or body['metadata']['namespace']}/{ref['name']}"


async def reconcile(body: Mapping[str, Any], uids: Uids) -> Outcome:
    """Reconcile one VectorCollection and write its status if it changed."""
    meta = body["metadata"]
    key = f"{meta['namespace']}/{meta['name']}"
    logs.new_correlation_id()
    async with RUNTIME.lock(key):
        with metrics.RECONCILE_DURATION.labels("VectorCollection").time():
            outcome = await _reconcile(body, uids)
    metrics.RECONCILES.labels("VectorCollection", outcome.verdict.reason).inc()
    if outcome.drift_corrected:
        metrics.DRIFT_CORRECTED.inc(outcome.drift_corrected)
    for type_, reason, message in outcome.events:
        post_event(body, type_, reason, message)
    annotations = meta.get("annotations") or {}
    paused = [{"type": "Paused", "status": "True", "reason": "Paused",
               "message": f"{PAUSED} is true: nothing is reconciled"}] if annotations.get(PAUSED) == "true" else []
    await write_status(PLURAL, body, outcome.verdict, outcome.status, reconciled=outcome.reconciled,
                       extra_conditions=paused)
    return outcome


async def _reconcile(body: Mapping[str, Any], uids: Uids) -> Outcome:
    meta = body["metadata"]
    annotations = meta.get("annotations") or {}
    status = RUNTIME.status_of(PLURAL, body)
    if annotations.get(PAUSED) == "true":
        return Outcome(Verdict("Failed", "Paused", "reconciling is paused by annotation"), _kept(status))
    if annotations.get(MANAGED) == "false":
        return Outcome(Verdict("Failed", "Unmanaged", f"{MANAGED} is false: Qdrant is never touched again"),
                       _kept(status))
    try:
        spec = VectorCollectionSpec.model_validate(dict(body["spec"]))
    except pydantic.ValidationError as exc:
        return Outcome(Verdict("Stalled", "InvalidSpec", str(exc)))
    connection_key = _connection_key(body)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(RUNTIME.first_probe(connection_key).wait(), CONNECTION_SETTLE_SECONDS)
    runtime = RUNTIME.connections.get(connection_key)
    base = {"collectionName": collection_name(spec, meta["name"]), "connection": connection_key}
    if runtime is not None and not runtime.allows(meta["namespace"]):
        return Outcome(Verdict("Stalled", "ConnectionNotAllowed",
                               f"QdrantConnection {connection_key} does not list namespace {meta['namespace']} "
                               "in allowedNamespaces"), base)
    if (problem := RUNTIME.connection_problem(connection_key)) is not None:
        return Outcome(Verdict("Failed", "ConnectionNotReady", problem), base, requeue_after=NOT_READY_RECHECK_SECONDS)
    assert runtime is not None  # connection_problem() found it connected
    target = Target(meta["namespace"], meta["name"], meta["uid"], meta.get("generation", 0), connection_key, status)
    restoring, restored = await restore_step(body, spec, runtime)  # spec.source or the restore-from annotation
    if restoring is not None:
        return restoring
    outcome = await sync(runtime.collections, spec, target, runtime.gate,
                         owner_alive=lambda marker: marker.rsplit("/", 1)[-1] in uids, write_slot=runtime.operations)
    outcome.status.update(restored)
    return outcome


def _kept(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k not in ("conditions", "observedGeneration")}


async def sweep(bodies: list[dict[str, Any]], uids: Uids) -> None:
    """The connection daemon's periodic pass: same reconcile, one collection at a time."""
    RUNTIME.forget_statuses(PLURAL, uids)
    for body in bodies:
        try:
            await reconcile(body, uids)
        except Exception:  # one broken resource must not stop the sweep of the others
            log.exception("drift sweep of %s/%s failed", body["metadata"]["namespace"], body["metadata"]["name"])


def _annotations_toggled(old: Any, new: Any, **_: Any) -> bool:
    old, new = old or {}, new or {}
    return any(old.get(k) != new.get(k) for k in (PAUSED, MANAGED, RESTORE_FROM))


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
@kopf.on.update(GROUP, VERSION, PLURAL, field="metadata.annotations", when=_annotations_toggled)
async def vectorcollection(body: kopf.Body, **kwargs: Any) -> None:
    outcome = await reconcile(body, kwargs["vectorcollection_uids"])
    if outcome.requeue_after is not None:
        verdict = outcome.verdict
        raise kopf.TemporaryError(f"{verdict.reason}: {verdict.message}; looking again in {outcome.requeue_after:.0f}s",
                                  delay=outcome.requeue_after)


def _deletes_collection(spec: kopf.Spec, annotations: kopf.Annotations, status: kopf.Status, **_: Any) -> bool:
    return (spec.get("deletionPolicy") == "Delete" and annotations.get(MANAGED) != "false"
            and status.get("observedGeneration") is not None)


@kopf.on.delete(GROUP, VERSION, PLURAL, when=_deletes_collection)
async def delete_collection(body: kopf.Body, retry: int, **_: Any) -> None:
    """deletionPolicy Delete: remove the Qdrant collection if this resource owns it. The finalizer is
    only there for such resources (the `when` filter), and it is released after DELETE_ATTEMPTS."""
    meta = body["metadata"]
    name = collection_name(VectorCollectionSpec.model_validate(dict(body["spec"])), meta["name"])
    key = _connection_key(body)
    try:
        if (problem := RUNTIME.connection_problem(key)) is not None:
            raise kopf.TemporaryError(problem, delay=10)
        runtime = RUNTIME.connections[key]
        info = await runtime.collections.get_collection(name)
        if info is None:
            return
        if ownership(info, owner_marker(meta["namespace"], meta["name"], meta["uid"]))[0] != Ownership.OURS:
            post_event(body, "Warning", "NotDeleted", f"collection {name} is not owned by this resource; kept")
            return
        async with runtime.operations:
            await runtime.collections.delete_collection(name)
        post_event(body, "Normal", "Deleted", f"deleted collection {name} (deletionPolicy Delete)")
    except (kopf.TemporaryError, QdrantError) as exc:
        if retry + 1 >= DELETE_ATTEMPTS:
            post_event(body, "Warning", "DeleteAbandoned",
                       f"collection {name} could not be deleted after {DELETE_ATTEMPTS} attempts ({exc}); "
                       "the resource is released and the collection is left in Qdrant")
            return
        raise kopf.TemporaryError(str(exc), delay=min(5 * 2**retry, 60)) from exc
