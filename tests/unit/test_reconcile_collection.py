"""The VectorCollection plan: pure logic against Qdrant-shaped collection info."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from collection_operator.api import VectorCollectionSpec
from collection_operator.reconcile import mapping
from collection_operator.reconcile.collection import Ownership, owner_marker, ownership, plan, plan_actions

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MARKER = owner_marker("ns", "docs", "uid-1")
QDRANT_HNSW = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000, "max_indexing_threads": 0, "on_disk": False}
QDRANT_OPTIMIZERS = {
    "deleted_threshold": 0.2,
    "vacuum_min_vector_number": 1000,
    "default_segment_number": 0,
    "max_segment_size": None,
    "memmap_threshold": None,
    "indexing_threshold": 10000,
    "flush_interval_sec": 5,
    "max_optimization_threads": None,
}


def spec(**fields: Any) -> VectorCollectionSpec:
    return VectorCollectionSpec.model_validate({"connectionRef": {"name": "main"}, **fields})


def live_from(body: dict[str, Any], indexes: dict[str, Any] | None = None) -> dict[str, Any]:
    """What GET /collections/{name} returns after PUT with `body`: Qdrant's defaults filled in."""
    body = copy.deepcopy(body)
    return {
        "status": "green",
        "points_count": 0,
        "indexed_vectors_count": 0,
        "segments_count": 2,
        "config": {
            "params": {
                "vectors": body["vectors"],
                "shard_number": body.get("shard_number", 1),
                "replication_factor": body.get("replication_factor", 1),
                "write_consistency_factor": body.get("write_consistency_factor", 1),
                "on_disk_payload": body.get("on_disk_payload", True),
                **({"sparse_vectors": body["sparse_vectors"]} if "sparse_vectors" in body else {}),
            },
            "hnsw_config": QDRANT_HNSW | body.get("hnsw_config", {}),
            "optimizer_config": QDRANT_OPTIMIZERS | body.get("optimizers_config", {}),
            "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0} | body.get("wal_config", {}),
            "quantization_config": body.get("quantization_config"),
            **({"strict_mode_config": body["strict_mode_config"]} if "strict_mode_config" in body else {}),
            "metadata": body.get("metadata"),
        },
        "payload_schema": indexes or {},
    }


def run(s: VectorCollectionSpec, info: dict[str, Any] | None, **kw: Any):
    kw = {"live_aliases": {}, "managed_indexes": [], "managed_aliases": [], "collection": "docs"} | kw
    return plan(s, info, MARKER, **kw)


def complete() -> VectorCollectionSpec:
    example = yaml.safe_load((EXAMPLES / "vectorcollection-complete.yaml").read_text())
    return VectorCollectionSpec.model_validate(example["spec"])


def test_create_maps_every_field_to_qdrant_names():
    p = run(complete(), None)
    body = p.create
    assert body["vectors"]["text"] == {
        "size": 768,
        "distance": "Cosine",
        "datatype": "float32",
        "on_disk": False,
        "hnsw_config": {"m": 32, "ef_construct": 200},
    }
    assert body["vectors"]["title"]["quantization_config"] == {"binary": {"always_ram": True}}
    assert body["vectors"]["colbert"]["multivector_config"] == {"comparator": "max_sim"}
    assert body["sparse_vectors"] == {
        "keywords": {"index": {"on_disk": True, "full_scan_threshold": 5000, "datatype": "float16"}, "modifier": "idf"}
    }
    assert body["strict_mode_config"] == {
        "enabled": True,
        "max_query_limit": 1000,
        "unindexed_filtering_retrieve": False,
        "search_max_hnsw_ef": 512,
    }
    assert body["quantization_config"] == {"scalar": {"type": "int8", "quantile": 0.99, "always_ram": True}}
    assert body["optimizers_config"]["default_segment_number"] == 2
    assert body["wal_config"] == {"wal_capacity_mb": 32, "wal_segments_ahead": 0}
    assert body["shard_number"] == 2 and body["on_disk_payload"] is True
    assert body["metadata"] == {"embeddingModel": "e5-large-v2", "team": "search", mapping.OWNER_KEY: MARKER}
    assert p.create_indexes == {
        "tenant": {"type": "keyword", "is_tenant": True},
        "created": {"type": "datetime"},
        "body": {"type": "text", "tokenizer": "word", "lowercase": True},
    }
    assert p.alias_actions == [{"create_alias": {"collection_name": "docs", "alias_name": "docs-current"}}]


