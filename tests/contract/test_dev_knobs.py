"""The dev server's own features: auth, TLS, persistence, faults, request counters, stop/start.

Each test needs the dev server (`require_dev`) and skips against a real Qdrant, whose auth and TLS are
configured by whoever runs it.
"""

from __future__ import annotations

import time

import httpx
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models as m
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from tests.contract.conftest import wait_until

VECTORS = m.VectorParams(size=4, distance=m.Distance.COSINE)


@pytest.fixture
def dev(qdrant_server):  # type: ignore[no-untyped-def]
    qdrant_server.require_dev()
    yield qdrant_server
    qdrant_server.clear_faults()


def test_api_key_and_read_only_key(qdrant_server, qdrant_server_factory) -> None:  # type: ignore[no-untyped-def]
    qdrant_server.require_dev()
    server = qdrant_server_factory(api_key="s3cret", read_only_api_key="r3ad")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200  # health endpoints need no key, as in Qdrant
        no_key = http.get("/collections")
        assert no_key.status_code == 401
        assert no_key.json()["status"]["error"] == "Must provide an API key or an Authorization bearer token"
        assert http.get("/collections", headers={"api-key": "wrong"}).status_code == 401
        assert http.get("/collections", headers={"Authorization": "Bearer s3cret"}).status_code == 200

    server.client().create_collection("c", vectors_config=VECTORS)
    read_only = server.client(api_key="r3ad")
    assert read_only.collection_exists("c")
    with pytest.raises(UnexpectedResponse) as err:
        read_only.delete_collection("c")
    assert err.value.status_code == 403
    with pytest.raises(UnexpectedResponse) as err:
        server.client(api_key=None).get_collections()
    assert err.value.status_code == 401


def test_tls(qdrant_server, qdrant_server_factory) -> None:  # type: ignore[no-untyped-def]
    qdrant_server.require_dev()
    server = qdrant_server_factory(tls=True, api_key="k")
    assert server.url.startswith("https://")
    client = server.client()
    assert client.info().version
    client.create_collection("tls", vectors_config=VECTORS)
    assert client.collection_exists("tls")
    with pytest.raises(httpx.HTTPError), httpx.Client(timeout=5) as http:
        http.get(f"{server.url}/readyz")  # the self-signed certificate is not trusted without the CA


def test_persistence_and_stop_start(qdrant_server, qdrant_server_factory) -> None:  # type: ignore[no-untyped-def]
    qdrant_server.require_dev()
    server = qdrant_server_factory()
    client = server.client(timeout=5)
    client.create_collection("kept", vectors_config=VECTORS, metadata={"k": "v"})
    client.upsert("kept", [m.PointStruct(id=i, vector=[1.0, i, 0.0, 0.5], payload={"i": i}) for i in range(20)])
    client.create_payload_index("kept", "i", m.PayloadSchemaType.INTEGER, wait=True)
    client.update_collection_aliases(
        [m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name="kept", alias_name="kept-alias"))]
    )
    snapshot = client.create_snapshot("kept")
    assert snapshot is not None

    server.stop()
    with pytest.raises(ResponseHandlingException):  # connection refused, as from a stopped Qdrant
        client.get_collections()
    server.start()

    info = client.get_collection("kept-alias")
    assert info.points_count == 20 and info.config.metadata == {"k": "v"} and "i" in info.payload_schema
    assert client.retrieve("kept", [7])[0].payload == {"i": 7}
    assert [s.name for s in client.list_snapshots("kept")] == [snapshot.name]


def test_latency_and_errors(dev, client: QdrantClient) -> None:  # type: ignore[no-untyped-def]
    dev.set_faults(latency_ms=300)
    started = time.monotonic()
    client.get_collections()
    assert time.monotonic() - started >= 0.3

    dev.set_faults(error_rate=1.0)
    with pytest.raises(UnexpectedResponse) as err:
        client.get_collections()
    assert err.value.status_code == 503
    dev.clear_faults()
    client.get_collections()


def test_hostile_error_answers(dev) -> None:  # type: ignore[no-untyped-def]
    dev.set_faults(error_rate=1.0, error_status=502, error_body="<html>x</html>", reason_phrase="Call \x1b me")
    with dev.http(timeout=10) as http:
        reply = http.get("/collections")
    assert (reply.status_code, reply.reason_phrase, reply.text) == (502, "Call \x1b me", "<html>x</html>")
    dev.set_faults(error_rate=1.0, error_status=400)
    with dev.http(timeout=10) as http:
        reply = http.get("/collections")
    assert (reply.status_code, reply.reason_phrase) == (400, "Bad Request")
    assert reply.json()["status"]["error"] == "Bad Request: injected by the dev server (error_rate)"


def test_hang_until_cleared(dev) -> None:  # type: ignore[no-untyped-def]
    dev.set_faults(hang=True)
    with pytest.raises(ResponseHandlingException):
        dev.client(timeout=1, check_compatibility=False).get_collections()
    dev.clear_faults()
    assert dev.client(timeout=5).get_collections() is not None


def test_create_times_out_but_applies(dev, client: QdrantClient, name: str) -> None:  # type: ignore[no-untyped-def]
    dev.set_faults(create_timeout_but_applies=3)
    with pytest.raises(ResponseHandlingException):
        dev.client(timeout=1, check_compatibility=False).create_collection(name, vectors_config=VECTORS)
    dev.clear_faults()
    assert wait_until(lambda: client.collection_exists(name), timeout=5, what="the timed-out create to exist")


def test_request_counters(dev, client: QdrantClient, name: str) -> None:  # type: ignore[no-untyped-def]
    dev.reset_requests()
    client.create_collection(name, vectors_config=VECTORS)
    client.upsert(name, [m.PointStruct(id=1, vector=[1.0, 0, 0, 0])])
    client.upsert(name, [m.PointStruct(id=2, vector=[0, 1.0, 0, 0])])
    client.get_collection(name)
    dev.requests()  # admin calls are never counted
    counts = dev.requests()["counts"]
    assert counts["PUT /collections/{collection_name}"] == 1
    assert counts["PUT /collections/{collection_name}/points"] == 2
    assert counts["GET /collections/{collection_name}"] == 1
    assert not any("__dev" in key for key in counts)
    assert dev.count("PUT", "/collections/{collection_name}") == 1
