"""Restore drills (CollectionSnapshot spec.verify): the newest snapshot recovered into a scratch collection on
the same connection, through the restore a VectorCollection uses, compared with what the snapshot recorded
(point count, sample of points), and the scratch collection deleted whatever happened. The source collection
is never written: what the restored points are compared with was recorded when the snapshot was taken. A record
taken shard by shard is recovered shard by shard into a scratch collection created with its shard number and the
source's vectors as Qdrant reports them (read only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..api.snapshot import Verification, VerificationResult
from ..qdrant.errors import QdrantError
from ..redact import redact_text
from . import mapping, reasons
from . import snapshot as logic
from .outcome import CONNECTION_ERRORS, Aspect
from .ports import ConnectionPort

log = logging.getLogger(__name__)
CONDITION = "BackupVerified"
# Qdrant accepts "~" in a collection name and a VectorCollection's collectionName cannot hold one, so a scratch
# collection never has a name the operator gives a user's collection.
SCRATCH_PREFIX = "~drill-"


def scratch_name(runtime: ConnectionPort, namespace: str, uid: str) -> str:
    """One per CollectionSnapshot (its uid), under the connection's name prefix for the namespace: the next
    drill finds the one a crashed operator left."""
    return runtime.spec.physical_name(namespace, f"{SCRATCH_PREFIX}{uid}")


class DrillFailed(Exception):
    """The snapshot did not pass: `reason` is BackupVerified's."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Drill:
    """One drill's inputs: the snapshot, where the scratch collection goes and whose it is."""

    source: logic.SourceSnapshot
    scratch: str
    marker: str  # the CollectionSnapshot's owner marker, put on the scratch collection
    source_owner: str  # "<namespace>/<name>" of the VectorCollection the snapshot was taken of
    location: str  # where Qdrant recovers the file from (logic.recovery)
    api_key: str | None  # sent to that location: the connection's for a node's file, none for a presigned URL
    reach: logic.ShardReach | None = None  # how the files of a record taken shard by shard are read


def condition(verification: Verification, reason: str) -> Aspect:
    return Aspect(CONDITION, verification.result == VerificationResult.SUCCEEDED, reason, verification.message)


async def run(runtime: ConnectionPort, drill: Drill, now: str) -> tuple[Verification, str]:
    """(the verification, BackupVerified's reason). A failure of the connection itself (down, refused
    credentials) is no verdict on the backup: it is raised, and the drill runs again later."""
    record = drill.source.record
    try:
        counted, sampled = await _restore_and_compare(runtime, drill)
    except DrillFailed as exc:
        return Verification(snapshot=record.name, result=VerificationResult.FAILED, message=str(exc), time=now), (
            exc.reason
        )
    counts = "as recorded" if record.points_count is not None else "(no count recorded: writes raced the snapshot)"
    compared = f"{sampled} sampled points identical" if sampled is not None else "no sample recorded to compare"
    message = f"snapshot {record.name} restored into {drill.scratch}: {counted} points {counts}, {compared}"
    verification = Verification(
        snapshot=record.name,
        result=VerificationResult.SUCCEEDED,
        message=message,
        time=now,
        points_count=counted,
        sampled_points=sampled,
    )
    return verification, reasons.VERIFIED


async def _restore_and_compare(runtime: ConnectionPort, drill: Drill) -> tuple[int | None, int | None]:
    port, record, scratch = runtime.snapshots, drill.source.record, drill.scratch
    await _remove_scratch(runtime, drill)  # left by a drill the operator did not finish
    try:
        target = logic.RestoreTarget(scratch, drill.marker, False, drill.source_owner)
        try:
            if drill.reach is not None:
                await _restore_shards(runtime, drill, target)
            else:
                await logic.restore(port, target, drill.source, drill.location, drill.api_key)
        except logic.RestoreFailed as exc:  # the point count differs, or another made the scratch name meanwhile
            taken = exc.reason == reasons.ALREADY_EXISTS
            raise DrillFailed(reasons.SCRATCH_NAME_TAKEN if taken else exc.reason, str(exc)) from exc
        except QdrantError as exc:
            if isinstance(exc, CONNECTION_ERRORS):
                raise
            # Qdrant's error may quote the location: a presigned URL's signature is masked.
            said = redact_text(str(exc))
            raise DrillFailed(
                reasons.SNAPSHOT_UNRESTORABLE, f"Qdrant could not recover snapshot {record.name}: {said}"
            ) from exc
        counted = await port.count(scratch)
        if record.sample is None:
            return counted, None
        got = await logic.point_sample(port, scratch, record.sample.points)
        if got != record.sample:
            raise DrillFailed(
                reasons.SAMPLE_MISMATCH,
                f"the first {record.sample.points} points of {scratch} restored from snapshot {record.name} differ "
                f"from those it held when it was taken ({got.points} points, sha256 {got.sha256[:12]} instead of "
                f"{record.sample.sha256[:12]})",
            )
        return counted, got.points
    finally:
        try:
            await _remove_scratch(runtime, drill, after=True)
        except QdrantError as exc:  # the next drill removes it first
            log.warning("could not delete the scratch collection %s of a restore drill: %s", scratch, exc)


async def _restore_shards(runtime: ConnectionPort, drill: Drill, target: logic.RestoreTarget) -> None:
    """The scratch collection gets the source's vectors as Qdrant reports them (read, never written) and the
    record's shard number; each shard file is recovered into its shard, as a VectorCollection's restore does."""
    assert drill.reach is not None
    source = drill.source
    info = await runtime.collections.get_collection(source.collection)
    if info is None:
        raise logic.SourceNotReady(
            reasons.COLLECTION_NOT_READY,
            f"snapshot {source.record.name} was taken shard by shard and its drill creates {drill.scratch} with the "
            f"vectors of collection {source.collection}, which does not exist in Qdrant now",
        )
    params = (info.get("config") or {}).get("params") or {}
    create = {
        "vectors": params.get("vectors") or {},
        **({"sparse_vectors": params["sparse_vectors"]} if params.get("sparse_vectors") else {}),
        "metadata": {mapping.OWNER_KEY: drill.marker},
    }
    await logic.restore_shards(
        runtime.snapshots, runtime.collections, target, source, drill.reach, create, runtime.spec.primary_url
    )


async def _remove_scratch(runtime: ConnectionPort, drill: Drill, *, after: bool = False) -> None:
    """A collection under the scratch name goes if it bears this drill's marker, or the source's (a recovery
    that stopped before the marker was set); after the drill also one without a marker (a recovery that failed
    part way: the name was free when the drill began). Any other is left alone: before the drill, it fails."""
    metadata = await runtime.snapshots.metadata(drill.scratch)
    if metadata is None:
        return
    owner = metadata.get(mapping.OWNER_KEY)
    source = owner is not None and owner.rsplit("/", 1)[0] == drill.source_owner
    if not (owner == drill.marker or source or (after and owner is None)):
        if after:  # someone else's, made while the drill ran: not ours to delete
            log.warning("the scratch collection %s bears another owner marker (%s); left alone", drill.scratch, owner)
            return
        raise DrillFailed(
            reasons.SCRATCH_NAME_TAKEN,
            f"collection {drill.scratch} exists in Qdrant and is not this drill's (owner marker {owner or 'none'}); "
            "it was left alone and nothing was restored: delete or rename it",
        )
    if not after:
        log.info("removing the scratch collection %s a previous restore drill left", drill.scratch)
    async with runtime.operations:
        await runtime.snapshots.delete_collection(drill.scratch)
