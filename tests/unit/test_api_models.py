"""The models parse the wire format the CRDs describe."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import yaml

from collection_operator.api import (
    CollectionAccessKeySpec,
    CollectionSnapshotSpec,
    CollectionSnapshotStatus,
    QdrantConnectionSpec,
    VectorCollectionSpec,
    VectorCollectionStatus,
)
from collection_operator.api.snapshot import human_size
from tests.builders import collection_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPECS = {
    "QdrantConnection": QdrantConnectionSpec,
    "VectorCollection": VectorCollectionSpec,
    "CollectionSnapshot": CollectionSnapshotSpec,
    "CollectionAccessKey": CollectionAccessKeySpec,
}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_parses_and_round_trips(path):
    for doc in yaml.safe_load_all(path.read_text()):
        spec = SPECS[doc["kind"]].model_validate(doc["spec"])
        assert SPECS[doc["kind"]].model_validate(spec.to_wire()) == spec


def test_wire_is_camel_case_and_omits_unset_fields():
    spec = VectorCollectionSpec.model_validate(collection_spec(onDiskPayload=True))
    wire = spec.to_wire()
    assert wire["onDiskPayload"] is True
    assert "hnsw" not in wire and "on_disk_payload" not in wire
    assert wire["deletionPolicy"] == "Retain"


def test_unknown_fields_are_errors():
    with pytest.raises(pydantic.ValidationError, match="efConstrukt"):
        VectorCollectionSpec.model_validate(collection_spec(hnsw={"efConstrukt": 100}))


def test_connection_defaults():
    spec = QdrantConnectionSpec.model_validate({"url": "http://127.0.0.1:6333"})
    assert spec.environment == "Production"
    assert spec.api_key_secret_ref is None
    assert (
        QdrantConnectionSpec.model_validate(
            {"url": "http://q:6333", "apiKeySecretRef": {"name": "k"}}
        ).api_key_secret_ref.key
        == "api-key"
    )


def test_collection_names_with_double_dots_are_refused():
    import pydantic as _pydantic

    for field in ({"collectionName": "a..b"}, {"aliases": ["ok", "x..y"]}):
        try:
            VectorCollectionSpec.model_validate(collection_spec(**field))
        except _pydantic.ValidationError as exc:
            assert "'..'" in str(exc)
        else:
            raise AssertionError(f"{field} accepted")


def test_pending_plan_follows_the_plan_until_it_is_applied():
    plan = {"hash": "4b1e0c9a7d2f", "phase": "AwaitingApproval", "summary": "re-index: set hnsw.m: 16 -> 32"}
    assert VectorCollectionStatus.model_validate({"plan": plan}).to_patch()["pendingPlan"] == "AwaitingApproval"
    applying = VectorCollectionStatus.model_validate({"plan": {**plan, "phase": "Applying"}})
    assert applying.to_patch()["pendingPlan"] == "Applying"
    # Applied or dropped: an explicit null, so the merge patch removes a pendingPlan written before.
    applied = VectorCollectionStatus.model_validate({"plan": {**plan, "phase": "Applied"}})
    assert applied.to_patch()["pendingPlan"] is None
    assert VectorCollectionStatus.model_validate({"plan": None}).to_patch() == {"plan": None, "pendingPlan": None}
    # A status that leaves plan alone leaves pendingPlan alone too (the writer sends only what was set).
    assert "pendingPlan" not in VectorCollectionStatus.model_validate({"pointsCount": 3}).to_patch()


def test_snapshot_count_and_total_size_follow_the_records():
    records = [{"name": "a", "sizeBytes": 1024**3}, {"name": "b", "sizeBytes": 1024**3 // 2}, {"name": "c"}]
    wire = CollectionSnapshotStatus.model_validate({"snapshots": records}).to_patch()
    assert (wire["count"], wire["totalSize"]) == (3, "1.5 GiB")
    assert CollectionSnapshotStatus.model_validate({"snapshots": []}).to_patch()["totalSize"] == "0 B"
    assert "count" not in CollectionSnapshotStatus.model_validate({"phase": "Pending"}).to_patch()
    assert [human_size(n) for n in (0, 1023, 1024, 1536, 10 * 1024**2, 1024**6)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "10.0 MiB",
        "1024.0 PiB",
    ]


def test_the_url_column_shows_one_url_or_the_first_endpoint_and_how_many_more():
    one = QdrantConnectionSpec.model_validate({"url": "http://q:6333", "environment": "Testing"})
    assert one.shown_url == "http://q:6333"
    three = QdrantConnectionSpec.model_validate(
        {"endpoints": [f"http://q{i}:6333" for i in range(3)], "environment": "Testing"}
    )
    assert three.shown_url == "http://q0:6333 (+2)"
