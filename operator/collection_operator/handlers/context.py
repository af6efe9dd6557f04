"""Everything the handlers share, in one object handed to them through kopf's memo (`memo.context`):
operator settings, the Kubernetes API, the connection registry, the status cache, restores in flight,
re-index gates and per-resource locks. Made anew by each operator start; nothing lives at module level."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import weakref
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import kopf

from ..api.connection import QdrantConnectionSpec, lists
from ..config import ClientSettings, OperatorSettings, SettingsWatcher
from ..k8s.api import KubeApi, KubeApiError
from ..k8s.peering import PeeringKeeper
from ..objectstore import Store, StoreConfig
from ..qdrant import ConnectionReport, Gateway, QdrantEndpoints, QdrantGateway, Topology
from ..qdrant.adapters import QdrantCollections, QdrantSnapshots
from ..reconcile.connection import verdict as connection_verdict
from ..reconcile.gates import ConnectionGate
from ..reconcile.ports import Credentials, SecretUnavailable, StoredSecret
from ..reconcile.restore import RestoreTracker
from ..reconcile.snapshot import Offsite
from ..redact import SecretValues

log = logging.getLogger(__name__)
MANAGED_BY, OPERATOR = "app.kubernetes.io/managed-by", "qdrant-collection-operator"


@dataclass
class ConnectionRuntime:
    """One QdrantConnection's client, as its daemon built it (the reconcilers' ConnectionPort)."""

    namespace: str
    name: str
    spec: QdrantConnectionSpec
    gateway: Gateway  # QdrantGateway for spec.url, QdrantEndpoints for spec.endpoints
    operations: asyncio.Semaphore  # collection create/update/delete in flight on this connection
    api_key: str | None = None  # as the daemon last read it from the Secret (CollectionAccessKeys sign with it)

    def __post_init__(self) -> None:
        self.collections = QdrantCollections(self.gateway)
        self.snapshots = QdrantSnapshots(self.gateway)

    def allows(self, namespace: str) -> bool:
        return namespace == self.namespace or lists(self.spec.allowed_namespaces, namespace)

    @property
    def report(self) -> ConnectionReport:
        return self.gateway.report

    @property
    def topology(self) -> Topology | None:
        return self.gateway.report.topology

    @property
    def jwt_rbac(self) -> bool | None:
        return self.gateway.report.jwt_rbac

    @property
    def in_place_vectors(self) -> bool:
        return self.gateway.report.in_place_vectors

    def not_ready(self) -> str | None:
        verdict = connection_verdict(self.gateway.report)
        return None if verdict.ready else f"{verdict.reason}: {verdict.message}"


@dataclass
class ConnectionRegistry:
    """The running connections by "namespace/name" (the reconcilers' ConnectionsPort). A daemon registers
    its key while it runs, connected or not; `declared` is kopf's live index of the QdrantConnections that
    exist, filled before any handler runs, so a reconcile at operator start knows a daemon is coming."""

    running: dict[str, ConnectionRuntime] = field(default_factory=dict)
    daemons: set[str] = field(default_factory=set)
    probed: dict[str, asyncio.Event] = field(default_factory=dict)
    declared: Container[str] = field(default_factory=frozenset)

    def get(self, key: str) -> ConnectionRuntime | None:
        return self.running.get(key)

    def exists(self, key: str) -> bool:
        return key in self.daemons or key in self.declared

    def first_probe(self, key: str) -> asyncio.Event:
        """Set once the connection's client has its first health verdict."""
        return self.probed.setdefault(key, asyncio.Event())

    async def settled(self, key: str, within: float) -> None:
        # Collections reconciled at operator start wait for their connection's first probe instead of
        # writing ConnectionNotReady (status, Event, retry) only to be Ready again ten seconds later.
        if self.exists(key) and not self.first_probe(key).is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.first_probe(key).wait(), within)

    async def apply(
        self,
        key: str,
        namespace: str,
        name: str,
        spec: QdrantConnectionSpec,
        settings: ClientSettings,
        credentials: Credentials,
    ) -> ConnectionRuntime:
        """Build the client, or change the running one in place so its breaker and metrics carry on."""
        verify = not (spec.tls and spec.tls.insecure_skip_verify)
        runtime = self.running.get(key)
        if runtime is not None and runtime.spec.targets == spec.targets:
            await runtime.gateway.update_settings(settings)
            await runtime.gateway.update_credentials(credentials.api_key, credentials.ca_pem, verify)
            if spec.max_concurrent_operations != runtime.spec.max_concurrent_operations:
                # Only on a real change: operations holding the old semaphore would otherwise run beside new ones.
                runtime.operations = asyncio.Semaphore(spec.max_concurrent_operations)
            runtime.spec = spec
            runtime.api_key = credentials.api_key
            return runtime
        if runtime is not None:
            await runtime.gateway.aclose()
        auth: dict[str, Any] = {"api_key": credentials.api_key, "ca_pem": credentials.ca_pem, "verify": verify}
        gateway: Gateway = (
            QdrantEndpoints(spec.endpoints, settings, name=key, **auth)
            if spec.endpoints is not None
            else QdrantGateway(spec.primary_url, settings, name=key, **auth)
        )
        gateway.start()
        runtime = ConnectionRuntime(
            namespace, name, spec, gateway, asyncio.Semaphore(spec.max_concurrent_operations), credentials.api_key
        )
        self.running[key] = runtime
        log.info("connection %s: client for %s started", key, ", ".join(spec.targets))
        return runtime

    async def close(self, key: str) -> None:
        self.daemons.discard(key)
        self.probed.pop(key, None)
        if (runtime := self.running.pop(key, None)) is not None:
            await runtime.gateway.aclose()


