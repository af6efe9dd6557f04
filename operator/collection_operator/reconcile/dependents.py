"""What keeps a deleted QdrantConnection: the resources that still need it to delete their data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..api.kinds import COLLECTION_SNAPSHOT, VECTOR_COLLECTION
from . import reasons
from .collection_step import deletes_collection
from .outcome import State, Verdict
from .snapshot_step import deletes_files

Dependent = tuple[str, str, str]  # (plural, namespace, name)
KINDS = {k.plural: k.kind for k in (VECTOR_COLLECTION, COLLECTION_SNAPSHOT)}


def dependents(
    key: str, collections: Iterable[Mapping[str, Any]], snapshots: Iterable[Mapping[str, Any]]
) -> list[Dependent]:
    """Resources that still need connection `key` to delete their data in Qdrant: Delete-policy
    VectorCollections using it and Delete-policy CollectionSnapshots holding files on it. The connection
    is not released before they are gone (a namespace deletion removes them all at once)."""

    def ref(plural: str, body: Mapping[str, Any]) -> Dependent:
        return plural, body["metadata"]["namespace"], body["metadata"]["name"]

    out = [
        ref(VECTOR_COLLECTION.plural, b)
        for b in collections
        if deletes_collection(b.get("spec") or {}, b["metadata"].get("annotations") or {}, b.get("status") or {})
    ]
    out += [
        ref(COLLECTION_SNAPSHOT.plural, b)
        for b in snapshots
        if (b.get("status") or {}).get("connection") == key and deletes_files(b.get("spec") or {}, b["status"])
    ]
    return sorted(out)


def waiting_for(waiting: list[Dependent]) -> Verdict:
    names = [f"{KINDS[plural]} {namespace}/{name}" for plural, namespace, name in waiting]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return Verdict(
        State.RECONCILING,
        reasons.WAITING_FOR_DEPENDENTS,
        f"deletion waits until {len(names)} resource(s) that delete data in Qdrant through this "
        f"connection are gone: {shown}",
    )
