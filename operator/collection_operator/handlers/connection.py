"""QdrantConnection: one daemon per connection owns its client (pool, breaker, health monitor),
writes status when the report changes, and sweeps its collections for drift."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf
import pydantic
from kubernetes_asyncio.client.exceptions import ApiException

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


def _secret_refs(spec: QdrantConnectionSpec) -> tuple[Any, ...]:
    return (spec.api_key_secret_ref, spec.tls.ca_secret_ref if spec.tls else None)


async def _write(body: kopf.Body, verdict: Verdict, fields: dict[str, Any], *, reconciled: bool) -> None:
    # A failed status write (API server restarting, throttled) is retried on the next tick; letting it end
    # the daemon would close the client and lose its breaker and health history.
    try:
        await write_status(PLURAL, body, verdict, fields, reconciled=reconciled)
    except (TimeoutError, ApiException, OSError) as exc:
        log.warning("connection %s/%s: status not written, retrying: %s",
                    body["metadata"]["namespace"], body["metadata"]["name"], exc)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10)
async def connection_daemon(
    namespace: str | None, name: str, body: kopf.Body, stopped: kopf.DaemonStopped, **kwargs: Any
) -> None:
    namespace = namespace or "default"  # always set: the kind is namespaced
    collections_by_connection: kopf.Index[str, dict[str, Any]] = kwargs["collections_by_connection"]
    key = f"{namespace}/{name}"
    runtime: ConnectionRuntime | None = None
    applied: tuple[Any, ...] | None = None
    credentials: tuple[str | None, str | None] | None = None
    read_refs: tuple[Any, ...] | None = None
    next_credentials_check = next_sweep = 0.0
    sweeping: asyncio.Task[None] | None = None
    try:
        while not stopped:
            now = time.monotonic()
            try:
                spec = QdrantConnectionSpec.model_validate(dict(body["spec"]))
            except pydantic.ValidationError as exc:
                await _write(body, Verdict("Stalled", "InvalidSpec", str(exc)), {}, reconciled=False)
                await stopped.wait(RUNTIME.settings.resync_interval_seconds)
                continue
            settings = RUNTIME.settings.resolve(spec)
            # Rotated Secrets are picked up on the health interval; a changed reference at once.
            if now >= next_credentials_check or _secret_refs(spec) != read_refs:
                next_credentials_check = now + settings.health_check.interval_seconds
                try:
                    credentials = await _credentials(namespace, spec)
                    read_refs = _secret_refs(spec)
                except SecretNotFound as exc:
                    # A client already running keeps its last good credentials; status says what is wrong.
                    await _write(body, Verdict("Failed", "SecretNotFound", str(exc)), {}, reconciled=False)
                    await stopped.wait(min(settings.health_check.interval_seconds, 10))
                    next_credentials_check = 0.0
                    continue
                except (TimeoutError, ApiException, OSError, UnicodeDecodeError) as exc:
                    log.warning("connection %s: reading its Secrets failed, retrying: %s", key, exc)
                    next_credentials_check = 0.0
                    if credentials is None:
                        await stopped.wait(TICK_SECONDS)
                        continue
            assert credentials is not None
            wanted = (spec.url, settings, credentials, spec.tls.insecure_skip_verify if spec.tls else False)
            if runtime is None or wanted != applied:
                runtime = await _apply(key, namespace, name, spec, settings, credentials, runtime)
                applied = wanted
            runtime.spec = spec  # allowedNamespaces and the rest take effect on the next collection reconcile
            report = runtime.gateway.report
            bodies = collections_by_connection.get(key, ())
            users = sum(1 for b in bodies if runtime.allows(b["metadata"]["namespace"]))
            metrics.COLLECTIONS_MANAGED.labels(key).set(users)
            await _write(body, logic.verdict(report), logic.status_fields(report, users),
                         reconciled=report.health.value != "Unknown")
            if report.health.value != "Unknown":
                RUNTIME.first_probe(key).set()
            if now >= next_sweep and runtime.not_ready() is None and (sweeping is None or sweeping.done()):
                # In its own task, so a long sweep never delays this loop's status (breaker, health) writes.
                next_sweep = now + RUNTIME.settings.resync_interval_seconds
                sweep = collection.sweep(list(bodies), kwargs["vectorcollection_uids"])
                sweeping = asyncio.create_task(sweep, name=f"sweep:{key}")
            await stopped.wait(TICK_SECONDS)
    finally:
        if sweeping is not None:
            sweeping.cancel()
            await asyncio.gather(sweeping, return_exceptions=True)
        if runtime is not None:
            RUNTIME.connections.pop(key, None)
            RUNTIME.probed.pop(key, None)
            RUNTIME.statuses.pop((PLURAL, body["metadata"]["uid"]), None)
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
        if spec.max_concurrent_operations != runtime.spec.max_concurrent_operations:
            # Only on a real change: operations holding the old semaphore would otherwise run beside new ones.
            runtime.operations = asyncio.Semaphore(spec.max_concurrent_operations)
        runtime.spec = spec
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
