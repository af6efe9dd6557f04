"""May a resource call Qdrant through its connection now? One check for collections, snapshots and
deletes."""

from __future__ import annotations

from . import reasons
from .outcome import Stalling, Waiting
from .ports import ConnectionPort, ConnectionsPort


def usable(connections: ConnectionsPort, key: str, namespace: str | None = None) -> ConnectionPort:
    """The connection `key`, ready for calls from `namespace` (None: any); Stalling or Waiting otherwise."""
    runtime = connections.get(key)
    if runtime is not None and namespace is not None and not runtime.allows(namespace):
        raise Stalling(
            reasons.CONNECTION_NOT_ALLOWED,
            f"QdrantConnection {key} does not list namespace {namespace} in allowedNamespaces",
        )
    if runtime is None:
        why = "is not connected yet" if connections.exists(key) else "not found (or not seen by the operator yet)"
        problem = f"QdrantConnection {key} {why}"
    elif (not_ready := runtime.not_ready()) is not None:
        problem = f"QdrantConnection {key}: {not_ready}"
    else:
        return runtime
    raise Waiting(reasons.CONNECTION_NOT_READY, problem)