def test_unnamed_vector_is_bare_vector_params():
    body = run(spec(vectors=[{"size": 4, "distance": "Dot"}]), None).create
    assert body["vectors"] == {"size": 4, "distance": "Dot"}


def test_a_collection_as_created_is_in_sync():
    s = complete()
    p = run(s, None)
    info = live_from(
        p.create,
        {
            name: {"data_type": schema["type"], "params": schema, "points": 0}
            for name, schema in p.create_indexes.items()
        },
    )
    again = run(
        s,
        info,
        live_aliases={"docs-current": "docs"},
        managed_indexes=list(p.create_indexes),
        managed_aliases=["docs-current"],
    )
    assert not again.writes and again.drift == [] and again.immutable == []


def test_hnsw_change_patches_only_the_hnsw_block():
    before = spec(vectors=[{"size": 4, "distance": "Dot"}], hnsw={"m": 16})
    info = live_from(run(before, None).create)
    p = run(spec(vectors=[{"size": 4, "distance": "Dot"}], hnsw={"m": 32}), info)
    assert p.update == {"hnsw_config": {"m": 32}}
    assert p.reindexes
    assert [d.as_status() for d in p.drift] == [{"field": "hnsw.m", "desired": "32", "actual": "16"}]


def test_replication_change_is_params_only_and_does_not_reindex():
    info = live_from(run(spec(vectors=[{"size": 4, "distance": "Dot"}]), None).create)
    p = run(spec(vectors=[{"size": 4, "distance": "Dot"}], replicationFactor=2), info)
    assert p.update == {"params": {"replication_factor": 2}}
    assert not p.reindexes


def test_per_vector_quantization_change_and_disable():
    named = [{"name": "a", "size": 4, "distance": "Dot", "quantization": {"scalar": {"quantile": 0.99}}}]
    info = live_from(run(spec(vectors=named), None).create)
    binary = [{**named[0], "quantization": {"binary": {"alwaysRam": True}}}]
    assert run(spec(vectors=binary), info).update == {
        "vectors": {"a": {"quantization_config": {"binary": {"always_ram": True}}}}
    }
    disabled = [{**named[0], "quantization": {"disabled": True}}]
    assert run(spec(vectors=disabled), info).update == {"vectors": {"a": {"quantization_config": "Disabled"}}}


def test_disabled_quantization_matches_none_and_is_left_out_on_create():
    s = spec(vectors=[{"size": 4, "distance": "Dot"}], quantization={"disabled": True})
    body = run(s, None).create
    assert "quantization_config" not in body
    assert not run(s, live_from(body)).writes


def test_immutable_change_touches_nothing():
    info = live_from(run(spec(vectors=[{"size": 4, "distance": "Dot"}], hnsw={"m": 16}), None).create)
    p = run(spec(vectors=[{"size": 8, "distance": "Dot"}], hnsw={"m": 32}, aliases=["x"]), info)
    assert [d.path for d in p.immutable] == ["vectors[].size"]
    assert not p.writes


def test_adding_a_named_vector_is_immutable():
    info = live_from(run(spec(vectors=[{"name": "a", "size": 4, "distance": "Dot"}]), None).create)
    two = [{"name": "a", "size": 4, "distance": "Dot"}, {"name": "b", "size": 4, "distance": "Dot"}]
    p = run(spec(vectors=two), info)
    assert p.immutable[0].path == "vectors" and not p.writes


