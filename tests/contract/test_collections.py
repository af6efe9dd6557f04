"""Collections: lifecycle, config round-trip, re-index on PATCH, sharding, payload indexes, aliases, errors."""

from __future__ import annotations

import json
import random
import time
import uuid

import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from tests.contract.conftest import dev_gap, wait_green, wait_until

DIM = 8


def _points(n: int, start: int = 0) -> list[m.PointStruct]:
    rng = random.Random(start)
    return [
        m.PointStruct(id=i, vector=[rng.random() for _ in range(DIM)], payload={"tenant": f"t{i % 3}", "n": i})
        for i in range(start, start + n)
    ]


def _error(exc: UnexpectedResponse) -> str:
    return str(json.loads(exc.content)["status"]["error"])


def test_create_get_list_exists_delete(client: QdrantClient, name: str) -> None:
    assert client.create_collection(
        name,
        vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE, on_disk=True),
        hnsw_config=m.HnswConfigDiff(m=24, ef_construct=120, full_scan_threshold=5000, payload_m=24),
        optimizers_config=m.OptimizersConfigDiff(default_segment_number=2, indexing_threshold=20000),
        quantization_config=m.ScalarQuantization(
            scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, quantile=0.99, always_ram=True)
        ),
        on_disk_payload=False,
        metadata={"owner": "ns/vc/uid-1", "preset": "Embeddings"},
    )
    assert client.collection_exists(name)
    assert name in {c.name for c in client.get_collections().collections}
    info = client.get_collection(name)
    assert info.status == m.CollectionStatus.GREEN
    cfg = info.config
    assert cfg.params.vectors == m.VectorParams(size=DIM, distance=m.Distance.COSINE, on_disk=True)
    assert cfg.params.shard_number == 1 and cfg.params.replication_factor == 1
    assert cfg.params.on_disk_payload is False
    assert (cfg.hnsw_config.m, cfg.hnsw_config.ef_construct, cfg.hnsw_config.full_scan_threshold) == (24, 120, 5000)
    assert cfg.hnsw_config.payload_m == 24
    assert cfg.optimizer_config.default_segment_number == 2 and cfg.optimizer_config.indexing_threshold == 20000
    assert cfg.optimizer_config.deleted_threshold == 0.2  # Qdrant's default from config.yaml
    assert cfg.wal_config is not None and cfg.wal_config.wal_capacity_mb == 32
    assert isinstance(cfg.quantization_config, m.ScalarQuantization)
    assert cfg.quantization_config.scalar.quantile == 0.99
    assert cfg.metadata == {"owner": "ns/vc/uid-1", "preset": "Embeddings"}

    assert client.update_collection(name, metadata={"preset": None, "generation": 2})
    assert client.get_collection(name).config.metadata == {"owner": "ns/vc/uid-1", "generation": 2}

    assert client.delete_collection(name)
    assert not client.collection_exists(name)
    assert not client.delete_collection(name)  # deleting a missing collection is not an error


def test_errors_have_qdrants_shape(client: QdrantClient, name: str) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(UnexpectedResponse) as err:
        client.get_collection(missing)
    assert err.value.status_code == 404
    assert _error(err.value) == f"Not found: Collection `{missing}` doesn't exist!"

    client.create_collection(name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.DOT))
    with pytest.raises(UnexpectedResponse) as err:
        client.create_collection(name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.DOT))
    assert err.value.status_code in (400, 409)
    assert _error(err.value) == f"Wrong input: Collection `{name}` already exists!"

    with pytest.raises(UnexpectedResponse) as err:
        client.upsert(name, [m.PointStruct(id=1, vector=[0.1] * (DIM - 1))])
    assert err.value.status_code == 400
    assert "Vector dimension error" in _error(err.value)

    with pytest.raises(UnexpectedResponse) as err:
        client.http.collections_api.create_collection(
            f"{name}-bad", create_collection=m.CreateCollection(vectors=m.VectorParams(size=0, distance=m.Distance.DOT))
        )
    assert err.value.status_code in (400, 422)
    assert json.loads(err.value.content)["status"]["error"]


