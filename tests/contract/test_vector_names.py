"""Named vectors added to and removed from an existing collection (Qdrant 1.18+):
PUT and DELETE /collections/{name}/vectors/{vector}, what GET /collections/{name} shows after, and that the
points keep their other vectors and payload."""

from __future__ import annotations

import json

import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from tests.contract.conftest import wait_green

DENSE_B = m.DenseVectorNameConfig(dense=m.DenseVectorConfig(size=3, distance=m.Distance.DOT))


def _error(exc: UnexpectedResponse) -> str:
    return str(json.loads(exc.content)["status"]["error"])


def _refused(call, *args, **kwargs) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(UnexpectedResponse) as err:
        call(*args, **kwargs)
    return err.value.status_code or 0, _error(err.value)


def _params(client: QdrantClient, name: str) -> m.CollectionParams:
    return client.get_collection(name).config.params


def _named(client: QdrantClient, name: str) -> None:
    client.create_collection(
        name,
        vectors_config={"a": m.VectorParams(size=4, distance=m.Distance.COSINE)},
        sparse_vectors_config={"s": m.SparseVectorParams()},
    )
    client.upsert(
        name,
        [
            m.PointStruct(
                id=1,
                vector={"a": [0.1, 0.2, 0.3, 0.4], "s": m.SparseVector(indices=[1, 7], values=[0.5, 0.25])},
                payload={"n": 1},
            ),
            m.PointStruct(id=2, vector={"a": [0.4, 0.3, 0.2, 0.1]}, payload={"n": 2}),
        ],
        wait=True,
    )


def test_a_dense_vector_is_added_and_removed_in_place(client: QdrantClient, name: str) -> None:
    _named(client, name)
    before = {r.id: r.vector for r in client.retrieve(name, [1, 2], with_vectors=True)}
    result = client.create_vector_name(name, "b", DENSE_B, wait=True)
    assert result.status == m.UpdateStatus.COMPLETED
    params = _params(client, name)
    assert params.vectors == {
        "a": m.VectorParams(size=4, distance=m.Distance.COSINE),
        "b": m.VectorParams(size=3, distance=m.Distance.DOT),  # the schema only: no HNSW, quantization, on_disk
    }
    assert set(params.sparse_vectors or {}) == {"s"}
    # Existing points keep what they had and hold nothing under the new name until it is written.
    assert {r.id: r.vector for r in client.retrieve(name, [1, 2], with_vectors=True)} == before
    client.update_vectors(name, [m.PointVectors(id=2, vector={"b": [1.0, 0.0, 0.0]})], wait=True)
    hits = client.query_points(name, query=[1.0, 0.0, 0.0], using="b", limit=5).points
    assert [h.id for h in hits] == [2]
    # Tuned by a PATCH, as the operator does after creating one; Qdrant may re-index before the delete.
    client.update_collection(name, vectors_config={"b": m.VectorParamsDiff(hnsw_config=m.HnswConfigDiff(m=8))})
    assert _params(client, name).vectors["b"].hnsw_config == m.HnswConfigDiff(m=8)  # type: ignore[index]
    wait_green(client, name)

    client.delete_vector_name(name, "a", wait=True)
    params = _params(client, name)
    b = m.VectorParams(size=3, distance=m.Distance.DOT, hnsw_config=m.HnswConfigDiff(m=8))
    assert params.vectors == {"b": b}
    records = {r.id: r for r in client.retrieve(name, [1, 2], with_vectors=True, with_payload=True)}
    assert set(records) == {1, 2} and client.count(name, exact=True).count == 2
    assert records[1].vector == {"s": before[1]["s"]}  # type: ignore[index]
    assert records[2].vector == {"b": [1.0, 0.0, 0.0]}
    assert (records[1].payload, records[2].payload) == ({"n": 1}, {"n": 2})
    wait_green(client, name)


def test_a_sparse_vector_is_added_and_removed_in_place(client: QdrantClient, name: str) -> None:
    _named(client, name)
    client.create_vector_name(name, "t", m.SparseVectorNameConfig(sparse=m.SparseVectorConfig(modifier=m.Modifier.IDF)))
    assert _params(client, name).sparse_vectors == {
        "s": m.SparseVectorParams(),
        "t": m.SparseVectorParams(modifier=m.Modifier.IDF),
    }
    client.update_vectors(
        name, [m.PointVectors(id=2, vector={"t": m.SparseVector(indices=[3], values=[1.0])})], wait=True
    )
    # A PATCH of the new vector's index is merged into it: the modifier stays.
    client.update_collection(
        name, sparse_vectors_config={"t": m.SparseVectorParams(index=m.SparseIndexParams(on_disk=True))}
    )
    assert _params(client, name).sparse_vectors["t"] == m.SparseVectorParams(  # type: ignore[index]
        index=m.SparseIndexParams(on_disk=True), modifier=m.Modifier.IDF
    )

    client.delete_vector_name(name, "s")
    params = _params(client, name)
    assert set(params.sparse_vectors or {}) == {"t"} and set(params.vectors) == {"a"}  # type: ignore[arg-type]
    records = {r.id: r.vector for r in client.retrieve(name, [1, 2], with_vectors=True)}
    assert set(records[1]) == {"a"}  # type: ignore[arg-type]
    assert set(records[2]) == {"a", "t"}  # type: ignore[arg-type]
    wait_green(client, name)


