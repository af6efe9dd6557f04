"""QdrantConnection: one daemon per connection owns its client (pool, breaker, health monitor),
writes status when the report changes, and sweeps its collections for drift."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf
import pydantic

from .. import metrics
from ..api import GROUP, VERSION
from ..api.connection import QdrantConnectionSpec
from ..k8s.api import SecretNotFound
from ..k8s.conditions import Verdict
from ..qdrant import QdrantGateway
from ..reconcile import connection as logic
from ..reconcile.gateway import QdrantCollections
from . import collection
from .common import write_status
from .runtime import RUNTIME, ConnectionRuntime

log = logging.getLogger(__name__)
PLURAL = "qdrantconnections"
TICK_SECONDS = 1.0  # how often the daemon compares the client's report with status (no I/O when equal)


@kopf.index(GROUP, VERSION, "vectorcollections")
def collections_by_connection(namespace: str | None, spec: kopf.Spec, body: kopf.Body, **_: Any) -> dict[str, Any]:
    ref = spec.get("connectionRef") or {}
    return {f"{ref.get('namespace') or namespace}/{ref.get('name')}": dict(body)}


async def _credentials(namespace: str, spec: QdrantConnectionSpec) -> tuple[str | None, str | None]:
    api_key = ca = None
    if key_ref := spec.api_key_secret_ref:
        api_key = (await RUNTIME.api.read_secret_key(namespace, key_ref.name, key_ref.key)).decode().strip()
    if spec.tls and (ca_ref := spec.tls.ca_secret_ref):
        ca = (await RUNTIME.api.read_secret_key(namespace, ca_ref.name, ca_ref.key)).decode()
    return api_key, ca


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10)
async def connection_daemon(
    namespace: str | None, name: str, body: kopf.Body, stopped: kopf.DaemonStopped, **kwargs: Any
) -> None:
    namespace = namespace or "default"  # always set: the kind is namespaced
    collections_by_connection: kopf.Index[str, dict[str, Any]] = kwargs["collections_by_connection"]
    key = f"{namespace}/{name}"
    runtime: ConnectionRuntime | None = None
    applied: tuple[Any, ...] | None = None
    next_credentials_check = next_sweep = 0.0
    try:
        while not stopped:
            now = time.monotonic()
            try:
                spec = QdrantConnectionSpec.model_validate(dict(body["spec"]))
            except pydantic.ValidationError as exc:
                await write_status(PLURAL, body, Verdict("Stalled", "InvalidSpec", str(exc)), {}, reconciled=False)
                await stopped.wait(RUNTIME.settings.resync_interval_seconds)
                continue
            settings = RUNTIME.settings.resolve(spec)
            if now >= next_credentials_check:  # rotated Secrets are picked up on the health interval
                next_credentials_check = now + settings.health_check.interval_seconds
                try:
                    credentials = await _credentials(namespace, spec)
                except SecretNotFound as exc:
                    await write_status(PLURAL, body, Verdict("Failed", "SecretNotFound", str(exc)), {},
                                       reconciled=False)
                    await stopped.wait(min(settings.health_check.interval_seconds, 10))
                    next_credentials_check = 0.0
                    continue
            wanted = (spec.url, settings, credentials, spec.tls.insecure_skip_verify if spec.tls else False)
            if runtime is None or wanted != applied:
                runtime = await _apply(key, namespace, name, spec, settings, credentials, runtime)
                applied = wanted
            report = runtime.gateway.report
            users = len(collections_by_connection.get(key, ()))
            metrics.COLLECTIONS_MANAGED.labels(key).set(users)
            await write_status(PLURAL, body, logic.verdict(report), logic.status_fields(report, users),
                               reconciled=report.health.value != "Unknown")
            if now >= next_sweep and runtime.not_ready() is None:
                next_sweep = now + RUNTIME.settings.resync_interval_seconds
                await collection.sweep(list(collections_by_connection.get(key, ())))
            await stopped.wait(TICK_SECONDS)
    finally:
        if runtime is not None:
            RUNTIME.connections.pop(key, None)
            await runtime.gateway.aclose()


async def _apply(
    key: str, namespace: str, name: str, spec: QdrantConnectionSpec, settings: Any,
    credentials: tuple[str | None, str | None], runtime: ConnectionRuntime | None,
) -> ConnectionRuntime:
    """Build the client, or change the running one in place so its breaker and metrics carry on."""
    api_key, ca = credentials
    verify = not (spec.tls and spec.tls.insecure_skip_verify)
    if runtime is not None and runtime.spec.url == spec.url:
        await runtime.gateway.update_settings(settings)
        await runtime.gateway.update_credentials(api_key, ca, verify)
        runtime.spec = spec
        runtime.operations = asyncio.Semaphore(spec.max_concurrent_operations)
        return runtime
    if runtime is not None:
        await runtime.gateway.aclose()
    gateway = QdrantGateway(spec.url, settings, name=key, api_key=api_key, ca_pem=ca, verify=verify)
    gateway.start()
    runtime = ConnectionRuntime(namespace, name, spec, gateway, QdrantCollections(gateway),
                                asyncio.Semaphore(spec.max_concurrent_operations))
    RUNTIME.connections[key] = runtime
    log.info("connection %s: client for %s started", key, spec.url)
    return runtime