def test_points_crud_and_queries(client: QdrantClient, name: str) -> None:
    client.create_collection(name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.EUCLID))
    assert client.upsert(name, _points(40), wait=True).status == m.UpdateStatus.COMPLETED
    uid = str(uuid.uuid4())
    client.upsert(name, m.Batch(ids=[uid], vectors=[[0.5] * DIM], payloads=[{"tenant": "x"}]))
    assert client.count(name, exact=True).count == 41
    got = client.retrieve(name, [3, uid, 999], with_vectors=True)
    assert {p.id for p in got} == {3, uid}
    assert next(p for p in got if p.id == uid).vector == [0.5] * DIM

    hits = client.query_points(name, query=[0.5] * DIM, limit=3, with_payload=True).points
    assert hits[0].id == uid and hits[0].score == pytest.approx(0.0, abs=1e-5)  # Euclid: distance, smallest first
    assert hits[0].score <= hits[1].score <= hits[2].score

    tenant = m.Filter(must=[m.FieldCondition(key="tenant", match=m.MatchValue(value="t1"))])
    assert client.count(name, count_filter=tenant).count == 13
    filtered = client.query_points(name, query=[0.1] * DIM, query_filter=tenant, limit=50).points
    assert len(filtered) == 13 and all(p.payload and p.payload["tenant"] == "t1" for p in filtered)

    batch = client.query_batch_points(
        name, [m.QueryRequest(query=[0.2] * DIM, limit=2), m.QueryRequest(query=[0.9] * DIM, limit=4, offset=1)]
    )
    assert [len(r.points) for r in batch] == [2, 4]

    page, offset = client.scroll(name, limit=15)
    assert [p.id for p in page] == list(range(15)) and offset == 15

    client.delete(name, m.PointIdsList(points=[0, 1, uid]))
    client.delete(name, m.FilterSelector(filter=tenant))
    assert client.count(name).count == 41 - 3 - 13 + 1  # point 1 was in t1 already


async def test_named_sparse_and_multivectors_async(qdrant_server, name: str) -> None:  # type: ignore[no-untyped-def]
    aclient = qdrant_server.async_client()
    try:
        await aclient.create_collection(
            name,
            vectors_config={
                "text": m.VectorParams(size=4, distance=m.Distance.COSINE, datatype=m.Datatype.FLOAT16),
                "colbert": m.VectorParams(
                    size=3,
                    distance=m.Distance.DOT,
                    multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM),
                    hnsw_config=m.HnswConfigDiff(m=0),
                ),
            },
            sparse_vectors_config={"keywords": m.SparseVectorParams(modifier=m.Modifier.IDF)},
        )
        points = [
            m.PointStruct(
                id=i,
                vector={
                    "text": [1.0, i, 0.5, 0.1],
                    "colbert": [[1.0, 0.0, i], [0.0, 1.0, 0.5]],
                    "keywords": m.SparseVector(indices=[i, 100], values=[1.0, 0.5]),
                },
                payload={"i": i},
            )
            for i in range(1, 11)
        ]
        await aclient.upsert(name, points)
        info = await aclient.get_collection(name)
        vectors = info.config.params.vectors
        assert isinstance(vectors, dict) and vectors["colbert"].multivector_config is not None
        assert vectors["text"].datatype == m.Datatype.FLOAT16
        assert info.config.params.sparse_vectors["keywords"].modifier == m.Modifier.IDF  # type: ignore[index]
        assert info.points_count == 10

        sparse = await aclient.query_points(
            name, query=m.SparseVector(indices=[7], values=[1.0]), using="keywords", limit=1
        )
        assert sparse.points[0].id == 7
        multi = await aclient.query_points(name, query=[[0.0, 0.0, 1.0]], using="colbert", limit=1)
        assert multi.points[0].id == 10
        fused = await aclient.query_points(
            name,
            prefetch=[
                m.Prefetch(query=[1.0, 5.0, 0.5, 0.1], using="text", limit=5),
                m.Prefetch(query=m.SparseVector(indices=[5], values=[1.0]), using="keywords", limit=5),
            ],
            query=m.FusionQuery(fusion=m.Fusion.RRF),
            limit=3,
        )
        assert fused.points[0].id == 5
        record = (await aclient.retrieve(name, [2], with_vectors=True))[0]
        assert isinstance(record.vector, dict)
        assert record.vector["keywords"] == m.SparseVector(indices=[2, 100], values=[1.0, 0.5])
        assert len(record.vector["colbert"]) == 2  # type: ignore[arg-type]
    finally:
        await aclient.close()


