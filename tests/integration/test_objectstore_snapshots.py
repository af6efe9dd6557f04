"""Snapshots kept in object storage, and restores from it, end to end: the operator in-process, the real API
server, Qdrant of the tier (dev, and the real 1.19), and a real S3 server (SeaweedFS, tests/fixtures/s3.py).
Every claim is checked against what S3 and Qdrant themselves hold."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from contextlib import closing
from typing import Any

import pytest

from collection_operator.objectstore import Store, StoreConfig, parse_location
from tests.fixtures.controlplane import KubectlError
from tests.fixtures.operator import connect, wait_for
from tests.integration.test_snapshot import contents, points, qdrant_snapshots, source_collection

pytestmark = pytest.mark.integration
PLURAL = "collectionsnapshots"
VC = "vectorcollections"


def credentials(cluster: Any, s3: Any, name: str = "s3", secret: str | None = None) -> None:
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        name,
        f"--from-literal=access-key-id={s3.access_key_id}",
        f"--from-literal=secret-access-key={secret or s3.secret_access_key}",
    )


def target(s3: Any, bucket: str, endpoint: str | None = None, secret: str = "s3") -> dict[str, Any]:
    return {
        "bucket": bucket,
        "prefix": "backups",
        "endpoint": endpoint or s3.endpoint,
        "region": s3.region,
        "credentialsSecretRef": {"name": secret},
    }


def objects(s3: Any, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket, read back through the S3 API."""
    store = Store(StoreConfig(bucket, "", s3.endpoint, s3.region, s3.access_key_id, s3.secret_access_key))

    async def read() -> dict[str, bytes]:
        import obstore

        keys = [meta["path"] for batch in obstore.list(store._store) for meta in batch]
        return {key: b"".join([chunk async for chunk in store.download(key)]) for key in keys}

    return asyncio.run(read())


def put_object(s3: Any, bucket: str, key: str, data: bytes) -> None:
    store = Store(StoreConfig(bucket, "", s3.endpoint, s3.region, s3.access_key_id, s3.secret_access_key))

    async def chunks() -> Any:
        yield data

    asyncio.run(store.upload(key, chunks()))


def no_presigned_url_shown(cluster: Any, *names: tuple[str, str]) -> None:
    """The signature of a presigned URL is a credential: never in a status or an Event."""
    events = cluster.kubectl("get", "events", "-o", "json")
    statuses = [str(cluster.get(plural, name).get("status")) for plural, name in names]
    for text in (events, *statuses):
        assert "X-Amz-Signature" not in text and "X-Amz-Credential" not in text, text[:2000]


