"""collection_operator.objectstore: streaming upload with sha256, keys under the prefix, error mapping and the
endpoint's address policy. obstore's MemoryStore stands in for S3 (pure logic); the real S3 server is the
integration tests' (tests/integration/test_objectstore_snapshots.py)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from obstore import exceptions as obs_errors

from collection_operator.config.address_policy import AddressPolicy
from collection_operator.objectstore import ObjectStoreError, Store, StoreConfig, parse_location
from collection_operator.objectstore.multipart import open_uploads
from collection_operator.objectstore.store import PART_BYTES, classify

SECRET = "very-secret-access-key-value"


def config(endpoint: str | None = None, prefix: str = "backups/") -> StoreConfig:
    return StoreConfig("bucket", prefix, endpoint, "us-east-1", "AKIDEXAMPLE", SECRET)


async def chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_repr_never_shows_the_secret():
    assert SECRET not in repr(config()) and SECRET not in str(config())


async def test_upload_streams_more_than_a_part_and_hashes_what_it_sent():
    store = Store.in_memory(config())
    data = bytes(range(256)) * (PART_BYTES // 256 * 2 + 7)  # two parts and a bit
    uploaded = await store.upload("ns/res/coll/s1.snapshot", chunks(data))
    assert uploaded.key == "ns/res/coll/s1.snapshot"
    assert (uploaded.sha256, uploaded.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert b"".join([c async for c in store.download("ns/res/coll/s1.snapshot")]) == data
    assert store.location(uploaded.key) == "s3://bucket/backups/ns/res/coll/s1.snapshot"
    assert parse_location(store.location(uploaded.key)) == ("bucket", "backups/ns/res/coll/s1.snapshot")


async def test_a_failing_source_is_reraised_and_nothing_is_stored():
    store = Store.in_memory(config())

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise ConnectionResetError("qdrant went away")

    with pytest.raises(ConnectionResetError, match="qdrant went away"):
        await store.upload("k", broken())
    with pytest.raises(ObjectStoreError) as missing:
        [c async for c in store.download("k")]
    assert missing.value.reason == "ObjectStoreObjectNotFound" and not missing.value.retryable


async def test_delete_of_a_missing_object_succeeds():
    store = Store.in_memory(config())
    await store.upload("k", chunks(b"abc"))
    await store.delete("k")
    await store.delete("k")


@pytest.mark.parametrize(
    ("error", "reason", "retryable"),
    [
        (obs_errors.UnauthenticatedError("x"), "ObjectStoreCredentialsRejected", False),
        (obs_errors.PermissionDeniedError("x"), "ObjectStoreCredentialsRejected", False),
        (obs_errors.GenericError("403 <Code>InvalidAccessKeyId</Code>"), "ObjectStoreCredentialsRejected", False),
        (obs_errors.GenericError("status 404 <Code>NoSuchBucket</Code>"), "ObjectStoreBucketNotFound", False),
        (obs_errors.GenericError("error sending request: Connection refused"), "ObjectStoreUnavailable", True),
    ],
)
def test_errors_map_to_reasons_without_the_servers_words(error, reason, retryable):
    mapped = classify(error, config("http://127.0.0.1:9000"), "uploading k")
    assert (mapped.reason, mapped.retryable) == (reason, retryable)
    assert "bucket bucket at http://127.0.0.1:9000" in str(mapped)
    assert "<Code>" not in str(mapped) and "Connection refused" not in str(mapped)


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("http://user:pw@127.0.0.1:9000", "credentials in the URL are not allowed: put them in the credentials"),
        ("ftp://127.0.0.1", "only http:// and https://"),
        ("http://", "no host"),
        ("http://127.0.0.1:port", "not a valid URL"),
    ],
)
def test_malformed_endpoints_are_refused_before_any_request(endpoint, why):
    with pytest.raises(ObjectStoreError, match=why) as refused:
        Store(config(endpoint))
    assert refused.value.reason == "ObjectStoreEndpointRefused" and "pw" not in str(refused.value)


async def test_the_endpoint_passes_the_address_policy():
    with pytest.raises(ObjectStoreError, match="cloud metadata address") as refused:
        await Store(config("http://169.254.169.254")).check()
    assert refused.value.reason == "ObjectStoreEndpointRefused"
    outside = Store(config("http://127.0.0.1:9"), AddressPolicy(allowed_hosts=("10.0.0.0/8",)))
    with pytest.raises(ObjectStoreError, match="not in the operator's allowed_hosts"):
        await outside.presign_get("k", timedelta(minutes=1))


async def test_presigned_urls_are_signed_for_the_prefixed_key():
    url = await Store(config("http://127.0.0.1:9")).presign_get("a/b", timedelta(minutes=5))
    assert url.startswith("http://127.0.0.1:9/bucket/backups/a/b?")  # path style on a custom endpoint
    assert "X-Amz-Expires=300" in url and "X-Amz-Signature=" in url and SECRET not in url


@pytest.mark.parametrize("location", ["s3://bucket", "https://bucket/key", "s3:///key"])
def test_locations_must_name_bucket_and_key(location):
    with pytest.raises(ValueError, match="s3://bucket/key"):
        parse_location(location)


def test_open_uploads_are_read_from_s3_s_listing():
    listing = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket>
<Upload><Key>p/ns/r/c/s1</Key><UploadId>id-1</UploadId></Upload>
<Upload><Key>p/ns/r/c/s2</Key><UploadId>id-2</UploadId></Upload></ListMultipartUploadsResult>"""
    assert open_uploads(listing) == [("p/ns/r/c/s1", "id-1"), ("p/ns/r/c/s2", "id-2")]
    assert open_uploads(b"<ListMultipartUploadsResult/>") == []


async def test_nothing_is_left_half_uploaded_in_memory():
    assert await Store.in_memory(config()).abort_incomplete("ns/r/c") == []