@pytest.mark.parametrize(
    "quantization",
    [
        m.ProductQuantization(product=m.ProductQuantizationConfig(compression=m.CompressionRatio.X16, always_ram=True)),
        m.BinaryQuantization(binary=m.BinaryQuantizationConfig(always_ram=False)),
    ],
    ids=["product", "binary"],
)
def test_quantization_round_trip_and_disable(client: QdrantClient, name: str, quantization) -> None:  # type: ignore[no-untyped-def]
    client.create_collection(
        name,
        vectors_config=m.VectorParams(size=16, distance=m.Distance.COSINE, quantization_config=quantization),
    )
    vectors = client.get_collection(name).config.params.vectors
    assert isinstance(vectors, m.VectorParams) and vectors.quantization_config == quantization
    client.update_collection(name, vectors_config={"": m.VectorParamsDiff(quantization_config=m.Disabled.DISABLED)})
    info = wait_green(client, name)
    assert isinstance(info.config.params.vectors, m.VectorParams)
    assert info.config.params.vectors.quantization_config is None


def _segment_configs(data_dir, name: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """The engine's own record of how each segment is built (qdrant-edge writes segment.json)."""
    files = sorted((data_dir / "collections" / name / "shards").glob("*/segments/*/segment.json"))
    return [json.loads(f.read_text())["config"]["vector_data"][""] | {"segment": f.parent.name} for f in files]


def test_patch_reindexes_yellow_then_green(client: QdrantClient, qdrant_server, name: str) -> None:  # type: ignore[no-untyped-def]
    client.create_collection(
        name,
        vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE),
        optimizers_config=m.OptimizersConfigDiff(indexing_threshold=1),  # KB: index even a tiny collection
    )
    client.upsert(name, _points(300))
    wait_until(
        lambda: (i := client.get_collection(name)).status == m.CollectionStatus.GREEN and i.indexed_vectors_count,
        what="the initial HNSW index",
    )

    client.update_collection(
        name,
        hnsw_config=m.HnswConfigDiff(m=32, ef_construct=64),
        quantization_config=m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8)),
    )
    if qdrant_server.is_dev:
        assert client.get_collection(name).status == m.CollectionStatus.YELLOW
    info = wait_green(client, name)
    assert (info.config.hnsw_config.m, info.config.hnsw_config.ef_construct) == (32, 64)
    assert isinstance(info.config.quantization_config, m.ScalarQuantization)
    assert info.points_count == 300 and info.indexed_vectors_count == 300
    assert client.count(name).count == 300
    # Writes after the re-index reach the rebuilt segments (the dev server once swapped in a fresh WAL whose
    # operation numbers were below the segments' versions: every update of an existing point was skipped).
    client.upsert(name, [m.PointStruct(id=0, vector=[1.0] * DIM, payload={"after": "reindex"})], wait=True)
    assert client.retrieve(name, [0], with_payload=True)[0].payload == {"after": "reindex"}

    if qdrant_server.is_dev:
        indexed = [s for s in _segment_configs(qdrant_server.data_dir, name) if s["index"]["type"] == "hnsw"]
        assert indexed and all(s["index"]["options"]["m"] == 32 for s in indexed)
        assert all(s["quantization_config"] == {"scalar": {"type": "int8"}} for s in indexed)