def dense(name: str, size: int = 4, **fields: Any) -> dict[str, Any]:
    return {"name": name, "size": size, "distance": "Dot", **fields}


def named_live(*names: str, sparse: tuple[str, ...] = ()) -> dict[str, Any]:
    s = spec(vectors=[dense(n) for n in names], sparseVectors=[{"name": n} for n in sparse])
    return live_from(run(s, None).create)


def test_vectors_added_and_removed_in_place_when_qdrant_supports_it():
    info = named_live("a", "b", sparse=("s",))
    c = dense("c", 8, distance="Cosine", hnsw={"m": 32}, onDisk=True, quantization={"disabled": True})
    t = {"name": "t", "modifier": "Idf", "index": {"onDisk": True, "datatype": "Float16"}}
    s = spec(vectors=[dense("a"), c], sparseVectors=[{"name": "s"}, t])
    p = run(s, info, in_place_vectors=True, managed_vectors=["a", "b", "s"])
    assert p.immutable == []
    assert p.create_vectors == {
        "c": {"dense": {"size": 8, "distance": "Cosine"}},
        "t": {"sparse": {"modifier": "idf", "datatype": "float16"}},
    }
    assert p.delete_vectors == ["b"]
    # A new vector is created bare (Qdrant's VectorNameConfig); its settings follow in the PATCH.
    assert p.update == {
        "vectors": {"c": {"on_disk": True, "hnsw_config": {"m": 32}}},
        "sparse_vectors": {"t": {"index": {"on_disk": True, "datatype": "float16"}, "modifier": "idf"}},
    }
    assert [d.path for d in p.drift] == ["vectors[c]", "sparseVectors[t]", "vectors[b]"]
    assert p.writes and p.reindexes


def test_vectors_as_qdrant_shows_them_after_the_change_are_in_sync():
    info = named_live("a", "b")
    s = spec(vectors=[dense("a"), dense("c", 8, hnsw={"m": 32})], sparseVectors=[{"name": "t", "modifier": "Idf"}])
    p = run(s, info, in_place_vectors=True, managed_vectors=["a", "b"])
    params = info["config"]["params"]
    del params["vectors"]["b"]
    params["vectors"]["c"] = {"size": 8, "distance": "Dot", "hnsw_config": {"m": 32}}  # created, then patched
    params["sparse_vectors"] = {"t": {"modifier": "idf"}}
    assert p.delete_vectors == ["b"]
    again = run(s, info, in_place_vectors=True)
    assert not again.writes and again.drift == [] and again.immutable == []


def test_vector_set_changes_stay_immutable_without_support():
    info = named_live("a", sparse=("s",))
    for given in ({}, {"in_place_vectors": False}):
        p = run(spec(vectors=[dense("a"), dense("b")], sparseVectors=[{"name": "s"}]), info, **given)
        assert [d.as_status() for d in p.immutable] == [
            {"field": "vectors", "desired": "['a', 'b']", "actual": "['a']"}
        ]
        assert not p.writes and p.create_vectors == {} and p.delete_vectors == []
    p = run(spec(vectors=[dense("a")], sparseVectors=[{"name": "t"}]), info)
    assert [d.path for d in p.immutable] == ["sparseVectors"] and not p.writes


def test_unnamed_and_named_never_change_into_each_other():
    unnamed = live_from(run(spec(vectors=[{"size": 4, "distance": "Dot"}]), None).create)
    p = run(spec(vectors=[dense("a")]), unnamed, in_place_vectors=True)
    assert [d.path for d in p.immutable] == ["vectors"] and not p.writes
    p = run(spec(vectors=[{"size": 4, "distance": "Dot"}]), named_live("a"), in_place_vectors=True)
    assert [d.path for d in p.immutable] == ["vectors"] and not p.writes
    # What Qdrant shows after a named vector was added to an unnamed collection behind the operator's back.
    mixed = named_live("b")
    mixed["config"]["params"]["vectors"][""] = {"size": 4, "distance": "Dot"}
    p = run(spec(vectors=[dense("b"), dense("c")]), mixed, in_place_vectors=True)
    assert [d.path for d in p.immutable] == ["vectors"] and not p.writes


