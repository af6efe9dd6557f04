"""Collection snapshots: create, list, download with checksum, recover from URL and upload, delete."""

from __future__ import annotations

import hashlib
import random

from qdrant_client import QdrantClient
from qdrant_client.http import models as m


def _all_points(client: QdrantClient, name: str) -> list[tuple[object, object, object]]:
    points, _ = client.scroll(name, limit=1000, with_vectors=True)
    return [(p.id, p.payload, p.vector) for p in points]


def test_snapshot_recover_returns_the_same_points(client: QdrantClient, qdrant_server, name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    client.create_collection(
        name,
        vectors_config=m.VectorParams(size=4, distance=m.Distance.COSINE),
        shard_number=2,
        metadata={"owner": "snap-test"},
    )
    client.upsert(
        name, [m.PointStruct(id=i, vector=[rng.random() for _ in range(4)], payload={"i": i}) for i in range(60)]
    )
    client.create_payload_index(name, "i", m.PayloadSchemaType.INTEGER, wait=True)
    expected = _all_points(client, name)

    snap = client.create_snapshot(name, wait=True)
    assert snap is not None and snap.size > 0 and snap.checksum
    assert snap.name in {s.name for s in client.list_snapshots(name)}

    with qdrant_server.http(timeout=60) as http:
        resp = http.get(f"/collections/{name}/snapshots/{snap.name}")
        assert resp.status_code == 200
    assert hashlib.sha256(resp.content).hexdigest() == snap.checksum
    archive = tmp_path / snap.name
    archive.write_bytes(resp.content)

    from_url, from_upload = f"{name}-url", f"{name}-upload"
    try:
        location = f"{qdrant_server.url}/collections/{name}/snapshots/{snap.name}"
        assert client.recover_snapshot(
            from_url, location=location, api_key=qdrant_server.api_key, checksum=snap.checksum, wait=True
        )
        assert _all_points(client, from_url) == expected
        info = client.get_collection(from_url)
        assert info.config.metadata == {"owner": "snap-test"} and info.config.params.shard_number == 2
        assert "i" in info.payload_schema

        with archive.open("rb") as f:
            client.http.snapshots_api.recover_from_uploaded_snapshot(
                collection_name=from_upload, snapshot=f, wait=True, checksum=snap.checksum
            )
        assert _all_points(client, from_upload) == expected

        if qdrant_server.is_dev:  # a file:// location is on the server's host: only the local dev server shares ours
            assert client.recover_snapshot(from_upload, location=archive.as_uri(), wait=True)
            assert _all_points(client, from_upload) == expected
    finally:
        client.delete_collection(from_url)
        client.delete_collection(from_upload)

    assert client.delete_snapshot(name, snap.name, wait=True)
    assert snap.name not in {s.name for s in client.list_snapshots(name)}


def test_snapshots_in_one_second_share_a_name(client: QdrantClient, name: str) -> None:
    """Qdrant names a snapshot `<collection>-<peer id>-<UTC second>.snapshot`: a second snapshot in the same
    second replaces the first file (why the operator spaces the snapshots of one collection a second apart)."""
    client.create_collection(name, vectors_config=m.VectorParams(size=4, distance=m.Distance.DOT))
    names: list[str] = []
    while len(names) < 20 and len(set(names)) == len(names):  # back to back until two land in one second
        snap = client.create_snapshot(name, wait=True)
        assert snap is not None and snap.name.startswith(f"{name}-") and snap.name.endswith(".snapshot")
        names.append(snap.name)
    assert len(set(names)) < len(names), f"20 snapshots back to back, no two names alike: {names}"
    assert len({n[len(name) + 1 :].split("-")[0] for n in names}) == 1, f"one peer id in every name: {names}"
    assert sorted(s.name for s in client.list_snapshots(name)) == sorted(set(names)), "one file per name"