def test_several_shards(client: QdrantClient, name: str) -> None:
    client.create_collection(name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.DOT), shard_number=3)
    client.upsert(name, _points(90))
    cluster = client.http.distributed_api.collection_cluster_info(name).result
    assert cluster is not None and cluster.shard_count == 3
    shards = cluster.local_shards + [
        m.LocalShardInfo(shard_id=r.shard_id, points_count=0, state=r.state) for r in cluster.remote_shards
    ]
    assert sorted(s.shard_id for s in shards) == [0, 1, 2]
    if not cluster.remote_shards:
        assert sum(s.points_count for s in cluster.local_shards) == 90
        assert all(s.points_count > 0 for s in cluster.local_shards)
    assert client.get_collection(name).config.params.shard_number == 3

    seen, offset = [], None
    while True:
        page, offset = client.scroll(name, limit=25, offset=offset)
        seen += [p.id for p in page]
        if offset is None:
            break
    assert seen == list(range(90))

    query = [1.0] * DIM
    hits = client.query_points(name, query=query, limit=5, with_vectors=True).points
    best = max(_points(90), key=lambda p: sum(p.vector))  # type: ignore[arg-type]
    assert hits[0].id == best.id
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_payload_indexes(client: QdrantClient, name: str) -> None:
    client.create_collection(name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE))
    client.upsert(name, _points(30))
    client.create_payload_index(
        name, "tenant", m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, is_tenant=True), wait=True
    )
    client.create_payload_index(name, "n", m.PayloadSchemaType.INTEGER, wait=True)
    schema = client.get_collection(name).payload_schema
    assert schema["tenant"].data_type == m.PayloadSchemaType.KEYWORD
    assert isinstance(schema["tenant"].params, m.KeywordIndexParams) and schema["tenant"].params.is_tenant
    assert schema["n"].data_type == m.PayloadSchemaType.INTEGER and schema["n"].points == 30
    ranged = m.Filter(must=[m.FieldCondition(key="n", range=m.Range(gte=10, lt=20))])
    assert client.count(name, count_filter=ranged).count == 10
    client.delete_payload_index(name, "n", wait=True)
    assert set(client.get_collection(name).payload_schema) == {"tenant"}


def test_alias_actions_apply_in_order(client: QdrantClient, name: str) -> None:
    other = f"{name}-b"
    a1, a2 = f"{name}-current", f"{name}-previous"
    try:
        for coll in (name, other):
            client.create_collection(coll, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE))
        client.upsert(name, _points(5))
        client.update_collection_aliases(
            [m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name=name, alias_name=a1))]
        )
        assert client.count(a1).count == 5  # reads resolve aliases
        assert [a.alias_name for a in client.get_collection_aliases(name).aliases] == [a1]

        client.update_collection_aliases(
            [
                m.RenameAliasOperation(rename_alias=m.RenameAlias(old_alias_name=a1, new_alias_name=a2)),
                m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name=other, alias_name=a1)),
            ]
        )
        mine = {a.alias_name: a.collection_name for a in client.get_aliases().aliases if a.alias_name in (a1, a2)}
        assert mine == {a1: other, a2: name}

        # Not all-or-nothing (Qdrant 1.19): the second action fails, the first one stays applied.
        with pytest.raises(UnexpectedResponse):
            client.update_collection_aliases(
                [
                    m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name=a2)),
                    m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name=f"{name}-nope", alias_name="x")),
                ]
            )
        assert a2 not in {a.alias_name for a in client.get_aliases().aliases}
        client.update_collection_aliases([m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name=a1))])
        assert not {a1, a2} & {a.alias_name for a in client.get_aliases().aliases}
    finally:
        client.delete_collection(other)


def test_too_many_shards_is_a_400_in_qdrants_error_shape_and_creates_nothing(
    client: QdrantClient, qdrant_server, name: str
) -> None:  # type: ignore[no-untyped-def]
    qdrant_server.require_dev()  # a real Qdrant documents no maximum (uint32); the dev server serves up to 64
    body = {"vectors": {"size": DIM, "distance": "Dot"}, "shard_number": 1024}
    started = time.monotonic()
    with qdrant_server.http(timeout=30) as http:
        response = http.put(f"/collections/{name}", json=body)
    assert time.monotonic() - started < 5  # refused up front, not after building 1024 engines
    assert response.status_code == 400
    assert "shard_number 1024 exceeds" in response.json()["status"]["error"]
    assert not client.collection_exists(name)