def test_sparse_vectors_of_an_unnamed_collection_change_in_place():
    s = spec(vectors=[{"size": 4, "distance": "Dot"}], sparseVectors=[{"name": "s"}])
    info = live_from(run(s, None).create)
    p = run(
        spec(vectors=[{"size": 4, "distance": "Dot"}], sparseVectors=[{"name": "t"}]),
        info,
        in_place_vectors=True,
        managed_vectors=["s"],
    )
    assert p.create_vectors == {"t": {"sparse": {}}} and p.delete_vectors == ["s"] and p.immutable == []


def test_a_name_never_moves_between_dense_and_sparse():
    info = named_live("a", sparse=("s",))
    p = run(spec(vectors=[dense("a"), dense("s")]), info, in_place_vectors=True)
    assert [d.path for d in p.immutable] == ["vectors"] and not p.writes
    p = run(spec(vectors=[dense("a")], sparseVectors=[{"name": "a"}, {"name": "s"}]), info, in_place_vectors=True)
    assert [d.path for d in p.immutable] == ["sparseVectors"] and not p.writes


def test_an_empty_sparse_list_leaves_the_live_ones_alone():
    p = run(spec(vectors=[dense("a"), dense("b")]), named_live("a", sparse=("s",)), in_place_vectors=True)
    assert list(p.create_vectors) == ["b"] and p.delete_vectors == []


def test_a_kept_vector_whose_size_changed_stalls_the_whole_plan():
    p = run(spec(vectors=[dense("a", 8), dense("c")]), named_live("a", "b"), in_place_vectors=True)
    assert [d.path for d in p.immutable] == ["vectors[a].size"]
    assert not p.writes and p.create_vectors == {} and p.delete_vectors == []


def test_adopting_adds_vectors_but_never_deletes_them():
    info = named_live("a", "b")
    info["config"]["metadata"] = {}
    p = run(spec(vectors=[dense("a")]), info, adopt=True, in_place_vectors=True)
    assert p.immutable == [] and p.delete_vectors == [] and p.kept_vectors == ["b"]
    p = run(spec(vectors=[dense("a"), dense("b"), dense("c")]), info, adopt=True, in_place_vectors=True)
    assert list(p.create_vectors) == ["c"] and p.update == {"metadata": {mapping.OWNER_KEY: MARKER}}


def test_a_vector_this_resource_never_declared_is_left_with_its_data():
    """Added by hand in Qdrant (or there before the operator took over): Enforce never deletes its data; only a
    vector dropped from the spec after being declared (status.vectorNames) is removed."""
    p = run(spec(vectors=[dense("a")]), named_live("a", "b"), in_place_vectors=True, managed_vectors=["a"])
    assert p.immutable == [] and p.delete_vectors == [] and p.kept_vectors == ["b"] and not p.writes
    p = run(spec(vectors=[dense("a")]), named_live("a", "b"), in_place_vectors=True, managed_vectors=["a", "b"])
    assert p.delete_vectors == ["b"] and p.kept_vectors == []


def test_report_policy_lists_vector_changes_and_writes_nothing():
    s = spec(vectors=[dense("a"), dense("c")], driftPolicy="Report")
    p = run(s, named_live("a", "b"), in_place_vectors=True, managed_vectors=["a", "b"])
    assert [d.path for d in p.drift] == ["vectors[c]", "vectors[b]"]
    assert not p.writes and p.create_vectors == {} and p.delete_vectors == []


def test_report_policy_lists_drift_and_writes_nothing():
    info = live_from(run(spec(vectors=[{"size": 4, "distance": "Dot"}], hnsw={"m": 16}), None).create)
    p = run(spec(vectors=[{"size": 4, "distance": "Dot"}], hnsw={"m": 32}, driftPolicy="Report"), info)
    assert [d.path for d in p.drift] == ["hnsw.m"] and not p.writes


