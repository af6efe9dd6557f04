"""Names and printer columns of the four kinds, next to their models."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from .accesskey import CollectionAccessKeySpec, CollectionAccessKeyStatus
from .collection import VectorCollectionSpec, VectorCollectionStatus
from .connection import QdrantConnectionSpec, QdrantConnectionStatus
from .snapshot import CollectionSnapshotSpec, CollectionSnapshotStatus

READY = '.status.conditions[?(@.type=="Ready")].status'
REASON = '.status.conditions[?(@.type=="Ready")].reason'
MESSAGE = '.status.conditions[?(@.type=="Ready")].message'


@dataclass(frozen=True)
class Column:
    """A `kubectl get` column; priority 1 columns show only with `-o wide`."""

    name: str
    json_path: str
    type: str = "string"
    priority: int = 0


AGE = Column("Age", ".metadata.creationTimestamp", "date")
# Ready's reason beside Ready: a Stalled resource reads "False ImmutableFieldChanged", never as fine.
READY_COLUMNS = (Column("Ready", READY), Column("Reason", REASON))
# What Ready's reason means here ("plan 4b1e... waits for approval", "Qdrant 1.19.0"), last in the wide view.
WIDE_MESSAGE = Column("Message", MESSAGE, priority=1)


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
            # Written by the operator: spec.url, or the first of spec.endpoints and how many more.
            Column("URL", ".status.url"),
            Column("Environment", ".spec.environment"),
            Column("Health", ".status.health"),
            Column("Version", ".status.serverVersion"),
            *READY_COLUMNS,
            AGE,
            Column("Breaker", ".status.circuitBreaker", priority=1),
            Column("Peers", ".status.peers", "integer", priority=1),
            Column("Endpoints", ".spec.endpoints", priority=1),
            Column("Collections", ".status.collections", "integer", priority=1),
            WIDE_MESSAGE,
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
            *READY_COLUMNS,
            Column("Points", ".status.pointsCount", "integer"),
            # Only while a plan waits or is applied step by step: empty once applied, so it stands out.
            Column("Plan", ".status.pendingPlan"),
            AGE,
            Column("Plan-Hash", ".status.plan.hash", priority=1),
            Column("Physical", ".status.physicalCollection", priority=1),
            # Qdrant's own colour only in the wide view: "green" beside a Stalled resource read as all fine.
            Column("Qdrant", ".status.qdrantStatus", priority=1),
            Column("Indexed", ".status.indexedVectorsCount", "integer", priority=1),
            Column("Segments", ".status.segmentsCount", "integer", priority=1),
            Column("Shards", ".status.shardNumber", "integer", priority=1),
            Column("Replication", ".status.replicationFactor", "integer", priority=1),
            WIDE_MESSAGE,
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
            Column("Snapshots", ".status.count", "integer"),
            Column("Size", ".status.totalSize"),
            *READY_COLUMNS,
            AGE,
            Column("Next", ".status.nextScheduleTime", "date", priority=1),
            Column("Connection", ".status.connection", priority=1),
            Column("Verified", '.status.conditions[?(@.type=="BackupVerified")].status', priority=1),
            Column("Verified-At", ".status.verifiedAt", "date", priority=1),
            WIDE_MESSAGE,
        ),
        "One-off or scheduled snapshots of a VectorCollection, with retention.",
    ),
    Kind(
        "CollectionAccessKey",
        "collectionaccesskeys",
        ("vkey",),
        CollectionAccessKeySpec,
        CollectionAccessKeyStatus,
        (
            *READY_COLUMNS,
            # A string, not a date: kubectl prints a date column in the future as "<invalid>".
            Column("Expires", ".status.expiresAt"),
            AGE,
            Column("Secret", ".spec.secretName", priority=1),
            Column("Connection", ".status.connection", priority=1),
            WIDE_MESSAGE,
        ),
        "A short-lived Qdrant token for applications, scoped to VectorCollections, in a Secret the operator rotates.",
    ),
)
QDRANT_CONNECTION, VECTOR_COLLECTION, COLLECTION_SNAPSHOT, COLLECTION_ACCESS_KEY = KINDS
