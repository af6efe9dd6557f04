"""CollectionAccessKey: one daemon per key keeps a token in its Secret and rotates it (reconcile/access_key.py
decides); the Secret is owned by the resource, so Kubernetes' garbage collector deletes it with the key."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf

from .. import metrics
from ..api import GROUP, VERSION
from ..api.kinds import COLLECTION_ACCESS_KEY
from ..reconcile import access_key
from ..reconcile.outcome import backoff
from .adapter import INDEX, Bodies, lookup, report
from .context import Context, KubeSecrets

log = logging.getLogger(__name__)
PLURAL = COLLECTION_ACCESS_KEY.plural
MAX_BACKOFF_SECONDS = 300.0


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10)
async def access_key_daemon(
    body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, vectorcollection_bodies: Bodies = INDEX, **_: Any
) -> None:
    """The key's loop, in its own task: a token is due at a time, not on an event."""
    ctx: Context = memo.context
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    label = f"{namespace}/{name}"  # not a `namespace` label: a scrape's own (the Pod's) takes that name
    failures = 0
    try:
        while not stopped:
            try:
                key = access_key.AccessKey.of({**body, "status": ctx.statuses.current(PLURAL, body)})
                now = datetime.now(UTC)
                step = await access_key.step(
                    key, now, lookup(vectorcollection_bodies), ctx.connections, KubeSecrets(ctx.kube)
                )
                await report(ctx, PLURAL, body, step.outcome)
                metrics.RECONCILES.labels(access_key.KIND, step.outcome.verdict.reason).inc()
                if step.expires is not None and step.rotate_at is not None:
                    metrics.ACCESS_KEY_EXPIRY.labels(label).set(step.expires.timestamp())
                    metrics.ACCESS_KEY_ROTATION_DUE.labels(label).set(step.rotate_at.timestamp())
                delay, failures = step.delay, 0
            except Exception:  # the API server refused a Secret or status write: looked at again, backing off
                failures += 1
                delay = backoff(failures, MAX_BACKOFF_SECONDS)
                log.exception("CollectionAccessKey %s/%s: step failed; again in %.0fs", namespace, name, delay)
            await stopped.wait(delay)
    finally:
        if stopped.reason and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
            for gauge in (metrics.ACCESS_KEY_EXPIRY, metrics.ACCESS_KEY_ROTATION_DUE):
                gauge.remove(label)
            ctx.statuses.forget(PLURAL, meta["uid"])
