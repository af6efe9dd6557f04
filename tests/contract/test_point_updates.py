"""Updates of existing points: vectors (update, delete) and payloads (set, overwrite, delete keys, clear).

Every change is checked by retrieving the points again, including that vectors and payload keys an update
does not mention are kept. Collections have several shards, so ids spread over them.
"""

from __future__ import annotations

import json

import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from tests.contract.conftest import wait_until

DIM = 4
SHARDS = 3


def _error(exc: UnexpectedResponse) -> str:
    return str(json.loads(exc.content)["status"]["error"])


def _unit(i: int) -> list[float]:
    return [float(i == j) for j in range(DIM)]


def _by_id(client: QdrantClient, name: str, ids: list[int]) -> dict[int | str, m.Record]:
    return {p.id: p for p in client.retrieve(name, ids, with_payload=True, with_vectors=True)}


@pytest.fixture
def plain(client: QdrantClient, name: str) -> str:
    """Six points with an unnamed Dot vector (not normalised, so vectors read back exactly)."""
    client.create_collection(
        name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.DOT), shard_number=SHARDS
    )
    client.upsert(
        name,
        [
            m.PointStruct(id=i, vector=_unit(i % DIM), payload={"n": i, "group": "a" if i < 3 else "b", "o": {"x": i}})
            for i in range(6)
        ],
    )
    return name


def test_update_vectors_unnamed(client: QdrantClient, plain: str) -> None:
    result = client.update_vectors(plain, [m.PointVectors(id=1, vector=[9.0, 8.0, 7.0, 6.0])], wait=True)
    assert result.status == m.UpdateStatus.COMPLETED
    points = _by_id(client, plain, [0, 1, 2])
    assert points[1].vector == [9.0, 8.0, 7.0, 6.0]
    assert points[1].payload == {"n": 1, "group": "a", "o": {"x": 1}}  # the payload is untouched
    assert points[0].vector == _unit(0) and points[2].vector == _unit(2)
    hits = client.query_points(plain, query=[1.0, 1.0, 1.0, 1.0], limit=1).points
    assert hits[0].id == 1 and hits[0].score == pytest.approx(30.0)

    # Several points on different shards in one request; the same id twice: the later vector wins.
    client.update_vectors(
        plain,
        [
            m.PointVectors(id=3, vector=[0.0, 0.0, 0.0, 2.0]),
            m.PointVectors(id=4, vector=[0.0, 0.0, 3.0, 0.0]),
            m.PointVectors(id=3, vector=[0.0, 0.0, 0.0, 5.0]),
        ],
    )
    points = _by_id(client, plain, [3, 4])
    assert points[3].vector == [0.0, 0.0, 0.0, 5.0] and points[4].vector == [0.0, 0.0, 3.0, 0.0]
    assert client.count(plain).count == 6  # updates never insert


def test_update_vectors_of_a_missing_point_is_not_found(client: QdrantClient, plain: str) -> None:
    with pytest.raises(UnexpectedResponse) as err:
        client.update_vectors(plain, [m.PointVectors(id=42, vector=_unit(0))])
    assert err.value.status_code == 404
    assert _error(err.value) == "Not found: No point with id 42 found"
    assert client.count(plain).count == 6
    assert not client.retrieve(plain, [42])

    with pytest.raises(UnexpectedResponse) as err:
        client.update_vectors(plain, [m.PointVectors(id=1, vector=[1.0] * (DIM + 1))])
    assert err.value.status_code == 400
    assert "Vector dimension error" in _error(err.value)


def test_update_vectors_with_update_filter(client: QdrantClient, plain: str) -> None:
    group_b = m.Filter(must=[m.FieldCondition(key="group", match=m.MatchValue(value="b"))])
    client.update_vectors(
        plain,
        [m.PointVectors(id=1, vector=[7.0] * DIM), m.PointVectors(id=4, vector=[7.0] * DIM)],
        update_filter=group_b,
    )
    points = _by_id(client, plain, [1, 4])
    assert points[1].vector == _unit(1)  # in group a: left alone
    assert points[4].vector == [7.0] * DIM


def test_set_payload_by_ids_filter_and_key(client: QdrantClient, plain: str) -> None:
    client.set_payload(plain, {"tag": "x", "n": 100}, points=[0, 4])
    points = _by_id(client, plain, [0, 1, 4])
    assert points[0].payload == {"n": 100, "group": "a", "o": {"x": 0}, "tag": "x"}  # merged, n replaced
    assert points[4].payload == {"n": 100, "group": "b", "o": {"x": 4}, "tag": "x"}
    assert points[1].payload == {"n": 1, "group": "a", "o": {"x": 1}}
    assert points[0].vector == _unit(0)  # vectors are untouched

    group_b = m.Filter(must=[m.FieldCondition(key="group", match=m.MatchValue(value="b"))])
    client.set_payload(plain, {"seen": "b"}, points=group_b)
    seen = m.Filter(must=[m.FieldCondition(key="seen", match=m.MatchValue(value="b"))])
    assert client.count(plain, count_filter=seen).count == 3
    assert {p.id for p in client.scroll(plain, scroll_filter=group_b, limit=10)[0]} == {3, 4, 5}

    client.set_payload(plain, {"y": 2}, points=[2], key="o")  # into the nested object at `o`
    assert _by_id(client, plain, [2])[2].payload == {"n": 2, "group": "a", "o": {"x": 2, "y": 2}}

    with pytest.raises(UnexpectedResponse) as err:
        client.set_payload(plain, {"tag": "y"}, points=[1, 77])
    assert err.value.status_code == 404
    assert _error(err.value) == "Not found: No point with id 77 found"


