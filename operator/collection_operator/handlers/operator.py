"""Operator-wide wiring: kopf's settings, login, the Context in kopf's memo, metrics and hot reload."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from pathlib import Path
from typing import Any, cast

import kopf
import prometheus_client

from .. import metrics
from ..api import FINALIZER
from ..config import OperatorSettings, SettingsWatcher, load_settings, settings_file
from ..k8s.api import KubeApi
from ..k8s.api import login as k8s_login
from ..k8s.peering import PeeringKeeper, own_identity
from ..redact import SecretValues
from . import accesskey, collection, connection, resources, snapshot  # noqa: F401 - importing registers their handlers
from .adapter import KOPF_PREFIX
from .context import Context

log = logging.getLogger(__name__)


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """In a Pod its service account; elsewhere KUBECONFIG, as kubectl does. No client library needed."""
    return k8s_login(settings)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf's own bookkeeping lives under the operator's prefix, and routine success posts no Event.
    settings.persistence.finalizer = FINALIZER
    # Not GROUP itself: kopf leaves annotations under its storage prefix out of the diff, so the users'
    # paused / managed / restore-from annotations would never trigger their handler.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    # kopf waits this long for its own patch to come back on the watch before it acts on an older event;
    # its 5 s default ran the create handler of 669 of 1,000 collections applied at once a second time.
    settings.persistence.consistency_timeout = 30.0
    settings.peering.lifetime = memo.operator_settings.peering_lifetime_seconds
    kube = await KubeApi.connect(memo.secrets, settings)
    ctx = Context(memo.operator_settings, kube, memo.secrets, memo.settings_path)
    if (path := settings_file(ctx.settings_path)) is not None:

        def changed(new: OperatorSettings) -> None:
            ctx.settings = new  # connection daemons resolve their client settings from it on every tick

        ctx.watcher = SettingsWatcher(path, on_change=changed)
        ctx.watcher.start()
    if (peering := memo.operator_settings.peering_name) is not None:
        # kopf starts paused until it reads its peering object, which it never creates (k8s/peering.py).
        ctx.peering = PeeringKeeper(kube, peering, memo.namespaces, memo.identity)
        ctx.peering.start()
    else:
        metrics.OPERATOR_ACTIVE.set(1)  # standalone: kopf never pauses
    metrics.watch_internal_entries(ctx.internal_entries(asyncio.get_running_loop()))
    memo.context = ctx


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if (ctx := memo.get("context")) is not None:
        await ctx.aclose()


@kopf.on.probe(id="connections")
def connections_probe(memo: kopf.Memo, **_: Any) -> int:
    return len(memo.context.connections.running) if "context" in memo else 0


def serve_metrics(bind: str, port: int) -> None:
    if port:
        prometheus_client.start_http_server(port, addr=bind)
        log.info("metrics on http://%s:%d/metrics", bind, port)


async def run(
    *,
    namespaces: list[str] | None = None,
    bind: str = "127.0.0.1",
    settings_path: Path | None = None,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
    memo: kopf.Memo | None = None,
    secrets: SecretValues | None = None,
) -> None:
    """Run the operator until stopped. `namespaces` empty or None watches the whole cluster. `memo.context`
    is the running operator's Context once it has started (tests read it). `secrets` collects the Secret
    values read, for the log filter that masks them (`logs.install`)."""
    operator_settings = load_settings(settings_path)
    serve_metrics(bind, operator_settings.metrics_port)
    watch = list(namespaces or operator_settings.namespaces)
    health = f"http://{bind}:{operator_settings.health_port}/healthz" if operator_settings.health_port else None
    memo = memo if memo is not None else kopf.Memo()
    identity = own_identity()
    memo.update(
        identity=identity,
        operator_settings=operator_settings,
        settings_path=settings_path,
        namespaces=watch,
        secrets=secrets if secrets is not None else SecretValues(),
    )
    peering = operator_settings.peering_name
    await kopf.operator(
        # Replicas share a kopf peering object: the one with the highest priority runs, the others pause
        # and take over when its keep-alives stop (peering_lifetime_seconds). Equal priorities would pause all.
        standalone=peering is None,
        peering_name=peering,
        priority=operator_settings.peering_priority
        if operator_settings.peering_priority is not None
        else random.randrange(2**31),
        clusterwide=not watch,
        namespaces=watch,
        # Named here so the operator finds its own entry in the peering object (k8s/peering.py, the active gauge).
        identity=cast(Any, identity),  # kopf's Identity: a NewType of str
        liveness_endpoint=health,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
        memo=memo,
    )


def main_loop(**kwargs: Any) -> None:
    asyncio.run(run(**kwargs))