@dev_gap("custom sharding with shard keys is not emulated")
def test_custom_sharding_with_shard_keys(
    qdrant_tier: str, client: QdrantClient, name: str, request: pytest.FixtureRequest
) -> None:
    if qdrant_tier == "real":  # a standalone Qdrant answers 405 "running in standalone mode": shard keys need a cluster
        client = QdrantClient(url=request.getfixturevalue("qdrant_cluster")[0].url, prefer_grpc=False, timeout=30)
        request.addfinalizer(lambda: client.delete_collection(name))
    client.create_collection(
        name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.DOT), sharding_method=m.ShardingMethod.CUSTOM
    )
    client.create_shard_key(name, "eu")
    client.upsert(name, _points(3), shard_key_selector="eu")
    assert client.count(name).count == 3


@dev_gap("queries by point id (nearest to a stored point) are not translated to the engine")
def test_query_by_point_id(client: QdrantClient, name: str) -> None:
    client.create_collection(name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.DOT))
    client.upsert(name, _points(10))
    hits = client.query_points(name, query=3, limit=3).points
    assert len(hits) == 3 and 3 not in {h.id for h in hits}


def _config(qdrant_server, name: str) -> dict:  # type: ignore[no-untyped-def]
    with qdrant_server.http(timeout=10) as http:
        response = http.get(f"/collections/{name}")
    response.raise_for_status()
    return response.json()["result"]["config"]


def _send(qdrant_server, method: str, name: str, body: dict) -> None:  # type: ignore[no-untyped-def]
    with qdrant_server.http(timeout=30) as http:
        http.request(method, f"/collections/{name}", json=body).raise_for_status()


def test_strict_mode_is_kept_as_given_and_patch_merges_it(qdrant_server, name: str) -> None:  # type: ignore[no-untyped-def]
    plain = f"{name}-plain"
    try:
        _send(qdrant_server, "PUT", plain, {"vectors": {"size": DIM, "distance": "Dot"}})
        assert "strict_mode_config" not in _config(qdrant_server, plain)  # none at all, not {"enabled": false}
        _send(qdrant_server, "PATCH", plain, {"strict_mode_config": {"max_timeout": 5}})
        assert _config(qdrant_server, plain)["strict_mode_config"] == {"max_timeout": 5}
    finally:
        with qdrant_server.http(timeout=30) as http:
            http.delete(f"/collections/{plain}")

    strict = {"enabled": True, "max_query_limit": 100, "search_max_oversampling": 1.5, "search_allow_exact": False}
    _send(qdrant_server, "PUT", name, {"vectors": {"size": DIM, "distance": "Dot"}, "strict_mode_config": strict})
    assert _config(qdrant_server, name)["strict_mode_config"] == strict  # no defaults filled in
    _send(qdrant_server, "PATCH", name, {"strict_mode_config": {"max_timeout": 10, "max_query_limit": None}})
    # Key by key; null leaves a limit as it is (it cannot be removed).
    assert _config(qdrant_server, name)["strict_mode_config"] == {**strict, "max_timeout": 10}
    _send(qdrant_server, "PATCH", name, {"strict_mode_config": {"enabled": False}})
    assert _config(qdrant_server, name)["strict_mode_config"] == {**strict, "max_timeout": 10, "enabled": False}
    with qdrant_server.http(timeout=10) as http:
        response = http.patch(f"/collections/{name}", json={"strict_mode_config": {"max_query_limit": 0}})
    assert response.status_code in (400, 422) and "max_query_limit" in response.json()["status"]["error"]


