"""Models -> CustomResourceDefinitions. Deterministic: the same models always give the same bytes.

pydantic writes JSON Schema 2020-12 with $refs, nullable unions and titles; Kubernetes wants a
structural OpenAPI v3 schema: everything inlined, one type per node, no `additionalProperties: false`
(unknown fields are pruned by the server and refused by kubectl's strict field validation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .api import API_VERSION, GROUP, KINDS, VERSION, Kind

_DROP = {"title", "additionalProperties", "$defs"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        # Field-level keywords (description, CEL) sit beside the $ref and win over the model's own.
        merged = {**target, **node}
        if "x-kubernetes-validations" in target and "x-kubernetes-validations" in node:
            merged["x-kubernetes-validations"] = target["x-kubernetes-validations"] + node["x-kubernetes-validations"]
        node = merged
    if "anyOf" in node:
        # Optional[X] is X: absence, not null, means "not set" on the wire.
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union of {options} in a structural schema")
        node = {**_structural(options[0], defs), **{k: v for k, v in node.items() if k != "default"}}
        if node.get("default") is None:
            node.pop("default", None)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            if key == "additionalProperties" and isinstance(value, dict):
                out[key] = _structural(value, defs)  # a map type keeps its value schema
            continue
        if key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key in ("items",):
            out[key] = _structural(value, defs)
        elif key == "default" and (value is None or value == [] or value == {}):
            continue
        else:
            out[key] = value
    for bound in ("Minimum", "Maximum"):
        # JSON Schema 2020 writes exclusive bounds as numbers; OpenAPI v3.0 as a flag on the bound.
        if not isinstance(out.get(f"exclusive{bound}", True), bool):
            out[bound.lower()] = out.pop(f"exclusive{bound}")
            out[f"exclusive{bound}"] = True
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "const" in out:
        out["enum"] = [out.pop("const")]
    return out


def _schema(model: Any) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation", ref_template="#/$defs/{model}")
    return _structural(raw, raw.get("$defs", {}))


def crd(kind: Kind) -> dict[str, Any]:
    spec = _schema(kind.spec)
    status = _schema(kind.status)
    status.setdefault("description", f"Observed state of the {kind.kind}, written by the operator.")
    # Present from creation on, so kstatus (Flux) reads a resource the operator has not looked at yet as
    # InProgress ("latest observed generation is 0"), not Current.
    status["default"] = {"observedGeneration": 0}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": ["qdrant"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": c.name, "type": c.type, "jsonPath": c.json_path}
                        | ({"priority": c.priority} if c.priority else {})
                        for c in kind.columns
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "description": kind.description,
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": f"Always {API_VERSION}."},
                                "kind": {"type": "string", "description": f"Always {kind.kind}."},
                                "metadata": {"type": "object"},  # the API server allows nothing else here
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # shared sub-schemas are written out in full, not as YAML anchors


def render(kind: Kind) -> str:
    header = "# Generated from collection_operator.api by `make crds`. Do not edit.\n"
    return header + yaml.dump(crd(kind), Dumper=_Dumper, sort_keys=True, width=120)


def write_all(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        path = out_dir / f"{GROUP}_{kind.plural}.yaml"
        path.write_text(render(kind))
        written.append(path)
    # So manifests/ (kustomize) can include the CRDs as a directory.
    kustomization = out_dir / "kustomization.yaml"
    kustomization.write_text(
        "# Generated by `make crds`.\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
        + "".join(f"  - {p.name}\n" for p in written)
    )
    return [*written, kustomization]
