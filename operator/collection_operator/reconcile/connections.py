"""May a resource call Qdrant through its connection now? One check for collections, snapshots and
deletes."""

from __future__ import annotations

from .outcome import ReconcileError, State, Verdict
from .ports import ConnectionPort, ConnectionsPort

NOT_READY_RECHECK_SECONDS = 10.0


def usable(connections: ConnectionsPort, key: str, namespace: str | None = None) -> ConnectionPort:
    """The connection `key`, ready for calls from `namespace` (None: any); ReconcileError otherwise."""
    runtime = connections.get(key)
    if runtime is not None and namespace is not None and not runtime.allows(namespace):
        raise ReconcileError(
            Verdict(
                State.STALLED,
                "ConnectionNotAllowed",
                f"QdrantConnection {key} does not list namespace {namespace} in allowedNamespaces",
            )
        )
    if runtime is None:
        why = "is not connected yet" if connections.exists(key) else "not found (or not seen by the operator yet)"
        problem = f"QdrantConnection {key} {why}"
    elif (not_ready := runtime.not_ready()) is not None:
        problem = f"QdrantConnection {key}: {not_ready}"
    else:
        return runtime
    raise ReconcileError(Verdict(State.FAILED, "ConnectionNotReady", problem), NOT_READY_RECHECK_SECONDS)