@dataclass
class StatusCache:
    """The status the operator last wrote, per (plural, uid). A body handed to a reconcile can predate our
    own latest write (a drift sweep reads kopf's index); deciding on it would repeat work."""

    written: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def current(self, plural: str, body: Mapping[str, Any]) -> dict[str, Any]:
        known = self.written.get((plural, body["metadata"]["uid"]))
        return dict(known if known is not None else body.get("status") or {})

    def remember(self, plural: str, uid: str, status: dict[str, Any]) -> None:
        self.written[(plural, uid)] = status

    def forget(self, plural: str, uid: str) -> None:
        self.written.pop((plural, uid), None)

    def keep_only(self, plural: str, alive: Container[str]) -> None:
        for key in [k for k in self.written if k[0] == plural and k[1] not in alive]:
            del self.written[key]


EventPoster = Callable[[Mapping[str, Any], str, str, str], None]


@dataclass(frozen=True)
class KubeSecrets:
    """The SecretsPort and the KeySecretsPort over the Kubernetes API: an API server that refuses or does not
    answer is SecretUnavailable, which the loops retry (any other error is a bug, and not retried). The tokens
    in CollectionAccessKeys' Secrets are masked by their shape (redact.py), not remembered one by one."""

    kube: KubeApi

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        try:
            return await self.kube.read_secret_key(namespace, name, key)
        except KubeApiError as exc:
            raise SecretUnavailable(str(exc)) from exc

    async def get_secret(self, namespace: str, name: str) -> StoredSecret | None:
        try:
            secret = await self.kube.get_secret(namespace, name)
        except KubeApiError as exc:
            raise SecretUnavailable(str(exc)) from exc
        if secret is None:
            return None
        owners = tuple(ref.get("uid", "") for ref in secret["metadata"].get("ownerReferences") or [])
        data = {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}
        return StoredSecret(owners, data)

    async def put_secret(
        self, namespace: str, name: str, data: dict[str, str], owner: dict[str, Any], exists: bool
    ) -> None:
        try:
            if exists:
                await self.kube.patch_secret(namespace, name, {"stringData": data})
            else:
                meta = {"name": name, "labels": {MANAGED_BY: OPERATOR}, "ownerReferences": [owner]}
                secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta, "stringData": data}
                await self.kube.create_secret(namespace, secret)
        except KubeApiError as exc:
            raise SecretUnavailable(str(exc)) from exc


def kopf_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """Queued to kopf's poster (it needs apiVersion, kind and metadata of the object)."""
    kopf.event(cast(kopf.Body, body), type=type_, reason=reason, message=message)


@dataclass
class Context:
    settings: OperatorSettings
    kube: KubeApi
    secrets: SecretValues  # masked in every status message and Event (and log line, by logs.install)
    settings_path: Path | None = None  # `run --settings`, else QDRANT_OPERATOR_SETTINGS_FILE; watched for changes
    connections: ConnectionRegistry = field(default_factory=ConnectionRegistry)
    statuses: StatusCache = field(default_factory=StatusCache)
    restores: RestoreTracker = field(default_factory=RestoreTracker)
    gates: dict[str, ConnectionGate] = field(default_factory=dict)  # one re-index at a time per connection
    watcher: SettingsWatcher | None = None
    peering: PeeringKeeper | None = None  # with a peering name: makes sure kopf's peering objects exist
    poster: EventPoster = kopf_event
    # One reconcile per resource at a time: a spec change and a drift sweep never interleave. Weak values:
    # a lock lives while someone holds or waits for it, so the map never outgrows the work in flight.
    _locks: weakref.WeakValueDictionary[str, asyncio.Lock] = field(default_factory=weakref.WeakValueDictionary)
    _handling: int = 0  # handler reconciles (new and changed objects) in flight
    _quiet: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._quiet.set()

    @contextlib.contextmanager
    def handling(self) -> Iterator[None]:
        """Marks a handler's reconcile, which drift sweeps let go first (see `quiet`)."""
        self._handling += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._handling -= 1
            if not self._handling:
                self._quiet.set()

    async def quiet(self, within: float) -> None:
        """A sweep waits, before each resource, until no handler reconcile runs: new and changed objects go
        before routine re-checks. At most `within` seconds, so a steady stream of changes never stops sweeps."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._quiet.wait(), within)

    def open_store(self, config: StoreConfig) -> Store:
        """An object store under the address policy in force now (the endpoint is user-supplied)."""
        return Store(config, self.settings.address_policy)

    @property
    def offsite(self) -> Offsite:
        return Offsite(KubeSecrets(self.kube), self.open_store)

    def post_event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.poster(body, type_, reason, self.secrets.scrub(message))

    def internal_entries(self, loop: asyncio.AbstractEventLoop) -> dict[str, Callable[[], int]]:
        """What the operator holds in memory, for the qdrant_operator_internal_entries gauge (a soak's leak check)."""
        return {
            "asyncio_tasks": lambda: len(asyncio.all_tasks(loop)),
            "resource_locks": lambda: len(self._locks),
            "status_cache": lambda: len(self.statuses.written),
            "reindex_gates": lambda: len(self.gates),
            "restores": lambda: len(self.restores.running) + len(self.restores.failures),
            "connections": lambda: len(self.connections.running),
        }

    def lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def aclose(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()
        if self.peering is not None:
            await self.peering.stop()
        await self.restores.aclose()
        for key in list(self.connections.running):
            await self.connections.close(key)
        await self.kube.close()
