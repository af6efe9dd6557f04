"""CollectionSnapshot: one-off or scheduled backups of one VectorCollection."""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field

from .base import PREFIX, DeletionPolicy, LocalObjectRef, StatusBase, StatusModel, WireModel, cel

# On a VectorCollection: `<snapshotResource>/<snapshotName>` asks for one in-place restore.
RESTORE_FROM = f"{PREFIX}restore-from"

# Five cron fields, or a macro such as @daily. Full validation happens in the operator (Stalled).
CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"


class Retention(WireModel):
    keep_last: int | None = Field(None, ge=1, le=10000, description="Keep this many newest snapshots.")
    max_age_hours: int | None = Field(None, ge=1, description="Delete snapshots older than this.")


class CollectionSnapshotSpec(WireModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("!has(self.retention) || has(self.schedule)", "retention needs a schedule", fieldPath=".retention")
            ]
        }
    )

    collection_ref: LocalObjectRef = Field(
        description="A VectorCollection in the same namespace. Immutable.",
        json_schema_extra={"x-kubernetes-validations": [cel("self == oldSelf", "collectionRef is immutable")]},
    )
    schedule: str | None = Field(None, pattern=CRON_PATTERN, description='Cron, e.g. "0 3 * * *"; none = once.')
    retention: Retention | None = None
    deletion_policy: DeletionPolicy = Field(
        DeletionPolicy.RETAIN, description="Delete removes the snapshot files from Qdrant with the resource."
    )


class Phase(StrEnum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"


class SnapshotRecord(StatusModel):
    name: str
    created_at: str | None = None
    size_bytes: int | None = None
    checksum: str | None = None
    points_count: int | None = Field(
        None, description="Points in the collection when it was taken (absent if writes raced); restores verify it."
    )


class CollectionSnapshotStatus(StatusBase):
    phase: Phase | None = None
    collection_name: str | None = Field(None, description="The Qdrant collection the snapshots were taken of.")
    connection: str | None = Field(None, description="namespace/name of the QdrantConnection they live on.")
    snapshots: list[SnapshotRecord] = Field(default_factory=list)
    last_snapshot_time: str | None = None
    next_schedule_time: str | None = None
