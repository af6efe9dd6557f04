"""Snapshots kept in object storage (spec.objectStore) and restores from it, through the fake ports and obstore's
MemoryStore: what is recorded, what is deleted where, what Stalls, and that a presigned URL never shows. The real
S3 server and real Qdrant: tests/integration/test_objectstore_snapshots.py."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from collection_operator.api.collection import VectorCollectionSpec
from collection_operator.objectstore import ObjectStoreError, StoreConfig
from collection_operator.reconcile import restore
from collection_operator.reconcile import snapshot as logic
from collection_operator.reconcile.outcome import State
from collection_operator.reconcile.snapshot_step import SnapshotRun, delete_files, delete_objects
from collection_operator.reconcile.target import Target
from tests.builders import collection_spec
from tests.fakes import FakeConnection, FakeConnections, FakeObjectStores, FakeSecrets, FakeStore

SECRET = b"s3-secret-access-key-value"
STORE = {"bucket": "backups", "prefix": "qdrant/prod", "credentialsSecretRef": {"name": "s3"}}
CREDS = {"name": "s3"}
SPEC = {"collectionRef": {"name": "docs"}, "objectStore": STORE}
VC = {"status": {"collectionName": "src", "connection": "ns/main", "appliedGeneration": 1}}


def secrets() -> FakeSecrets:
    return FakeSecrets({("ns", "s3", "access-key-id"): b"AKID", ("ns", "s3", "secret-access-key"): SECRET})


class World:
    def __init__(self, checksums: str = "real") -> None:
        self.main = FakeConnection()
        self.main.snapshots.points["src"] = 7
        self.main.snapshots.checksums = checksums
        self.stores = FakeObjectStores()
        self.secrets = secrets()
        self.offsite = logic.Offsite(self.secrets, self.stores.open)
        self.run = SnapshotRun("ns", "nightly", "uid-n", "2030-01-01T00:00:00Z", {})

    async def step(self, spec: dict[str, Any] = SPEC, now: str = "2030-01-01T00:00:01Z") -> Any:
        async def report(_: Any) -> None:
            return None

        return await self.run.step(
            spec, logic.parse_time(now), lambda _: VC, FakeConnections({"ns/main": self.main}), report, (), self.offsite
        )


async def test_a_snapshot_is_streamed_to_the_bucket_and_leaves_the_node():
    world = World()
    step = await world.step()
    assert step.outcome.verdict.reason == "Completed", step.outcome.verdict
    [record] = world.run.records
    key = f"qdrant/prod/ns/nightly/src/{record.name}"
    assert record.location == f"s3://backups/{key}" and world.stores.keys("backups") == [key]
    data = b"src-0.snapshot:7;" * 4000
    assert (record.checksum, record.size_bytes, record.points_count) == (hashlib.sha256(data).hexdigest(), len(data), 7)
    assert world.main.snapshots.files == {}, "the node's copy is deleted once the object is complete"
    assert [c.secret_access_key for c in world.stores.opened] == [SECRET.decode()]


async def test_qdrant_s_own_s3_mode_gets_the_operator_s_checksum():
    """Qdrant with snapshots_storage s3 answers no checksum: the streamed sha256 is recorded, node or bucket."""
    world = World(checksums="none")
    await world.step()
    assert world.run.records[-1].checksum == hashlib.sha256(b"src-0.snapshot:7;" * 4000).hexdigest()
    plain = World(checksums="none")
    await plain.step({"collectionRef": {"name": "docs"}})
    [record] = plain.run.records
    assert record.location is None and record.checksum == hashlib.sha256(b"src-0.snapshot:7;" * 4000).hexdigest()
    assert record.name in plain.main.snapshots.files, "without spec.objectStore the file stays on the node"


async def test_a_file_that_differs_from_what_qdrant_wrote_is_never_kept():
    world = World(checksums="fixed")  # Qdrant says "abc": the streamed bytes cannot match it
    step = await world.step()
    assert (step.outcome.verdict.state, step.outcome.verdict.reason) == (State.FAILED, "SnapshotChecksumMismatch")
    assert "retrying in 5s" in step.outcome.verdict.message
    assert world.run.records == [] and world.stores.keys("backups") == [] and world.main.snapshots.files == {}


async def test_a_download_cut_off_mid_way_records_nothing_and_is_retried_with_backoff():
    world = World()
    world.main.snapshots.download_fails_after = 2
    first = await world.step()
    assert first.outcome.verdict.state == State.FAILED and "connection broke" in first.outcome.verdict.message
    assert world.run.records == [] and world.stores.keys("backups") == [] and world.main.snapshots.files == {}
    second = await world.step()
    assert second.delay > first.delay, "backoff grows"
    world.main.snapshots.download_fails_after = None
    assert (await world.step()).outcome.verdict.reason == "Completed" and len(world.run.records) == 1


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (ObjectStoreError("ObjectStoreCredentialsRejected", "bucket backups refused the credentials"), State.STALLED),
        (ObjectStoreError("ObjectStoreBucketNotFound", "bucket backups does not exist"), State.STALLED),
        (ObjectStoreError("ObjectStoreUnavailable", "bucket backups did not answer", retryable=True), State.FAILED),
    ],
)
async def test_a_store_that_refuses_is_found_before_qdrant_writes_anything(monkeypatch, error, state):
    async def refuse(self: FakeStore) -> None:
        raise error

    monkeypatch.setattr(FakeStore, "check", refuse)
    world = World()
    step = await world.step()
    assert (step.outcome.verdict.state, step.outcome.verdict.reason) == (state, error.reason)
    assert str(error) in step.outcome.verdict.message
    assert world.main.snapshots.calls == [] and world.run.records == []


async def test_a_missing_secret_stalls_naming_it_and_its_keys():
    world = World()
    world.secrets.data.clear()
    step = await world.step()
    verdict = step.outcome.verdict
    assert (verdict.state, verdict.reason) == (State.STALLED, "SecretNotFound")
    assert "ns/s3" in verdict.message and "access-key-id" in verdict.message and "secret-access-key" in verdict.message
    assert world.main.snapshots.calls == []


async def test_the_credentials_are_read_at_each_use():
    world = World()
    await world.step({**SPEC, "schedule": "@hourly"}, now="2030-01-01T01:00:01Z")
    world.secrets.data[("ns", "s3", "secret-access-key")] = b"rotated-secret-value"
    await world.step({**SPEC, "schedule": "@hourly"}, now="2030-01-01T02:00:01Z")
    assert [c.secret_access_key for c in world.stores.opened] == [SECRET.decode(), "rotated-secret-value"]
    assert len(world.run.records) == 2


async def test_retention_and_delete_remove_exactly_the_recorded_objects():
    world = World()
    spec = {**SPEC, "schedule": "@hourly", "retention": {"keepLast": 1}}
    foreign = "qdrant/prod/ns/nightly/src/not-ours.snapshot"
    await world.stores.open(StoreConfig("backups", "", None, "r", "a", "s")).upload(foreign, _chunks(b"x"))
    await world.step(spec, now="2030-01-01T01:00:01Z")
    first = world.run.records[0]
    await world.step(spec, now="2030-01-01T02:00:01Z")
    [kept] = world.run.records
    assert kept.name != first.name
    assert world.stores.keys("backups") == sorted([foreign, kept.location.removeprefix("s3://backups/")])  # type: ignore[union-attr]
    status = {"connection": "ns/main", "collectionName": "src", "snapshots": [kept.to_wire()]}
    assert (await delete_files(status, FakeConnections({}))) == ("src", []), "no node file, no Qdrant call"
    assert await delete_objects(status, SPEC, "ns", world.offsite) == [kept.location]
    assert world.stores.keys("backups") == [foreign]


async def _chunks(data: bytes) -> Any:
    yield data


def _restore_args(world: World, spec: VectorCollectionSpec, body: dict[str, Any] | None) -> tuple[Any, ...]:
    req = Target("ns", "copy", "uid-copy", 1, {"connectionRef": {"name": "main"}})
    return req, spec, "copy", world.main, restore.RestoreTracker(), FakeConnections({}), world.secrets, lambda _: body


async def _finish(args: tuple[Any, ...], offsite: logic.Offsite) -> tuple[Any, Any]:
    tracker = args[4]
    first, _ = await restore.restore_step(*args, offsite)
    await tracker.running[args[0].key].task
    return first, await restore.restore_step(*args, offsite)


async def test_a_record_in_object_storage_restores_from_a_presigned_url_without_api_key():
    world = World()
    await world.step()
    [record] = world.run.records
    world.main.snapshots.snapshots[record.name] = 7  # the fake Qdrant recovers by file name
    body = {
        "spec": SPEC,
        "status": {"collectionName": "src", "connection": "gone/conn", "snapshots": [record.to_wire()]},
    }
    spec = VectorCollectionSpec.model_validate(
        collection_spec(source={"snapshot": {"snapshotRef": {"name": "nightly"}}})
    )
    first, (done, restored) = await _finish(_restore_args(world, spec, body), world.offsite)
    assert first is not None and "SIGNATURE" not in first.verdict.message
    assert done is None and restored == f"nightly/{record.name}"
    assert f"recover copy {record.name} {record.checksum} None" in world.main.snapshots.calls
    assert world.stores.opened[-1].bucket == "backups" and world.stores.opened[-1].prefix == ""


async def test_a_file_no_collectionsnapshot_knows_restores_with_its_checksum():
    world = World()
    world.main.snapshots.snapshots["old.snapshot"] = 5
    source = {"bucket": "dr-site", "key": "x/old.snapshot", "checksum": "a" * 64, "credentialsSecretRef": CREDS}
    spec = VectorCollectionSpec.model_validate(collection_spec(source={"objectStore": source}))
    first, (done, restored) = await _finish(_restore_args(world, spec, None), world.offsite)
    assert first is not None and first.verdict.reason == "Restoring" and "SIGNATURE" not in first.verdict.message
    assert done is None and restored == "s3://dr-site/x/old.snapshot"
    assert f"recover copy old.snapshot {'a' * 64} None" in world.main.snapshots.calls


def test_source_takes_exactly_one_of_snapshot_and_object_store():
    source = {"bucket": "dr-site", "key": "k", "checksum": "a" * 64, "credentialsSecretRef": {"name": "s3"}}
    for bad in ({}, {"objectStore": source, "snapshot": {"snapshotRef": {"name": "n"}}}):
        with pytest.raises(ValueError, match="exactly one of snapshot, objectStore"):
            VectorCollectionSpec.model_validate(collection_spec(source=bad))
    with pytest.raises(ValueError, match="checksum"):
        VectorCollectionSpec.model_validate(collection_spec(source={"objectStore": {**source, "checksum": "abc"}}))
