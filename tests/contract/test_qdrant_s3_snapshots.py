"""Qdrant's own S3 mode (`storage.snapshots_config.snapshots_storage: s3`) against the tests' SeaweedFS: what a
CollectionSnapshot meets on a Qdrant configured that way. Qdrant 1.19 writes the snapshot file into the
bucket itself, under its local snapshots path as the key (`<snapshots_path without its leading />/<collection>/
<file>`, no `.checksum` object beside it), keeps no copy on the node, lists it, and still serves it at the
download URL the operator streams from, byte for byte. Unlike a snapshot on local disk it has no `checksum`
in Qdrant's answers: whoever wants a sha256 computes it while streaming.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import obstore
import pytest
from obstore.store import S3Store

from devenv import ports, qdrant_real
from tests.fixtures.s3 import S3Server


@pytest.fixture
def s3_qdrant(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> Iterator[qdrant_real.Node]:
    binary = qdrant_real.binary()
    if binary is None:
        pytest.skip(qdrant_real.how_to_get_one())
    node = qdrant_real.Node(
        *ports.free_ports(2),
        tmp_path / "qdrant",
        snapshots_s3=s3_server.qdrant_s3_config(s3_bucket),
    )
    node.start(binary)
    try:
        node.wait_ready()
        yield node
    finally:
        node.stop()


def test_qdrant_keeps_its_snapshots_in_the_bucket_and_still_serves_them(
    s3_qdrant: qdrant_real.Node, s3_server: S3Server, s3_bucket: str
) -> None:
    name = f"s3mode-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=s3_qdrant.url, timeout=60) as http:
        http.put(f"/collections/{name}", json={"vectors": {"size": 4, "distance": "Dot"}}).raise_for_status()
        points = [{"id": i, "vector": [i, 1, 2, 3], "payload": {"n": i}} for i in range(100)]
        http.put(f"/collections/{name}/points?wait=true", json={"points": points}).raise_for_status()
        snap = http.post(f"/collections/{name}/snapshots?wait=true").raise_for_status().json()["result"]
        listed = http.get(f"/collections/{name}/snapshots").raise_for_status().json()["result"]
        assert [s["name"] for s in listed] == [snap["name"]]
        served = http.get(f"/collections/{name}/snapshots/{snap['name']}").raise_for_status().content

    bucket = S3Store(
        s3_bucket,
        endpoint=s3_server.endpoint,
        region=s3_server.region,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
        client_options={"allow_http": True},
    )
    keys = sorted(meta["path"] for meta in obstore.list(bucket).collect())
    prefix = f"{(s3_qdrant.storage / 'snapshots').as_posix().lstrip('/')}/{name}/{snap['name']}"
    assert keys == [prefix], keys
    stored = bytes(obstore.get(bucket, prefix).bytes())
    assert len(stored) == snap["size"] == len(served)
    assert hashlib.sha256(stored).digest() == hashlib.sha256(served).digest()
    assert "checksum" not in snap and "checksum" not in listed[0], "in S3 mode Qdrant reports no sha256"
    assert not (s3_qdrant.storage / "snapshots" / name / snap["name"]).exists(), "no copy left on the node"
