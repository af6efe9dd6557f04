"""Models -> docs/api-reference.md, from the same structural schemas as the CRDs, so the reference lists
exactly what the API server enforces: every field with its type, default, constraints and description, and
the CEL rules. Deterministic, like crdgen."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import crdgen
from .api import API_VERSION, KINDS, Kind

HEADER = f"""# API reference

<!-- Generated from collection_operator.api by `make docs`. Do not edit. -->

API group and version `{API_VERSION}`; every kind is namespaced and in the category `qdrant`
(`kubectl get qdrant` lists them all). `kubectl explain <kind>.spec` shows the same descriptions.
Conditions and their reasons: [troubleshooting.md](troubleshooting.md).
"""


def _type(node: dict[str, Any]) -> str:
    if node.get("type") == "array":
        return f"[]{_type(node.get('items', {}))}"
    if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type(node['additionalProperties'])}"
    return str(node.get("type", "any"))


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return f"`{text}`".replace("|", "\\|")


def _constraints(node: dict[str, Any], required: bool) -> str:
    out = ["required"] if required else []
    if "enum" in node:
        out.append("one of " + ", ".join(_code(v) for v in node["enum"]))
    for key, label in (("minimum", ">"), ("maximum", "<")):
        if key in node:
            exclusive = node.get(f"exclusive{key.capitalize()}", False)
            out.append(f"{label if exclusive else label + '='} {node[key]}")
    sizes = (
        ("minLength", "length >="),
        ("maxLength", "length <="),
        ("maxItems", "items <="),
        ("maxProperties", "keys <="),
    )
    for key, label in sizes:
        if key in node:
            out.append(f"{label} {node[key]}")
    if "pattern" in node:
        out.append(f"pattern {_code(node['pattern'])}")
    if "format" in node:
        out.append(f"format {node['format']}")
    items = node.get("items", {})
    if "enum" in items:
        out.append("items one of " + ", ".join(_code(v) for v in items["enum"]))
    if "pattern" in items:
        out.append(f"items pattern {_code(items['pattern'])}")
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "set":
        out.append("unique items")
    elif list_type == "map":
        out.append("keyed by " + ", ".join(f"`{k}`" for k in node["x-kubernetes-list-map-keys"]))
    return "; ".join(out)


def _fields(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    required = set(node.get("required", []))
    for name, prop in sorted((node.get("properties") or {}).items()):
        yield f"{path}.{name}", prop, name in required
        yield from _fields(prop, f"{path}.{name}")
    if node.get("type") == "array":
        yield from _fields(node.get("items", {}), f"{path}[]")


def _rules(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every CEL rule at or below `node`, list items included, with the path it applies to."""
    for rule in node.get("x-kubernetes-validations", []):
        yield path, rule
    for name, prop in sorted((node.get("properties") or {}).items()):
        yield from _rules(prop, f"{path}.{name}")
    if node.get("type") == "array":
        yield from _rules(node.get("items", {}), f"{path}[]")


def _table(root: dict[str, Any], path: str) -> list[str]:
    lines = ["| Field | Type | Default | Constraints | Description |", "|---|---|---|---|---|"]
    for field, node, required in _fields(root, path):
        default = _code(node["default"]) if "default" in node else ""
        description = " ".join(node.get("description", "").split()).replace("|", "\\|")
        lines.append(f"| `{field}` | {_type(node)} | {default} | {_constraints(node, required)} | {description} |")
    return lines


def _section(kind: Kind) -> list[str]:
    crd = crdgen.crd(kind)
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    names = crd["spec"]["names"]
    out = [
        f"## {kind.kind}",
        "",
        schema["description"],
        "",
        f"`kubectl get {names['plural']}` (short names: {', '.join(f'`{n}`' for n in names['shortNames'])}).",
        "",
        "| Column | Shown | From |",
        "|---|---|---|",
    ]
    for column in version["additionalPrinterColumns"]:
        shown = "`-o wide`" if column.get("priority") else "always"
        out.append(f"| {column['name'].upper()} | {shown} | {_code(column['jsonPath'])} |")
    for part in ("spec", "status"):
        node = schema["properties"][part]
        out += ["", f"### {kind.kind} {part}", "", node.get("description", ""), "", *_table(node, part)]
        rules = list(_rules(node, part))
        if rules:
            out += [
                "",
                "Validation rules (CEL, checked by the API server; `oldSelf` is the value before an update):",
                "",
            ]
            for where, rule in rules:
                at = where + rule.get("fieldPath", "")
                out.append(f"- `{at}`: {rule['message']}. Rule: `{rule['rule']}`")
    return [*out, ""]


def render() -> str:
    lines = [HEADER]
    lines += [f"- [{kind.kind}](#{kind.kind.lower()})" for kind in KINDS]
    lines.append("")
    for kind in KINDS:
        lines += _section(kind)
    return "\n".join(lines).rstrip() + "\n"


def write(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render())
    return out
