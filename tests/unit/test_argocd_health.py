"""The Argo CD health checks and resource actions (manifests/argocd/) in gopher-lua with Argo CD's sandbox,
against their health_test.yaml and action_test.yaml cases as Argo CD's own bundled ones are tested; every
kind's health.lua is the one source, manifests/argocd/health.lua; and the argocd-cm snippet is what
devenv/argocd_cm.py renders from the Lua files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from collection_operator.api.kinds import KINDS as API_KINDS
from devenv import argocd_cm
from tests.fixtures.gohelpers import HEALTH_CHECKS, argo_action, argo_discovery, argo_health

KINDS = [k.kind for k in API_KINDS]
ACTIONS = {"VectorCollection": {"approve", "pause", "resume"}}  # the kinds that have any, and theirs


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


def test_every_kind_health_check_is_the_one_source() -> None:
    assert sorted(p.name for p in argocd_cm.kinds()) == sorted(KINDS)
    source = argocd_cm.HEALTH.read_text()
    for kind in KINDS:
        copy = HEALTH_CHECKS / kind / "health.lua"
        assert not copy.is_symlink() and copy.read_text() == source, f"{copy}: run python3 devenv/argocd_cm.py"
    assert argocd_cm.stale() == []


def test_a_drifted_copy_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--check names a per-kind health.lua that differs from manifests/argocd/health.lua."""
    source = tmp_path / "health.lua"
    source.write_text(argocd_cm.HEALTH.read_text() + "-- edited here only\n")
    monkeypatch.setattr(argocd_cm, "HEALTH", source)
    assert {p.parent.name for p in argocd_cm.stale() if p.name == "health.lua"} == set(KINDS)


@pytest.mark.parametrize("kind", sorted(ACTIONS))
def test_action_discovery_cases(kind: str) -> None:
    """Argo CD's test accepts a discovery result whose every action is in `result`; here they must be equal."""
    cases = yaml.safe_load((HEALTH_CHECKS / kind / "actions" / "action_test.yaml").read_text())["discoveryTests"]
    objects = [yaml.safe_load((HEALTH_CHECKS / kind / "actions" / c["inputPath"]).read_text()) for c in cases]
    got = argo_discovery(kind, objects)
    for case, found in zip(cases, got, strict=True):
        listed = sorted(({"name": name, **fields} for name, fields in found.items()), key=lambda a: a["name"])
        assert (case["inputPath"], listed) == (case["inputPath"], sorted(case["result"], key=lambda a: a["name"]))
    assert {a["name"] for c in cases for a in c["result"]} == ACTIONS[kind]
    # Each action is offered by some case and withheld by another.
    assert {(a["name"], a["disabled"]) for c in cases for a in c["result"]} == {
        (name, disabled) for name in ACTIONS[kind] for disabled in (True, False)
    }


@pytest.mark.parametrize("kind", sorted(ACTIONS))
def test_action_cases(kind: str) -> None:
    actions = HEALTH_CHECKS / kind / "actions"
    cases = yaml.safe_load((actions / "action_test.yaml").read_text())["actionTests"]
    assert {c["action"] for c in cases} == ACTIONS[kind] == {p.parent.name for p in actions.glob("*/action.lua")}
    for case in cases:
        [got] = argo_action(kind, case["action"], [yaml.safe_load((actions / case["inputPath"]).read_text())])
        if "expectedErrorMessage" in case:
            assert got == {"error": case["expectedErrorMessage"]}, case
        else:
            assert got == yaml.safe_load((actions / case["expectedOutputPath"]).read_text()), case
    used = {c[k] for c in cases for k in ("inputPath", "expectedOutputPath") if k in c}
    assert {f"testdata/{p.name}" for p in (actions / "testdata").iterdir()} == used


def test_argocd_cm_snippet_matches_the_lua_files() -> None:
    assert argocd_cm.SNIPPET.read_text() == argocd_cm.render(), "run python3 devenv/argocd_cm.py"
    data = yaml.safe_load(argocd_cm.SNIPPET.read_text())["data"]
    group = HEALTH_CHECKS.name
    health = {f"resource.customizations.health.{group}_{kind}": argocd_cm.HEALTH.read_text() for kind in KINDS}
    assert {k: v for k, v in data.items() if ".health." in k} == health
    for kind, names in ACTIONS.items():
        actions = HEALTH_CHECKS / kind / "actions"
        value = yaml.safe_load(data[f"resource.customizations.actions.{group}_{kind}"])
        assert value["discovery.lua"] == (actions / "discovery.lua").read_text()
        assert {d["name"]: d["action.lua"] for d in value["definitions"]} == {
            name: (actions / name / "action.lua").read_text() for name in names
        }
    assert len(data) == len(KINDS) + len(ACTIONS)