@dev_gap("strict mode is stored and reported, not enforced")
def test_strict_mode_is_enforced(client: QdrantClient, name: str) -> None:
    client.create_collection(
        name,
        vectors_config=m.VectorParams(size=DIM, distance=m.Distance.DOT),
        strict_mode_config=m.StrictModeConfig(enabled=True, max_query_limit=5),
    )
    client.upsert(name, _points(10))
    assert len(client.query_points(name, query=[0.1] * DIM, limit=5).points) == 5
    with pytest.raises(UnexpectedResponse) as err:
        client.query_points(name, query=[0.1] * DIM, limit=6)
    assert err.value.status_code == 400


def test_metadata_patch_merges_keys_and_replaces_values_whole(qdrant_server, name: str) -> None:  # type: ignore[no-untyped-def]
    _send(qdrant_server, "PUT", name, {"vectors": {"size": DIM, "distance": "Dot"}})
    assert "metadata" not in _config(qdrant_server, name)
    # The first metadata is taken as given, a null value too (later nulls remove keys).
    _send(qdrant_server, "PATCH", name, {"metadata": {"gone": None, "n": {"deep": [1, 2]}, "f": 0.1}})
    assert _config(qdrant_server, name)["metadata"] == {"gone": None, "n": {"deep": [1, 2]}, "f": 0.1}
    _send(qdrant_server, "PATCH", name, {"metadata": {"gone": None, "n": {"other": True}, "k": "v"}})
    assert _config(qdrant_server, name)["metadata"] == {"n": {"other": True}, "f": 0.1, "k": "v"}
    _send(qdrant_server, "PATCH", name, {"metadata": {}})
    assert _config(qdrant_server, name)["metadata"] == {"n": {"other": True}, "f": 0.1, "k": "v"}


def test_sparse_index_parameters_round_trip_and_patch_merges_them(qdrant_server, name: str) -> None:  # type: ignore[no-untyped-def]
    index = {"full_scan_threshold": 100, "on_disk": True, "datatype": "float16"}
    body = {"sparse_vectors": {"kw": {"index": index}, "hot": {"index": {"memory": "cached"}, "modifier": "idf"}}}
    _send(qdrant_server, "PUT", name, body)
    assert _config(qdrant_server, name)["params"]["sparse_vectors"] == body["sparse_vectors"]
    # Every index parameter changes in place; what the PATCH leaves out stays.
    _send(qdrant_server, "PATCH", name, {"sparse_vectors": {"kw": {"index": {"datatype": "uint8"}}}})
    _send(qdrant_server, "PATCH", name, {"sparse_vectors": {"hot": {"index": {"memory": "cold"}}}})
    wait_green(qdrant_server.client(), name)
    assert _config(qdrant_server, name)["params"]["sparse_vectors"] == {
        "kw": {"index": {**index, "datatype": "uint8"}},
        "hot": {"index": {"memory": "cold"}, "modifier": "idf"},
    }
    with qdrant_server.http(timeout=10) as http:
        response = http.patch(f"/collections/{name}", json={"sparse_vectors": {"nope": {"index": {"on_disk": True}}}})
        assert response.status_code == 400
        assert response.json()["status"]["error"] == "Wrong input: Not existing vector name error: nope"
        turbo = http.put(f"/collections/{name}-t", json={"sparse_vectors": {"kw": {"index": {"datatype": "turbo4"}}}})
        assert turbo.status_code in (400, 422)
        http.delete(f"/collections/{name}-t")


@dev_gap("the engine's segments keep a sparse vector's modifier: changing it is refused (400)")
def test_sparse_modifier_changes_in_place(qdrant_server, name: str) -> None:  # type: ignore[no-untyped-def]
    _send(qdrant_server, "PUT", name, {"sparse_vectors": {"kw": {"index": {"on_disk": True}}}})
    _send(qdrant_server, "PATCH", name, {"sparse_vectors": {"kw": {"modifier": "idf"}}})
    assert _config(qdrant_server, name)["params"]["sparse_vectors"] == {
        "kw": {"index": {"on_disk": True}, "modifier": "idf"}
    }