def test_fields_left_out_are_qdrants_business():
    info = live_from(run(spec(vectors=[{"size": 4, "distance": "Dot"}]), None).create)
    info["config"]["hnsw_config"]["m"] = 48  # changed in Qdrant, but the spec states no HNSW
    assert not run(spec(vectors=[{"size": 4, "distance": "Dot"}]), info).writes


def test_payload_indexes_added_changed_and_only_managed_ones_removed():
    s = spec(
        vectors=[{"size": 4, "distance": "Dot"}],
        payloadIndexes=[
            {"field": "tenant", "type": "Keyword", "params": {"isTenant": True}},
            {"field": "n", "type": "Integer"},
        ],
    )
    info = live_from(
        run(s, None).create,
        {
            "tenant": {"data_type": "keyword", "params": {"type": "keyword", "is_tenant": False}, "points": 0},
            "old": {"data_type": "keyword", "points": 0},
            "foreign": {"data_type": "keyword", "points": 0},
        },
    )
    p = run(s, info, managed_indexes=["tenant", "old"])
    assert p.create_indexes == {"tenant": {"type": "keyword", "is_tenant": True}, "n": {"type": "integer"}}
    assert p.delete_indexes == ["tenant", "old"]


def test_aliases_created_removed_and_never_stolen():
    info = live_from(run(spec(vectors=[{"size": 4, "distance": "Dot"}]), None).create)
    live = {"taken": "other", "gone": "docs", "theirs": "docs"}
    p = run(
        spec(vectors=[{"size": 4, "distance": "Dot"}], aliases=["new"]),
        info,
        live_aliases=live,
        managed_aliases=["gone"],
    )
    assert p.alias_actions == [
        {"create_alias": {"collection_name": "docs", "alias_name": "new"}},
        {"delete_alias": {"alias_name": "gone"}},
    ]
    conflict = run(
        spec(vectors=[{"size": 4, "distance": "Dot"}], aliases=["new", "taken", "coll"], hnsw={"m": 9}),
        info,
        live_aliases=live,
        managed_aliases=["gone"],
        collections=["coll", "docs"],
    )
    assert conflict.alias_conflicts == ["taken", "coll"]
    assert not conflict.writes, "a conflict writes nothing, not even the rest of the plan"


def test_embeddings_preset_and_explicit_fields_win():
    body = run(spec(preset="Embeddings", vectors=[{"size": 4, "distance": "Dot"}], hnsw={"m": 8}), None).create
    assert body["hnsw_config"] == {"m": 8, "ef_construct": 1024, "full_scan_threshold": 20000}
    assert body["optimizers_config"] == {"default_segment_number": 4, "memmap_threshold": 100000}
    assert body["quantization_config"] == {"scalar": {"type": "int8", "quantile": 0.99, "always_ram": True}}


def test_high_recall_and_low_memory_presets():
    high = run(spec(preset="HighRecall", vectors=[{"size": 4, "distance": "Dot"}]), None).create
    assert "quantization_config" not in high and high["hnsw_config"]["m"] == 64
    low = run(spec(preset="LowMemory", vectors=[{"name": "a", "size": 4, "distance": "Dot"}]), None).create
    assert low["vectors"]["a"]["on_disk"] is True and low["hnsw_config"] == {"on_disk": True}
    assert low["on_disk_payload"] is True and low["quantization_config"]["scalar"]["always_ram"] is True


def test_ownership_marker():
    info = live_from(run(spec(vectors=[{"size": 4, "distance": "Dot"}]), None).create)
    assert ownership(info, MARKER) == (Ownership.OURS, MARKER)
    assert ownership(info, owner_marker("ns", "other", "uid-2"))[0] == Ownership.OTHER
    info["config"]["metadata"] = None
    assert ownership(info, MARKER) == (Ownership.UNMARKED, None)


