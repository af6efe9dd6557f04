"""Names and printer columns of the three kinds, next to their models."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from .collection import VectorCollectionSpec, VectorCollectionStatus
from .connection import QdrantConnectionSpec, QdrantConnectionStatus
from .snapshot import CollectionSnapshotSpec, CollectionSnapshotStatus

READY = '.status.conditions[?(@.type=="Ready")].status'


@dataclass(frozen=True)
class Column:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0


AGE = Column("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[Column, ...]
    description: str

    @property
    def singular(self) -> str:
        return self.kind.lower()


KINDS = (
    Kind(
        "QdrantConnection",
        "qdrantconnections",
        ("qconn",),
        QdrantConnectionSpec,
        QdrantConnectionStatus,
        (
            Column("URL", ".spec.url"),
            Column("Environment", ".spec.environment"),
            Column("Health", ".status.health"),
            Column("Version", ".status.serverVersion"),
            Column("Ready", READY),
            AGE,
        ),
        "How to reach one Qdrant deployment, and the pooled, health-monitored client behind it.",
    ),
    Kind(
        "VectorCollection",
        "vectorcollections",
        ("vcol", "vc"),
        VectorCollectionSpec,
        VectorCollectionStatus,
        (
            Column("Collection", ".status.collectionName"),
            Column("Connection", ".spec.connectionRef.name"),
            Column("Ready", READY),
            Column("Status", ".status.qdrantStatus"),
            Column("Points", ".status.pointsCount", "integer"),
            AGE,
        ),
        "One Qdrant collection, declared: created, updated in place, kept free of drift.",
    ),
    Kind(
        "CollectionSnapshot",
        "collectionsnapshots",
        ("vsnap",),
        CollectionSnapshotSpec,
        CollectionSnapshotStatus,
        (
            Column("Collection", ".spec.collectionRef.name"),
            Column("Schedule", ".spec.schedule"),
            Column("Last", ".status.lastSnapshotTime", "date"),
            Column("Phase", ".status.phase"),
            AGE,
        ),
        "One-off or scheduled snapshots of a VectorCollection, with retention.",
    ),
)