def test_overwrite_payload(client: QdrantClient, plain: str) -> None:
    client.overwrite_payload(plain, {"only": 1}, points=[1, 5])
    points = _by_id(client, plain, [1, 2, 5])
    assert points[1].payload == {"only": 1} and points[5].payload == {"only": 1}
    assert points[2].payload == {"n": 2, "group": "a", "o": {"x": 2}}
    assert points[1].vector == _unit(1)

    group_a = m.Filter(must=[m.FieldCondition(key="group", match=m.MatchValue(value="a"))])
    client.overwrite_payload(plain, {"was_a": True}, points=group_a)
    points = _by_id(client, plain, [0, 1, 2, 3])
    assert [points[i].payload for i in (0, 2)] == [{"was_a": True}] * 2
    assert points[1].payload == {"only": 1}  # no longer in group a when the filter ran
    assert points[3].payload == {"n": 3, "group": "b", "o": {"x": 3}}


def test_delete_payload_keys(client: QdrantClient, plain: str) -> None:
    client.delete_payload(plain, ["n", "o.x", "absent"], points=[0, 3])
    points = _by_id(client, plain, [0, 1, 3])
    assert points[0].payload == {"group": "a", "o": {}} and points[3].payload == {"group": "b", "o": {}}
    assert points[1].payload == {"n": 1, "group": "a", "o": {"x": 1}}

    group_b = m.Filter(must=[m.FieldCondition(key="group", match=m.MatchValue(value="b"))])
    client.delete_payload(plain, ["group"], points=group_b)
    points = _by_id(client, plain, [3, 4, 5, 2])
    assert points[4].payload == {"n": 4, "o": {"x": 4}} and points[5].payload == {"n": 5, "o": {"x": 5}}
    assert points[2].payload == {"n": 2, "group": "a", "o": {"x": 2}}

    with pytest.raises(UnexpectedResponse) as err:
        client.delete_payload(plain, ["n"], points=[99])
    assert err.value.status_code == 404


def test_clear_payload(client: QdrantClient, plain: str) -> None:
    client.clear_payload(plain, m.PointIdsList(points=[1, 2]))
    points = _by_id(client, plain, [0, 1, 2])
    assert not points[1].payload and not points[2].payload
    assert points[0].payload == {"n": 0, "group": "a", "o": {"x": 0}}
    assert points[1].vector == _unit(1)

    group_b = m.Filter(must=[m.FieldCondition(key="group", match=m.MatchValue(value="b"))])
    client.clear_payload(plain, m.FilterSelector(filter=group_b))
    assert all(not p.payload for p in _by_id(client, plain, [3, 4, 5]).values())
    assert client.count(plain).count == 6

    with pytest.raises(UnexpectedResponse) as err:
        client.clear_payload(plain, m.PointIdsList(points=[123]))
    assert err.value.status_code == 404


def test_payload_update_needs_points_or_filter(qdrant_server, plain: str) -> None:  # type: ignore[no-untyped-def]
    with qdrant_server.http(timeout=10) as http:
        resp = http.post(f"/collections/{plain}/points/payload", json={"payload": {"a": 1}})
        assert resp.status_code in (400, 422)
        assert resp.json()["status"]["error"]
        resp = http.put(f"/collections/{plain}/points/payload?wait=true", json={"payload": {"a": 1}, "points": [0]})
        assert resp.status_code == 200
        assert resp.json()["result"]["status"] == "completed"
        resp = http.post("/collections/no-such-collection/points/payload", json={"payload": {}, "points": [0]})
        assert resp.status_code == 404


def test_unwaited_updates_are_acknowledged_and_applied(client: QdrantClient, plain: str) -> None:
    result = client.set_payload(plain, {"late": 1}, points=[2], wait=False)
    assert result.status in (m.UpdateStatus.ACKNOWLEDGED, m.UpdateStatus.COMPLETED)
    wait_until(lambda: (_by_id(client, plain, [2])[2].payload or {}).get("late") == 1, what="the payload")
    client.update_vectors(plain, [m.PointVectors(id=2, vector=[4.0] * DIM)], wait=False)
    wait_until(lambda: _by_id(client, plain, [2])[2].vector == [4.0] * DIM, what="the vector")