def test_adopt_claims_with_the_marker_only():
    info = live_from(run(spec(vectors=[{"size": 4, "distance": "Dot"}]), None).create)
    info["config"]["metadata"] = {}
    p = run(spec(vectors=[{"size": 4, "distance": "Dot"}]), info, adopt=True)
    assert p.update == {"metadata": {mapping.OWNER_KEY: MARKER}}


DOT4 = [{"size": 4, "distance": "Dot"}]


def test_strict_mode_created_patched_in_place_and_reported():
    strict = {"enabled": True, "maxQueryLimit": 100, "searchMaxOversampling": 1.5, "unindexedFilteringRetrieve": False}
    body = run(spec(vectors=DOT4, strictMode=strict), None).create
    assert body["strict_mode_config"] == {
        "enabled": True,
        "max_query_limit": 100,
        "search_max_oversampling": 1.5,
        "unindexed_filtering_retrieve": False,
    }
    info = live_from(body)
    assert not run(spec(vectors=DOT4, strictMode=strict), info).writes

    changed = run(spec(vectors=DOT4, strictMode={**strict, "maxQueryLimit": 50}), info)
    assert changed.update == {"strict_mode_config": {**body["strict_mode_config"], "max_query_limit": 50}}
    assert not changed.reindexes and changed.immutable == []
    assert [d.as_status() for d in changed.drift] == [
        {"field": "strictMode.maxQueryLimit", "desired": "50", "actual": "100"}
    ]
    reported = run(spec(vectors=DOT4, strictMode={**strict, "maxQueryLimit": 50}, driftPolicy="Report"), info)
    assert [d.path for d in reported.drift] == ["strictMode.maxQueryLimit"] and not reported.writes

    # A limit left out is not enforced; "enabled: false" is what a collection without strict mode has.
    assert not run(spec(vectors=DOT4, strictMode={"enabled": True}), info).writes
    plain = live_from(run(spec(vectors=DOT4), None).create)
    assert not run(spec(vectors=DOT4, strictMode={"enabled": False}), plain).writes
    assert run(spec(vectors=DOT4, strictMode={"maxTimeout": 5}), plain).update == {
        "strict_mode_config": {"max_timeout": 5}
    }


@pytest.mark.parametrize(
    ("strict", "field"),
    [({"maxQueryLimit": 0}, "maxQueryLimit"), ({"searchMaxOversampling": 0.5}, "searchMaxOversampling")],
)
def test_strict_mode_bounds(strict, field):
    with pytest.raises(pydantic.ValidationError, match=field):
        spec(vectors=DOT4, strictMode=strict)


def test_metadata_created_beside_the_marker_and_patched_key_by_key():
    meta = {"model": "e5-large", "dim": "768"}
    body = run(spec(vectors=DOT4, metadata=meta), None).create
    assert body["metadata"] == {**meta, mapping.OWNER_KEY: MARKER}
    info = live_from(body)
    info["config"]["metadata"]["theirs"] = "kept"  # a key the spec does not state is Qdrant's business
    assert not run(spec(vectors=DOT4, metadata=meta), info).writes

    changed = run(spec(vectors=DOT4, metadata={**meta, "dim": "1024", "new": "yes"}), info)
    assert changed.update == {"metadata": {"dim": "1024", "new": "yes"}}  # only the keys that differ
    assert not changed.reindexes
    assert [d.as_status() for d in changed.drift] == [
        {"field": "metadata[dim]", "desired": "1024", "actual": "768"},
        {"field": "metadata[new]", "desired": "yes", "actual": "absent"},
    ]
    reported = run(spec(vectors=DOT4, metadata={**meta, "dim": "1024"}, driftPolicy="Report"), info)
    assert [d.path for d in reported.drift] == ["metadata[dim]"] and not reported.writes

    info["config"]["metadata"]["dim"] = 768  # a number written by someone else is not the string "768"
    assert run(spec(vectors=DOT4, metadata=meta), info).update == {"metadata": {"dim": "768"}}


