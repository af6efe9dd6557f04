"""The models parse the wire format the CRDs describe."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import yaml

from collection_operator.api import (
    CollectionAccessKeySpec,
    CollectionSnapshotSpec,
    QdrantConnectionSpec,
    VectorCollectionSpec,
)
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