def test_kept_in_the_bucket_and_restored_into_a_separate_qdrant(
    cluster, connection, qdrant_server, qdrant_factory, s3_server, s3_bucket
):
    collection = source_collection(cluster, qdrant_server)
    before = contents(qdrant_server, collection)
    credentials(cluster, s3_server)
    cluster.apply(
        "CollectionSnapshot",
        "offsite",
        {"collectionRef": {"name": "docs"}, "objectStore": target(s3_server, s3_bucket)},
    )
    status = cluster.wait_condition(PLURAL, "offsite", "Completed", timeout=120)["status"]
    [record] = status["snapshots"]
    key = f"backups/{cluster.namespace}/offsite/{collection}/{record['name']}"
    assert record["location"] == f"s3://{s3_bucket}/{key}" and record["pointsCount"] == 20
    stored = objects(s3_server, s3_bucket)
    assert list(stored) == [key], "exactly the recorded object"
    assert (hashlib.sha256(stored[key]).hexdigest(), len(stored[key])) == (record["checksum"], record["sizeBytes"])
    assert qdrant_snapshots(qdrant_server, collection) == [], "the node's copy is deleted"
    assert s3_server.uploads(s3_bucket) == []

    # Restore from the record, in this Qdrant: a presigned URL and the checksum, no api_key.
    cluster.apply(
        "VectorCollection",
        "copy",
        {
            "connectionRef": {"name": "main"},
            "vectors": [{"size": 384, "distance": "Cosine"}],
            "source": {"snapshot": {"snapshotRef": {"name": "offsite"}}},
        },
    )
    copy = cluster.wait_condition(VC, "copy", "InSync", timeout=120)["status"]
    assert copy["restoredFrom"] == f"offsite/{record['name']}"
    with pytest.raises(KubectlError, match="source is immutable"):
        patch = '{"spec":{"source":{"snapshot":{"snapshotRef":{"name":"offsite"},"snapshotName":"x"}}}}'
        cluster.kubectl("patch", VC, "copy", "--type=merge", "-p", patch)
    assert contents(qdrant_server, copy["collectionName"]) == before

    # Disaster recovery: a second, separate Qdrant and a VectorCollection that knows only the file.
    other = qdrant_factory()
    connect(cluster, other, "dr", "dr-key")
    bucket, object_key = parse_location(record["location"])
    source = {
        "bucket": bucket,
        "key": object_key,
        "endpoint": s3_server.endpoint,
        "region": s3_server.region,
        "credentialsSecretRef": {"name": "s3"},
        "checksum": record["checksum"],
    }
    cluster.apply(
        "VectorCollection",
        "recovered",
        {
            "connectionRef": {"name": "dr"},
            "collectionName": collection,
            "vectors": [{"size": 384, "distance": "Cosine"}],
            "source": {"objectStore": source},
        },
    )
    recovered = cluster.wait_condition(VC, "recovered", "InSync", timeout=120)["status"]
    assert recovered["restoredFrom"] == record["location"]
    assert contents(other, collection) == before, "every point back, payloads and vectors"
    no_presigned_url_shown(cluster, (VC, "copy"), (VC, "recovered"), (PLURAL, "offsite"))

    # deletionPolicy Delete removes exactly the recorded object.
    put_object(s3_server, s3_bucket, "backups/someone-else.snapshot", b"not ours")
    cluster.kubectl("patch", PLURAL, "offsite", "--type=merge", "-p", '{"spec":{"deletionPolicy":"Delete"}}')
    cluster.kubectl("delete", PLURAL, "offsite", "--timeout=60s")
    assert list(objects(s3_server, s3_bucket)) == ["backups/someone-else.snapshot"]


