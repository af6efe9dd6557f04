"""Process-wide state the handlers share: operator settings, the Kubernetes client, and one
ConnectionRuntime per QdrantConnection (owned by that connection's daemon)."""

from __future__ import annotations

import asyncio
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api.connection import QdrantConnectionSpec
from ..config import OperatorSettings
from ..k8s.api import KubeApi
from ..qdrant import QdrantGateway
from ..reconcile.collection_sync import ReindexGate
from ..reconcile.connection import verdict as connection_verdict
from ..reconcile.gateway import QdrantCollections


@dataclass
class ConnectionRuntime:
    namespace: str
    name: str
    spec: QdrantConnectionSpec
    gateway: QdrantGateway
    collections: QdrantCollections
    operations: asyncio.Semaphore  # collection create/update/delete in flight on this connection
    gate: ReindexGate = field(default_factory=ReindexGate)

    def allows(self, namespace: str) -> bool:
        allowed = self.spec.allowed_namespaces
        return namespace == self.namespace or "*" in allowed or namespace in allowed

    def not_ready(self) -> str | None:
        """Why collections must not call Qdrant now, or None when they may: the connection's own verdict."""
        verdict = connection_verdict(self.gateway.report)
        return None if verdict.ready else f"{verdict.reason}: {verdict.message}"


@dataclass
class Runtime:
    settings: OperatorSettings = field(default_factory=OperatorSettings)
    settings_path: Path | None = None  # `run --settings`, else QDRANT_OPERATOR_SETTINGS_FILE; watched for changes
    kube: KubeApi | None = None
    connections: dict[str, ConnectionRuntime] = field(default_factory=dict)
    # One reconcile per resource at a time: a spec change and a drift sweep never interleave.
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def lock(self, key: str) -> asyncio.Lock:
        return self.locks.setdefault(key, asyncio.Lock())

    def connection_problem(self, key: str) -> str | None:
        """Why resources using connection `key` must not call Qdrant now, or None when they may."""
        runtime = self.connections.get(key)
        if runtime is None:
            return f"QdrantConnection {key} is not connected"
        why = runtime.not_ready()
        return None if why is None else f"QdrantConnection {key}: {why}"

    # The status the operator last wrote, per (plural, uid). A body handed to a reconcile can predate
    # our own latest write (a drift sweep reads kopf's index); deciding on it would repeat work.
    statuses: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def status_of(self, plural: str, body: Mapping[str, Any]) -> dict[str, Any]:
        known = self.statuses.get((plural, body["metadata"]["uid"]))
        return dict(known if known is not None else body.get("status") or {})

    def forget_statuses(self, plural: str, alive: Container[str]) -> None:
        for key in [k for k in self.statuses if k[0] == plural and k[1] not in alive]:
            del self.statuses[key]

    # Set once a connection's client has its first health verdict, so that collections reconciled at
    # operator start wait for it briefly instead of flapping to ConnectionNotReady.
    probed: dict[str, asyncio.Event] = field(default_factory=dict)

    def first_probe(self, key: str) -> asyncio.Event:
        return self.probed.setdefault(key, asyncio.Event())

    @property
    def api(self) -> KubeApi:
        assert self.kube is not None, "the operator's startup handler connects to Kubernetes first"
        return self.kube


RUNTIME = Runtime()