def test_creating_an_existing_name(client: QdrantClient, name: str) -> None:
    _named(client, name)
    client.create_vector_name(name, "b", DENSE_B)
    # The same name with the same schema again: 200 and nothing changes (so a retried create is harmless).
    assert client.create_vector_name(name, "b", DENSE_B).status == m.UpdateStatus.COMPLETED
    assert client.create_vector_name(
        name, "a", m.DenseVectorNameConfig(dense=m.DenseVectorConfig(size=4, distance=m.Distance.COSINE))
    )
    other = m.DenseVectorNameConfig(dense=m.DenseVectorConfig(size=5, distance=m.Distance.DOT))
    assert _refused(client.create_vector_name, name, "b", other) == (
        400,
        "Wrong input: Vector `b` already exists with a different configuration",
    )
    # An explicit float32 is not the unset datatype the collection was created with.
    float32 = m.DenseVectorConfig(size=4, distance=m.Distance.COSINE, datatype=m.VectorStorageDatatype.FLOAT32)
    assert _refused(client.create_vector_name, name, "a", m.DenseVectorNameConfig(dense=float32)) == (
        400,
        "Wrong input: Vector `a` already exists with a different configuration",
    )
    assert _refused(client.create_vector_name, name, "b", m.SparseVectorNameConfig(sparse=m.SparseVectorConfig())) == (
        400,
        "Wrong input: Vector `b` already exists as a dense vector",
    )
    assert _refused(client.create_vector_name, name, "s", DENSE_B) == (
        400,
        "Wrong input: Vector `s` already exists as a sparse vector",
    )
    idf = m.SparseVectorNameConfig(sparse=m.SparseVectorConfig(modifier=m.Modifier.IDF))
    assert _refused(client.create_vector_name, name, "s", idf) == (
        400,
        "Wrong input: Sparse vector `s` already exists with a different configuration",
    )
    assert set(_params(client, name).vectors) == {"a", "b"}  # type: ignore[arg-type]


def test_deleting_a_missing_vector_or_collection(client: QdrantClient, name: str) -> None:
    _named(client, name)
    assert client.delete_vector_name(name, "nope").status == m.UpdateStatus.COMPLETED  # 200: nothing to do
    assert set(_params(client, name).vectors) == {"a"}  # type: ignore[arg-type]
    missing = f"{name}-missing"
    assert _refused(client.delete_vector_name, missing, "a") == (
        404,
        f"Not found: Collection `{missing}` doesn't exist!",
    )
    assert _refused(client.create_vector_name, missing, "b", DENSE_B) == (
        404,
        f"Not found: Collection `{missing}` doesn't exist!",
    )


def test_a_named_vector_on_an_unnamed_collection(client: QdrantClient, name: str) -> None:
    client.create_collection(name, vectors_config=m.VectorParams(size=4, distance=m.Distance.COSINE))
    client.upsert(name, [m.PointStruct(id=1, vector=[0.1, 0.2, 0.3, 0.4])], wait=True)
    before = client.retrieve(name, [1], with_vectors=True)[0].vector
    client.create_vector_name(name, "b", DENSE_B)
    # Qdrant turns the bare VectorParams into a map that holds the unnamed vector under "" ...
    unnamed = m.VectorParams(size=4, distance=m.Distance.COSINE)
    assert _params(client, name).vectors == {"": unnamed, "b": m.VectorParams(size=3, distance=m.Distance.DOT)}
    assert client.retrieve(name, [1], with_vectors=True)[0].vector == before  # still the bare list
    # ... and keeps the map after the named one is gone: the collection never reads unnamed again.
    client.delete_vector_name(name, "b")
    assert _params(client, name).vectors == {"": unnamed}
    assert client.retrieve(name, [1], with_vectors=True)[0].vector == before


def test_names_and_bodies_are_validated(qdrant_server, client: QdrantClient, name: str) -> None:  # type: ignore[no-untyped-def]
    _named(client, name)
    collections = client.http.collections_api
    assert _refused(collections.create_vector_name, name, "b*c", vector_name_config=DENSE_B) == (
        422,
        'Validation error in path parameters: [vector_name: vector name cannot contain "*" char]',
    )
    assert _refused(collections.delete_vector_name, name, "x" * 201) == (
        422,
        "Validation error in path parameters: [vector_name: vector name must be at most 200 bytes long]",
    )
    zero = m.DenseVectorNameConfig(dense=m.DenseVectorConfig(size=0, distance=m.Distance.DOT))
    assert _refused(client.create_vector_name, name, "b", zero) == (
        422,
        "Validation error in JSON body: [dense.size: value 0 invalid, must be from 1 to 65536]",
    )
    expected = "Format error in JSON body: data did not match any variant of untagged enum VectorNameConfig"
    with qdrant_server.http(timeout=10) as http:
        for body in ({}, {"dense": {"size": 3}}):
            response = http.put(f"/collections/{name}/vectors/b", json=body)
            assert (response.status_code, response.json()["status"]["error"]) == (400, expected)
        # Qdrant's untagged enum takes the first variant that fits and ignores other keys.
        both = {"dense": {"size": 3, "distance": "Dot"}, "sparse": {}}
        assert http.put(f"/collections/{name}/vectors/b", json=both).status_code == 200
    assert _params(client, name).vectors == {
        "a": m.VectorParams(size=4, distance=m.Distance.COSINE),
        "b": m.VectorParams(size=3, distance=m.Distance.DOT),
    }