def test_updates_are_counted(qdrant_server, client: QdrantClient, plain: str) -> None:  # type: ignore[no-untyped-def]
    qdrant_server.require_counts()
    qdrant_server.reset_requests()
    client.update_vectors(plain, [m.PointVectors(id=0, vector=_unit(1))])
    client.set_payload(plain, {"a": 1}, points=[0])
    client.set_payload(plain, {"a": 2}, points=[1])
    client.clear_payload(plain, m.PointIdsList(points=[0]))
    assert qdrant_server.count("PUT", "/collections/{collection_name}/points/vectors") == 1
    assert qdrant_server.count("POST", "/collections/{collection_name}/points/payload") == 2
    assert qdrant_server.count("POST", "/collections/{collection_name}/points/payload/clear") == 1


def test_updates_need_write_access(qdrant_server, qdrant_server_factory) -> None:  # type: ignore[no-untyped-def]
    qdrant_server.require_dev()
    server = qdrant_server_factory(api_key="w", read_only_api_key="r")
    server.client().create_collection("c", vectors_config=m.VectorParams(size=DIM, distance=m.Distance.DOT))
    server.client().upsert("c", [m.PointStruct(id=1, vector=_unit(0))])
    with pytest.raises(UnexpectedResponse) as err:
        server.client(api_key="r").set_payload("c", {"a": 1}, points=[1])
    assert err.value.status_code == 403


async def test_named_sparse_vectors_and_payload_async(qdrant_server, name: str) -> None:  # type: ignore[no-untyped-def]
    aclient = qdrant_server.async_client()
    try:
        await aclient.create_collection(
            name,
            vectors_config={
                "a": m.VectorParams(size=DIM, distance=m.Distance.DOT),
                "b": m.VectorParams(size=2, distance=m.Distance.DOT),
            },
            sparse_vectors_config={"s": m.SparseVectorParams()},
            shard_number=SHARDS,
        )
        await aclient.upsert(
            name,
            [
                m.PointStruct(
                    id=i,
                    vector={"a": _unit(i % DIM), "b": [1.0, float(i)], "s": m.SparseVector(indices=[i], values=[1.0])},
                    payload={"i": i, "keep": True},
                )
                for i in range(1, 7)
            ],
        )

        async def get(i: int) -> m.Record:
            return (await aclient.retrieve(name, [i], with_vectors=True, with_payload=True))[0]

        # Only the named vectors given change.
        await aclient.update_vectors(
            name,
            [
                m.PointVectors(id=2, vector={"b": [5.0, 5.0]}),
                m.PointVectors(id=3, vector={"s": m.SparseVector(indices=[9], values=[2.0])}),
            ],
        )
        two, three = await get(2), await get(3)
        assert isinstance(two.vector, dict) and isinstance(three.vector, dict)
        assert two.vector["b"] == [5.0, 5.0] and two.vector["a"] == _unit(2)
        assert two.vector["s"] == m.SparseVector(indices=[2], values=[1.0])
        assert three.vector["s"] == m.SparseVector(indices=[9], values=[2.0]) and three.vector["b"] == [1.0, 3.0]
        assert two.payload == {"i": 2, "keep": True}
        hits = await aclient.query_points(name, query=m.SparseVector(indices=[9], values=[1.0]), using="s", limit=1)
        assert hits.points[0].id == 3

        # Delete vectors by ids and by filter; the point and its other vectors stay.
        await aclient.delete_vectors(name, ["b"], points=[1, 2])
        one = await get(1)
        assert isinstance(one.vector, dict) and set(one.vector) == {"a", "s"}
        high = m.Filter(must=[m.FieldCondition(key="i", range=m.Range(gte=5))])
        await aclient.delete_vectors(name, ["a", "s"], points=high)
        for i in (5, 6):
            record = await get(i)
            assert isinstance(record.vector, dict) and set(record.vector) == {"b"}
            assert record.payload == {"i": i, "keep": True}
        assert set((await get(4)).vector or {}) == {"a", "b", "s"}
        assert (await aclient.count(name)).count == 6
        with pytest.raises(UnexpectedResponse) as err:
            await aclient.delete_vectors(name, ["nope"], points=[1])
        assert err.value.status_code in (400, 404)
        with pytest.raises(UnexpectedResponse) as err:
            await aclient.update_vectors(name, [m.PointVectors(id=100, vector={"b": [1.0, 1.0]})])
        assert err.value.status_code == 404

        # Payload operations through the async client.
        await aclient.set_payload(name, {"extra": "e"}, points=[4])
        await aclient.overwrite_payload(name, {"fresh": 1}, points=[5])
        await aclient.delete_payload(name, ["keep"], points=[6])
        await aclient.clear_payload(name, m.PointIdsList(points=[1]))
        assert (await get(4)).payload == {"i": 4, "keep": True, "extra": "e"}
        assert (await get(5)).payload == {"fresh": 1}
        assert (await get(6)).payload == {"i": 6}
        assert not (await get(1)).payload
        assert (await get(3)).payload == {"i": 3, "keep": True}
    finally:
        await aclient.close()
