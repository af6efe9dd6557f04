"""CollectionSnapshot: one-off or scheduled backups of one VectorCollection."""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field, model_validator

from .base import PREFIX, DeletionPolicy, LocalObjectRef, StatusBase, StatusModel, WireModel, cel
from .objectstore import ObjectStoreTarget

# On a VectorCollection: `<snapshotResource>/<snapshotName>` asks for one in-place restore.
RESTORE_FROM = f"{PREFIX}restore-from"

# Five cron fields, or a macro such as @daily. Full validation happens in the operator (Stalled).
CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"
SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(size: int) -> str:
    """1536 -> "1.5 KiB": binary units, one decimal, as the Size column shows a total."""
    value, unit = float(size), 0
    while value >= 1024 and unit < len(SIZE_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{size} B" if unit == 0 else f"{value:.1f} {SIZE_UNITS[unit]}"


class Retention(WireModel):
    """Which of the snapshots this resource took are deleted; the newest is always kept."""

    keep_last: int | None = Field(None, ge=1, le=10000, description="Keep this many newest snapshots.")
    max_age_hours: int | None = Field(None, ge=1, description="Delete snapshots older than this.")


class Verify(WireModel):
    """When to drill: restore the newest snapshot into a scratch collection on the same connection, compare it
    with what the snapshot recorded (point count, a sample of points), delete the scratch collection."""

    schedule: str = Field(
        pattern=CRON_PATTERN, description='Cron, e.g. "0 5 * * *" (UTC), like spec.schedule; one drill per slot.'
    )


class CollectionSnapshotSpec(WireModel):
    """What to snapshot, when, and how long to keep the snapshots."""

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
    retention: Retention | None = Field(None, description="Deletes old snapshots; needs a schedule.")
    deletion_policy: DeletionPolicy = Field(
        DeletionPolicy.RETAIN, description="Delete removes the snapshot files from Qdrant with the resource."
    )
    object_store: ObjectStoreTarget | None = Field(
        None,
        description="Keep the snapshots in object storage: each file is streamed there (sha256 computed on the "
        "way) and deleted from the node. Left out: the files stay on the Qdrant node.",
    )
    verify: Verify | None = Field(
        None,
        description="Restore drills: the newest snapshot restored into a scratch collection and compared, on a "
        "schedule; status.lastVerification and the BackupVerified condition say how it went.",
    )


class Phase(StrEnum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"


class PointSample(StatusModel):
    """A fingerprint of the collection's first points by id, read just before and just after the snapshot (and
    kept only when both reads agree): what a restore drill compares the restored points with."""

    points: int = Field(description="How many points it covers (the first ones by id; fewer in a small collection).")
    sha256: str = Field(description="sha256 of those points' ids, payloads and vectors as Qdrant returned them.")


class ShardFile(StatusModel):
    """One shard's snapshot file of a record taken shard by shard (a distributed collection's shards on
    several nodes)."""

    shard: int = Field(description="The shard id.")
    peer: str = Field(description="The peer id of the node that took it; the file is on that node.")
    name: str = Field(description="The shard snapshot's file name on that node.")
    checksum: str | None = Field(
        None,
        description="sha256 of the file (as Qdrant serves it, or as the operator streamed it to object storage); "
        "restores check it.",
    )
    size_bytes: int | None = Field(None, description="Size of the file.")
    location: str | None = Field(
        None,
        description="s3://bucket/key when the file is kept in object storage (no longer on its node); none: on "
        "its node only.",
    )


class SnapshotRecord(StatusModel):
    """One snapshot file in Qdrant."""

    name: str = Field(
        description="The snapshot's file name in Qdrant; taken shard by shard, the name of the set "
        "(<collection>-shards-<UTC time>), whose files are shardFiles."
    )
    created_at: str | None = Field(None, description="When Qdrant took it.")
    size_bytes: int | None = Field(None, description="Size of the file.")
    checksum: str | None = Field(
        None,
        description="sha256 of the file (as Qdrant serves it, or as the operator streamed it to object storage); "
        "restores check it.",
    )
    points_count: int | None = Field(
        None, description="Points in the collection when it was taken (absent if writes raced); restores verify it."
    )
    location: str | None = Field(
        None, description="s3://bucket/key when the file is kept in object storage (no longer on the node)."
    )
    peer: str | None = Field(
        None, description="Distributed Qdrant: the peer id of the node that took it; the file is on that node only."
    )
    shards: list[int] | None = Field(
        None,
        description="Distributed Qdrant: the shard ids it holds, every shard of the collection (a snapshot that "
        "would miss one is refused, never recorded).",
    )
    shard_files: list[ShardFile] | None = Field(
        None,
        description="Distributed Qdrant with several endpoints: one shard snapshot per shard, each taken on a node "
        "holding an Active replica of it (name, checksum and size are then those of the shard files).",
    )
    sample: PointSample | None = Field(
        None, description="The first points by id when it was taken (absent if writes raced); drills compare them."
    )


class VerificationResult(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Verification(StatusModel):
    """The last restore drill (spec.verify)."""

    snapshot: str = Field(description="The snapshot it restored (the newest when it ran).")
    result: VerificationResult = Field(description="Succeeded or Failed.")
    message: str = Field("", description="What was compared, or what went wrong.")
    time: str = Field(description="When it finished (UTC).")
    points_count: int | None = Field(None, description="Points in the scratch collection after the restore.")
    sampled_points: int | None = Field(None, description="Points compared one by one (ids, payloads, vectors).")


class CollectionSnapshotStatus(StatusBase):
    phase: Phase | None = Field(
        None,
        description="Pending, InProgress (a snapshot is being taken), Completed (one-off done, or scheduled "
        "and waiting) or Failed (retried).",
    )
    collection_name: str | None = Field(None, description="The Qdrant collection the snapshots were taken of.")
    connection: str | None = Field(None, description="namespace/name of the QdrantConnection they live on.")
    snapshots: list[SnapshotRecord] = Field(default_factory=list, description="The snapshots this resource took.")
    last_snapshot_time: str | None = Field(None, description="When the newest snapshot was taken.")
    next_schedule_time: str | None = Field(None, description="When the next scheduled snapshot is due (UTC).")
    count: int | None = Field(None, description="How many snapshots status.snapshots records (the Snapshots column).")
    total_size: str | None = Field(
        None, description='Their sizeBytes summed, in binary units such as "1.5 GiB" (the Size column).'
    )
    verified_at: str | None = Field(None, description="When a restore drill last succeeded (the Verified column).")
    last_verification: Verification | None = Field(None, description="The last restore drill (spec.verify).")

    @model_validator(mode="after")
    def _totals_follow_snapshots(self) -> CollectionSnapshotStatus:
        """count and totalSize are derived from snapshots wherever a status sets them, never kept by hand."""
        if "snapshots" in self.model_fields_set:
            self.count = len(self.snapshots)
            self.total_size = human_size(sum(record.size_bytes or 0 for record in self.snapshots))
        return self
