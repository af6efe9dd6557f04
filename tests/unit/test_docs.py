"""docs/ stays true to the code: the API reference is what the models generate, and every condition reason
and Event reason the operator can produce is explained in troubleshooting.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from collection_operator import docsgen
from collection_operator.api import KINDS
from tests.docs_commands import shell_blocks
from tests.faults import table

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PACKAGE = REPO / "operator" / "collection_operator"

# Calls whose CamelCase string arguments are condition or Event reasons.
REASON_CALLS = {"Verdict", "_condition", "event", "post_event", "Stalling", "Waiting", "Failed", "SourceNotReady"}
NOT_REASONS = {"Warning", "Normal"}  # Event types
CONDITION_TYPES = {"Ready", "Reconciling", "Stalled", "Paused"}
CAMEL = re.compile(r"^[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)*$")


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def reasons_in_code() -> set[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                args = list(node.args)
                if name == "_condition":
                    args = args[2:3]  # (type, status, reason, ...)
                if name in REASON_CALLS:
                    found |= {s for arg in args for s in _strings(arg)}
                found |= {s for kw in node.keywords if kw.arg == "reason" for s in _strings(kw.value)}
            elif isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "reason" for t in node.targets):
                found |= _strings(node.value)  # `reason = "..."` of the client layer's error classes
            elif isinstance(node, ast.Assign) and path.name == "reasons.py":
                found |= _strings(node.value)  # the condition reasons' constants
    return {s for s in found if CAMEL.match(s)} - NOT_REASONS


def test_committed_api_reference_matches_models():
    committed = (DOCS / "api-reference.md").read_text()
    assert committed == docsgen.render(), "docs/api-reference.md is stale: run `make docs` and commit the result"


def test_api_reference_lists_every_kind_and_field():
    text = docsgen.render()
    for kind in KINDS:
        assert f"## {kind.kind}" in text
    size = "| `spec.vectors[].size` | integer |  | required; >= 1; <= 65536 | Dimensions. Immutable unless"
    assert size in text
    assert "- `spec.vectors`: a vector's size, distance, datatype and multivector are immutable" in text


def test_reason_extraction_finds_the_known_ones():
    found = reasons_in_code()
    assert {
        "InSync",
        "ImmutableFieldChanged",
        "Unreachable",
        "DeleteAbandoned",
        "SnapshotNotFound",
        "WaitingForDependents",
        "AddressNotAllowed",
        "Idle",
        "NotStalled",
        "DriftCorrected",
    } <= found
    assert not found & {"Warning", "Normal", "Reconciling"}


def test_every_reason_is_in_troubleshooting():
    text = (DOCS / "troubleshooting.md").read_text()
    documented = set(re.findall(r"^#+ .*?`([A-Za-z]+)`", text, re.MULTILINE))
    missing = sorted(reasons_in_code() - documented - CONDITION_TYPES)
    assert not missing, f"reasons the code produces without a heading in docs/troubleshooting.md: {missing}"


PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.*)$", text, re.M)}


def test_docs_links_resolve():
    for page in PAGES:
        prose = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL))
        for target, anchor in re.findall(r"\]\(([^)#:]*)(?:#([^)]*))?\)", prose):
            linked = (page.parent / target) if target else page
            assert linked.exists(), f"{page.name} links to missing {target}"
            if anchor and linked.suffix == ".md":
                assert anchor in anchors(linked), f"{page.name} links to {target}#{anchor}, no such heading"


def test_anchors_follow_github():
    page = REPO / "docs" / "install.md"
    assert {"the-image", "helm", "server-side-apply", "argo-cd-and-flux"} <= anchors(page)


def test_readme_stays_short_and_opens_with_the_two_commands():
    readme = REPO / "README.md"
    assert len(readme.read_text().splitlines()) <= 150
    first = shell_blocks(readme)[0].splitlines()
    assert [line.split("#")[0].strip() for line in first] == ["make demo", "make test"]
    linked = set(re.findall(r"\]\((docs/[^)#]+\.md)", readme.read_text()))
    assert linked == {f"docs/{p.name}" for p in DOCS.glob("*.md")}, "the README links every doc"


def test_the_faults_table_goes_into_contributing():
    page = table.PAGE.read_text()
    rows = {"a scenario": {"scenario": "a scenario", "outcome": "passed", "seconds": 1.5}}
    updated = table.insert(page, rows)
    assert "| a scenario |  |  | passed | 1.5 |  |" in updated
    assert updated.replace(table.render(rows), "") == re.sub(
        re.escape(table.START) + ".*?" + re.escape(table.END), table.START + "\n" + table.END, page, flags=re.S
    )
