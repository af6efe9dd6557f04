"""Operator-wide wiring: kopf's settings, login, the Kubernetes client, metrics and hot reload."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import kopf
import prometheus_client

from ..api import FINALIZER, GROUP
from ..config import OperatorSettings, SettingsWatcher, load_settings, settings_file
from ..k8s.api import KubeApi
from . import collection, connection, snapshot  # noqa: F401 - importing registers their handlers
from .runtime import RUNTIME

log = logging.getLogger(__name__)
_watcher: SettingsWatcher | None = None


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a Pod its service account; elsewhere KUBECONFIG, as kubectl does. No client library needed."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf's own bookkeeping lives under the operator's prefix, and routine success posts no Event.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    RUNTIME.kube = await KubeApi.connect()
    if (path := settings_file(RUNTIME.settings_path)) is not None:
        global _watcher
        _watcher = SettingsWatcher(path, on_change=_settings_changed)
        _watcher.start()


def _settings_changed(new: OperatorSettings) -> None:
    # Connection daemons resolve their client settings from RUNTIME.settings on every tick.
    RUNTIME.settings = new


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if _watcher is not None:
        await _watcher.stop()
    if RUNTIME.kube is not None:
        await RUNTIME.kube.close()
        RUNTIME.kube = None


@kopf.on.probe(id="connections")
def connections_probe(**_: Any) -> int:
    return len(RUNTIME.connections)


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
) -> None:
    """Run the operator until stopped. `namespaces` empty or None watches the whole cluster."""
    RUNTIME.settings_path = settings_path
    RUNTIME.settings = load_settings(settings_path)
    settings = RUNTIME.settings
    serve_metrics(bind, settings.metrics_port)
    watch = list(namespaces or settings.namespaces)
    health = f"http://{bind}:{settings.health_port}/healthz" if settings.health_port else None
    await kopf.operator(
        standalone=True,  # one replica (Deployment strategy Recreate); no peering objects needed
        clusterwide=not watch,
        namespaces=watch,
        liveness_endpoint=health,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def main_loop(**kwargs: Any) -> None:
    asyncio.run(run(**kwargs))
