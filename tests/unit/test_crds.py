"""The committed CRDs are exactly what the models generate, and the generator keeps to structural schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from collection_operator import crdgen
from collection_operator.api import KINDS

CRDS = Path(__file__).resolve().parents[2] / "crds"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_committed_crd_matches_models(kind):
    committed = (CRDS / f"qdrant.collection-operator.dev_{kind.plural}.yaml").read_text()
    assert committed == crdgen.render(kind), "crds/ is stale: run `make crds` and commit the result"


def test_rendering_is_deterministic():
    assert [crdgen.render(k) for k in KINDS] == [crdgen.render(k) for k in KINDS]


def _walk(node: Any, path: str = ""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind):
    schema = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "const", "$defs"} & node.keys(), path
        assert node.get("additionalProperties", True) is not False, path
        if "properties" in node and not path.endswith(".properties"):  # a schema, not a property map
            assert node.get("type") == "object", path


def test_names_and_columns_follow_the_api_contract():
    crds = {k.kind: crdgen.crd(k) for k in KINDS}
    vc = crds["VectorCollection"]["spec"]
    assert vc["names"]["shortNames"] == ["vcol", "vc"]
    assert all(c["spec"]["names"]["categories"] == ["qdrant"] for c in crds.values())
    assert all(c["spec"]["versions"][0]["subresources"] == {"status": {}} for c in crds.values())


def _columns(kind: str, wide: bool = False) -> list[str]:
    crd = next(crdgen.crd(k) for k in KINDS if k.kind == kind)
    return [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"] if wide or "priority" not in c]


def test_printer_columns_show_readiness_with_its_reason():
    assert _columns("VectorCollection") == ["Collection", "Connection", "Ready", "Reason", "Points", "Plan", "Age"]
    assert _columns("VectorCollection", wide=True)[7:] == [
        "Plan-Hash",
        "Physical",
        "Qdrant",
        "Indexed",
        "Segments",
        "Shards",
        "Replication",
        "Message",
    ]
    assert _columns("QdrantConnection") == ["URL", "Environment", "Health", "Version", "Ready", "Reason", "Age"]
    assert _columns("QdrantConnection", wide=True)[7:] == ["Breaker", "Peers", "Endpoints", "Collections", "Message"]
    assert _columns("CollectionSnapshot") == [
        "Collection",
        "Schedule",
        "Last",
        "Phase",
        "Snapshots",
        "Size",
        "Ready",
        "Reason",
        "Age",
    ]
    assert _columns("CollectionSnapshot", wide=True)[9:] == [
        "Next",
        "Connection",
        "Verified",
        "Verified-At",
        "Message",
    ]
    for kind in KINDS:
        columns = crdgen.crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
        reason = next(c for c in columns if c["name"] == "Reason")
        assert reason["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
        # Ready's message closes every wide view.
        assert columns[-1] == {
            "name": "Message",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
            "priority": 1,
        }


def test_every_column_reads_a_field_of_the_schema():
    """A column on a path the schema lacks prints <none> forever (status.plan.pending was never a field)."""
    for kind in KINDS:
        crd = crdgen.crd(kind)["spec"]["versions"][0]
        schema = crd["schema"]["openAPIV3Schema"]
        for column in crd["additionalPrinterColumns"]:
            node = schema
            for part in column["jsonPath"].split("[")[0].strip(".").split("."):
                if node is schema and part == "metadata":
                    break
                assert part in node.get("properties", {}), (kind.kind, column["name"])
                node = node["properties"][part]


def _fields(schema: dict[str, Any], path: str):
    """Every field `kubectl explain` lists: properties, through list items and map values."""
    for name, prop in (schema.get("properties") or {}).items():
        yield f"{path}.{name}", prop
        yield from _fields(prop, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _fields(schema[key], f"{path}[]")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_field_has_a_description(kind):
    """`kubectl explain` shows these; a field added without `Field(description=...)` fails here."""
    schema = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema.get("description")
    # metadata may carry nothing but its type (the API server describes ObjectMeta itself).
    missing = [
        path
        for path, prop in _fields(schema, kind.kind)
        if path != f"{kind.kind}.metadata" and not prop.get("description", "").strip()
    ]
    assert not missing, f"fields without a description: {missing}"


def test_exclusive_bounds_use_openapi_v3_0_form():
    schema = crdgen.crd(KINDS[0])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    acquire = schema["properties"]["spec"]["properties"]["pool"]["properties"]["acquireTimeoutSeconds"]
    assert {k: v for k, v in acquire.items() if k != "description"} == {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
    }


def test_generated_yaml_has_no_anchors():
    for kind in KINDS:
        text = crdgen.render(kind)
        assert "&id" not in text and "*id" not in text
        assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition"