def test_a_corrupted_object_is_refused_and_the_collection_left_as_it_was(
    cluster, connection, qdrant_server, s3_server, s3_bucket
):
    collection = source_collection(cluster, qdrant_server)
    credentials(cluster, s3_server)
    cluster.apply(
        "CollectionSnapshot",
        "offsite",
        {"collectionRef": {"name": "docs"}, "objectStore": target(s3_server, s3_bucket)},
    )
    [record] = cluster.wait_condition(PLURAL, "offsite", "Completed", timeout=120)["status"]["snapshots"]
    with closing(qdrant_server.client()) as client:  # the collection moves on after the snapshot
        client.upsert(collection, points=points(range(20, 25)), wait=True)
    after = contents(qdrant_server, collection)
    _bucket, key = parse_location(record["location"])
    damaged = bytearray(objects(s3_server, s3_bucket)[key])
    damaged[len(damaged) // 2] ^= 0xFF
    put_object(s3_server, s3_bucket, key, bytes(damaged))

    cluster.kubectl("annotate", VC, "docs", f"qdrant.collection-operator.dev/restore-from=offsite/{record['name']}")
    condition = wait_for(
        lambda: (c := cluster.condition(VC, "docs")).get("reason") not in (None, "InSync", "Restoring") and c,
        timeout=120,
        what="the restore of a damaged object to fail",
    )
    assert condition["status"] == "False" and "checksum" in condition["message"].lower(), condition
    assert contents(qdrant_server, collection) == after, "nothing was recovered over the collection"
    no_presigned_url_shown(cluster, (VC, "docs"))


def test_wrong_credentials_a_missing_bucket_or_secret_stall_with_a_readable_reason(
    cluster, connection, qdrant_server, s3_server, s3_bucket
):
    collection = source_collection(cluster, qdrant_server)
    wrong = "wrong-secret-access-key-0123456789"
    credentials(cluster, s3_server, "bad", secret=wrong)
    credentials(cluster, s3_server)
    cases = {
        "badkeys": (
            target(s3_server, s3_bucket, secret="bad"),
            "ObjectStoreCredentialsRejected",
            "refused the credentials",
        ),
        "nobucket": (target(s3_server, "no-such-bucket-here"), "ObjectStoreBucketNotFound", "no-such-bucket-here"),
        "nosecret": (target(s3_server, s3_bucket, secret="absent"), "SecretNotFound", "absent"),
    }
    for name, (store, _, _) in cases.items():
        cluster.apply("CollectionSnapshot", name, {"collectionRef": {"name": "docs"}, "objectStore": store})
    for name, (_, reason, words) in cases.items():
        stalled = cluster.wait_condition(PLURAL, name, reason, type_="Stalled", timeout=60)
        message = cluster.condition(PLURAL, name, "Stalled")["message"]
        assert words in message, message
        assert wrong not in str(stalled) and s3_server.secret_access_key not in str(stalled)
    assert qdrant_snapshots(qdrant_server, collection) == [], "nothing taken while the store refuses"
    assert objects(s3_server, s3_bucket) == {}
    both = {
        "snapshot": {"snapshotRef": {"name": "badkeys"}},
        "objectStore": {"bucket": s3_bucket, "key": "k", "checksum": "0" * 64, "credentialsSecretRef": {"name": "s3"}},
    }
    with pytest.raises(KubectlError, match="exactly one of snapshot, objectStore"):
        cluster.apply(
            "VectorCollection",
            "both",
            {"connectionRef": {"name": "main"}, "vectors": [{"size": 4, "distance": "Cosine"}], "source": both},
        )


class Throttle:
    """A loopback TCP relay to S3 that passes uploads on at about `rate` bytes a second, so a test can stop S3
    while an upload is in flight."""

    def __init__(self, upstream: str, rate: int) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream, self.rate = (host, int(port)), rate
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, slow: bool) -> None:
        with closing(source), closing(sink):
            while True:
                try:
                    data = source.recv(65536)
                    if not data:
                        return
                    sink.sendall(data)
                except OSError:
                    return
                if slow:
                    time.sleep(len(data) / self.rate)

    def close(self) -> None:
        self.stopped = True
        self.server.close()


def test_s3_stopped_mid_upload_is_retried_and_nothing_half_written_remains(
    cluster, connection, qdrant_server, s3_server, s3_bucket
):
    collection = source_collection(cluster, qdrant_server)
    with closing(qdrant_server.client()) as client:  # a few MB, so the throttled upload takes seconds
        for start in range(20, 3020, 500):
            client.upsert(collection, points=points(range(start, start + 500)), wait=True)
    credentials(cluster, s3_server)
    throttle = Throttle(s3_server.endpoint, rate=1_000_000)
    try:
        spec = {"collectionRef": {"name": "docs"}, "objectStore": target(s3_server, s3_bucket, endpoint=throttle.url)}
        cluster.apply("CollectionSnapshot", "offsite", spec)
        wait_for(lambda: s3_server.uploads(s3_bucket), timeout=120, what="a multipart upload in flight")
        s3_server.stop()
        failed = wait_for(
            lambda: (s := cluster.get(PLURAL, "offsite").get("status") or {}).get("phase") == "Failed" and s,
            timeout=120,
            what="the cut-off upload to fail",
        )
        assert failed.get("snapshots", []) == [], "a cut-off upload is never recorded"
        assert qdrant_snapshots(qdrant_server, collection) == [], "the node's copy of the failed attempt is gone"
        message = cluster.condition(PLURAL, "offsite")["message"]
        assert "retrying in" in message and s3_server.secret_access_key not in message, message
        s3_server.start()
        status = cluster.wait_condition(PLURAL, "offsite", "Completed", timeout=180)["status"]
    finally:
        s3_server.start()
        throttle.close()
    [record] = status["snapshots"]
    _bucket, key = parse_location(record["location"])
    stored = objects(s3_server, s3_bucket)
    assert list(stored) == [key] and hashlib.sha256(stored[key]).hexdigest() == record["checksum"]
    assert s3_server.uploads(s3_bucket) == [], "the upload S3 could not abort while down was aborted after"
    assert qdrant_snapshots(qdrant_server, collection) == []