def test_removed_metadata_keys_are_removed_only_if_this_resource_declared_them():
    info = live_from(run(spec(vectors=DOT4, metadata={"a": "1", "b": "2"}), None).create)
    info["config"]["metadata"]["theirs"] = "3"
    p = run(spec(vectors=DOT4, metadata={"a": "1"}), info, managed_metadata=["a", "b", "gone"])
    assert p.update == {"metadata": {"b": None}}  # null removes a key; "gone" is not in Qdrant any more
    assert p.drift == []
    assert not run(spec(vectors=DOT4, metadata={"a": "1"}), info).writes  # not declared by us: left alone
    assert not run(spec(vectors=DOT4), info, managed_metadata=[mapping.OWNER_KEY]).writes


def test_plan_preview_names_metadata_changes_and_adoption_apart():
    info = live_from(run(spec(vectors=DOT4, metadata={"a": "1", "b": "2"}), None).create)
    p = run(spec(vectors=DOT4, metadata={"a": "9"}), info, managed_metadata=["a", "b"])
    assert plan_actions(p, "docs") == ["set metadata[a]: 1 -> 9", "remove metadata key b"]
    info["config"]["metadata"] = {}
    adopted = run(spec(vectors=DOT4), info, adopt=True)
    assert plan_actions(adopted, "docs") == ["mark docs as managed by this resource (adopt)"]


def test_adopting_claims_the_marker_beside_the_declared_keys():
    info = live_from(run(spec(vectors=DOT4), None).create)
    info["config"]["metadata"] = {"a": "0"}
    p = run(spec(vectors=DOT4, metadata={"a": "1"}), info, adopt=True)
    assert p.update == {"metadata": {mapping.OWNER_KEY: MARKER, "a": "1"}}


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({mapping.OWNER_KEY: "ns/x/uid"}, "ownership marker"),
        ({"a": None}, "string"),
        ({"a": {"nested": "x"}}, "string"),
        ({f"k{i}": "v" for i in range(65)}, "at most 64"),
    ],
    ids=["owner-key", "null", "object", "too-many"],
)
def test_metadata_refuses_the_owner_key_and_non_strings(metadata, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        spec(vectors=DOT4, metadata=metadata)


def test_sparse_index_datatype_and_memory_change_in_place():
    sparse = [{"name": "kw", "index": {"datatype": "Float16", "memory": "Cached", "onDisk": True}}]
    body = run(spec(vectors=DOT4, sparseVectors=sparse), None).create
    assert body["sparse_vectors"] == {"kw": {"index": {"on_disk": True, "datatype": "float16", "memory": "cached"}}}
    info = live_from(body)
    assert not run(spec(vectors=DOT4, sparseVectors=sparse), info).writes

    changed = [{"name": "kw", "index": {"datatype": "Uint8", "memory": "Cold", "onDisk": True}}]
    p = run(spec(vectors=DOT4, sparseVectors=changed), info)
    assert p.immutable == [], "Qdrant changes a sparse index's datatype in place, unlike a dense vector's"
    assert p.update == {"sparse_vectors": {"kw": {"index": {"on_disk": True, "datatype": "uint8", "memory": "cold"}}}}
    assert [d.path for d in p.drift] == ["sparseVectors[kw].index.datatype", "sparseVectors[kw].index.memory"]
    assert p.reindexes

    # Left out in Qdrant's answer means Float32 (as for dense vectors).
    plain = live_from(run(spec(vectors=DOT4, sparseVectors=[{"name": "kw"}]), None).create)
    assert not run(spec(vectors=DOT4, sparseVectors=[{"name": "kw", "index": {"datatype": "Float32"}}]), plain).writes


def test_a_vector_named_like_a_setting_changes_in_place():
    info = named_live("size")
    p = run(spec(vectors=[dense("size", hnsw={"m": 32})]), info)
    assert p.immutable == [] and p.update == {"vectors": {"size": {"hnsw_config": {"m": 32}}}}
