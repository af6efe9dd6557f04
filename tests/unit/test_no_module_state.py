"""The package keeps no process-wide mutable state: everything a running operator shares lives in the
handlers' Context (kopf's memo), so an in-process restart or a second operator starts clean."""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
import inspect
import pkgutil
from pathlib import Path

import pydantic

import collection_operator

PACKAGE = Path(collection_operator.__file__).parent
MUTABLE_CALLS = {"dict", "list", "set", "defaultdict", "OrderedDict", "WeakValueDictionary", "WeakSet"}


def _value_class(cls: type) -> bool:
    """Instances that are values, not state: models, enums, frozen dataclasses."""
    frozen = dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    return issubclass(cls, pydantic.BaseModel | enum.Enum) or frozen


def _stateful_classes() -> set[str]:
    modules = [
        importlib.import_module(m.name)
        for m in pkgutil.walk_packages(collection_operator.__path__, "collection_operator.")
    ]
    return {
        name
        for module in modules
        for name, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__.startswith("collection_operator") and not _value_class(cls)
    }


PACKAGE_CLASSES = _stateful_classes() | {"Context"}


def findings(source: str) -> list[str]:
    """Module-level containers under non-constant names, instances of the package's own classes, and
    `global` statements."""
    tree = ast.parse(source)
    out = [
        f"line {node.lineno}: global {', '.join(node.names)}" for node in ast.walk(tree) if isinstance(node, ast.Global)
    ]
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign) and node.value is not None
            else []
        )
        value = getattr(node, "value", None)
        for target in targets:
            if not isinstance(target, ast.Name):
                continue
            name = target.id
            called = value.func.id if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) else None
            container = isinstance(value, ast.Dict | ast.List | ast.Set) or called in MUTABLE_CALLS
            if (container and not name.isupper() and name != "__all__") or called in PACKAGE_CLASSES:
                out.append(f"line {node.lineno}: {name}")
    return out


def test_the_rule_catches_what_it_is_for():
    assert findings("RUNTIME = ConnectionRegistry()\n") == ["line 1: RUNTIME"]
    assert findings("_CACHE: dict[str, int] = {}\n") == []  # upper-case: a constant by convention
    assert findings("_cache: dict[str, int] = {}\n") == ["line 1: _cache"]
    assert findings("x = None\ndef f():\n    global x\n") == ["line 3: global x"]
    assert findings("STATE = Context()\n") == ["line 1: STATE"]  # Context is one of the package's classes


def test_no_module_level_mutable_state():
    found = {
        str(path.relative_to(PACKAGE)): f for path in sorted(PACKAGE.rglob("*.py")) if (f := findings(path.read_text()))
    }
    assert found == {}
