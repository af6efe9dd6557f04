"""The Argo CD health checks (manifests/argocd/) in gopher-lua with Argo CD's sandbox, against their
health_test.yaml cases as Argo CD's own bundled checks are tested; and the argocd-cm snippet is what
devenv/argocd_cm.py renders from the Lua files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from devenv import argocd_cm
from tests.fixtures.gohelpers import HEALTH_CHECKS, argo_health

KINDS = ["VectorCollection", "QdrantConnection", "CollectionSnapshot", "CollectionAccessKey"]


@pytest.mark.parametrize("kind", KINDS)
def test_health_check_cases(kind: str) -> None:
    cases = yaml.safe_load((HEALTH_CHECKS / kind / "health_test.yaml").read_text())["tests"]
    objects = [yaml.safe_load((HEALTH_CHECKS / kind / case["inputPath"]).read_text()) for case in cases]
    got = argo_health(kind, objects)
    want = [case["healthStatus"] for case in cases]
    assert [(c["inputPath"], g) for c, g in zip(cases, got, strict=True)] == [
        (c["inputPath"], w) for c, w in zip(cases, want, strict=True)
    ]
    # Every status a check can return is exercised, except Suspended where the kind cannot be paused.
    assert {w["status"] for w in want} >= {"Healthy", "Progressing", "Degraded"}
    tested = {Path(c["inputPath"]).name for c in cases}
    assert all(p.name in tested for p in (HEALTH_CHECKS / kind / "testdata").iterdir())


def test_sandbox_has_no_string_or_math_library(tmp_path: Path) -> None:
    """Argo CD runs argocd-cm checks without Lua's string and math libraries (lua.go: SkipOpenLibs,
    then package, base, table and a reduced os): a check that used them would fail there too."""
    for expr in ('string.upper("x")', '("x"):upper()', "math.floor(1.5)"):
        script = tmp_path / "check.lua"
        script.write_text(f"return {{status = {expr}}}\n")
        with pytest.raises(AssertionError, match="non-table object"):
            argo_health("VectorCollection", [{}], script)


def test_argocd_cm_snippet_matches_the_lua_files() -> None:
    assert argocd_cm.SNIPPET.read_text() == argocd_cm.render(), "run python3 devenv/argocd_cm.py"
    data = yaml.safe_load(argocd_cm.SNIPPET.read_text())["data"]
    group = HEALTH_CHECKS.name
    assert data == {
        f"resource.customizations.health.{group}_{kind}": (HEALTH_CHECKS / kind / "health.lua").read_text()
        for kind in KINDS
    }