def test_qdrant_s_own_s3_mode_works_unchanged_with_the_operator_s_checksum(
    cluster, operator, real_qdrant_factory, s3_server, s3_bucket
):
    """Qdrant with storage.snapshots_config.snapshots_storage s3 writes its snapshots to the bucket and answers
    no checksum (collection/src/common/snapshots_manager.rs): the operator streams the file and records its
    sha256, so a restore from it is verified as any other."""
    qdrant = real_qdrant_factory(snapshots_s3=s3_server.qdrant_s3_config(s3_bucket))
    connect(cluster, qdrant, "s3mode", "s3mode-key")
    cluster.apply(
        "VectorCollection",
        "docs",
        {"connectionRef": {"name": "s3mode"}, "vectors": [{"size": 384, "distance": "Cosine"}]},
    )
    collection = cluster.wait_condition(VC, "docs", "InSync")["status"]["collectionName"]
    with closing(qdrant.client()) as client:
        client.upsert(collection, points=points(range(20)), wait=True)
    before = contents(qdrant, collection)
    cluster.apply("CollectionSnapshot", "plain", {"collectionRef": {"name": "docs"}})
    [record] = cluster.wait_condition(PLURAL, "plain", "Completed", timeout=120)["status"]["snapshots"]
    assert "location" not in record, "the file is where Qdrant keeps it: its own bucket"
    with closing(qdrant.client()) as client:
        described = {s.name: s.checksum for s in client.list_snapshots(collection)}
    assert described == {record["name"]: None}, "Qdrant's S3 mode records no checksum: the operator's is the one"
    in_bucket = {key: data for key, data in objects(s3_server, s3_bucket).items() if key.endswith(record["name"])}
    [data] = in_bucket.values()
    assert hashlib.sha256(data).hexdigest() == record["checksum"] and len(data) == record["sizeBytes"]

    cluster.apply(
        "VectorCollection",
        "copy",
        {
            "connectionRef": {"name": "s3mode"},
            "vectors": [{"size": 384, "distance": "Cosine"}],
            "source": {"snapshot": {"snapshotRef": {"name": "plain"}}},
        },
    )
    copy = cluster.wait_condition(VC, "copy", "InSync", timeout=120)["status"]
    assert contents(qdrant, copy["collectionName"]) == before


def test_a_restore_drill_verifies_a_snapshot_kept_in_the_bucket_and_fails_a_damaged_one(
    cluster, connection, qdrant_server, s3_server, s3_bucket
):
    """spec.verify with spec.objectStore: the drill recovers the object through a presigned URL (no api_key),
    compares, and removes its scratch collection; the same object damaged in the bucket fails the next drill."""
    collection = source_collection(cluster, qdrant_server)
    credentials(cluster, s3_server)
    spec = {
        "collectionRef": {"name": "docs"},
        "objectStore": target(s3_server, s3_bucket),
        "verify": {"schedule": "* * * * *"},
    }
    cluster.apply("CollectionSnapshot", "drilled", spec)
    body = cluster.wait_condition(PLURAL, "drilled", "Verified", type_="BackupVerified", timeout=180)
    [record] = body["status"]["snapshots"]
    verification = body["status"]["lastVerification"]
    assert verification["result"] == "Succeeded" and verification["snapshot"] == record["name"], verification
    assert verification["pointsCount"] == record["pointsCount"]

    _bucket, key = parse_location(record["location"])
    damaged = bytearray(objects(s3_server, s3_bucket)[key])
    damaged[len(damaged) // 2] ^= 0xFF
    put_object(s3_server, s3_bucket, key, bytes(damaged))
    failed = cluster.wait_condition(
        PLURAL, "drilled", "SnapshotUnrestorable", status="False", type_="BackupVerified", timeout=180
    )
    assert failed["status"]["lastVerification"]["result"] == "Failed"
    with closing(qdrant_server.client()) as client:
        assert not [c.name for c in client.get_collections().collections if c.name.startswith("~drill-")]
    assert qdrant_snapshots(qdrant_server, collection) == [], "the node keeps no copy"
    no_presigned_url_shown(cluster, (PLURAL, "drilled"))
