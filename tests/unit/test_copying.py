"""Which copied points count as the same in a catch-up pass (qdrant/copying.py, pure; points as Qdrant's JSON)."""

from __future__ import annotations

import math

from collection_operator.qdrant.copying import same_point


def record(vector, payload=None, pid=1):
    return {"id": pid, "vector": vector, "payload": payload or {"n": 1}}


def test_a_copy_read_back_from_another_datatype_or_a_cosine_collection_is_the_same_point():
    original = [3.0, 4.0, 0.0]
    normalised = [x / 5.0 for x in original]  # what a Cosine collection returns
    float16 = [2.998, 4.001, 0.0]
    assert same_point(record(original), record(normalised))
    assert same_point(record(original), record(float16))
    assert same_point(record({"a": original}), record({"a": normalised, "b": [1.0]})), "extra target vectors"


def test_a_changed_point_is_not_the_same():
    assert not same_point(record([3.0, 4.0, 0.0]), None)
    assert not same_point(record([3.0, 4.0, 0.0]), record([4.0, 3.0, 0.0])), "another direction"
    assert not same_point(record([3.0, 4.0, 0.0]), record([6.0, 8.0, 0.0])), "another length, not a unit vector"
    assert not same_point(record([1.0, 0.0]), record([1.0, 0.0], {"n": 2})), "another payload"
    assert not same_point(record({"a": [1.0, 0.0]}), record({"b": [1.0, 0.0]})), "a vector missing"
    angle = math.radians(2)
    assert not same_point(record([1.0, 0.0]), record([math.cos(angle), math.sin(angle)]))


def test_sparse_and_multivectors():
    sparse = {"indices": [1, 7], "values": [0.5, 0.25]}
    assert same_point(record({"s": sparse}), record({"s": {"indices": [1, 7], "values": [0.5, 0.25]}}))
    assert not same_point(record({"s": sparse}), record({"s": {"indices": [1, 8], "values": [0.5, 0.25]}}))
    matrix = [[1.0, 0.0], [0.0, 1.0]]
    assert same_point(record({"m": matrix}), record({"m": [[1.0, 0.0], [0.0, 1.0]]}))
    assert not same_point(record({"m": matrix}), record({"m": [[1.0, 0.0]]}))
