"""Approval in the same commit (issue 23), as docs/gitops.md shows it, on the real API server with the operator in
process and the session's Qdrant: the page's manifest, `kubectl qdrant plan` computing its plan's hash before the
change is applied, `--check`, and the change with its approval carried out by ONE `kubectl apply`. A precomputed
approval of another change, or one computed against a live state that moved before the apply, is not carried out:
the plan waits, and its message says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docs_commands import shell_blocks
from tests.fixtures.operator import unique, wait_for
from tests.integration.test_change_policy import collection, events

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
GITOPS = REPO / "docs" / "gitops.md"
VC = "vectorcollections"
APPROVE = "qdrant.collection-operator.dev/approve-plan"


def block(command: str) -> str:
    """The one ```sh block of docs/gitops.md that is exactly this command."""
    found = [b for b in shell_blocks(GITOPS) if b.strip() == command]
    assert len(found) == 1, f"docs/gitops.md: {len(found)} blocks {command!r}"
    return found[0]


PLAN, CHECK, APPLY = (
    block("kubectl qdrant plan -f docs.yaml"),
    block("kubectl qdrant plan -f docs.yaml --check"),
    block("kubectl apply -f docs.yaml"),
)


def documented_manifest() -> dict[str, Any]:
    """The page's VectorCollection: the manifest as committed with its approval (the section's one yaml block)."""
    text = GITOPS.read_text()
    start = text.index("## Approval in the same commit")
    section = text[start : text.index("\n## ", start + 1)]
    [manifest] = [yaml.safe_load(part.split("```", 1)[0]) for part in section.split("```yaml\n")[1:]]
    assert manifest["kind"] == "VectorCollection"
    return dict(manifest)


class Repo:
    """The Git checkout CI and the GitOps controller work on: docs.yaml, and the page's commands run in it."""

    def __init__(self, path: Path, kubeconfig: Path, namespace: str, collection_name: str):
        self.path, self.namespace, self.collection_name = path, namespace, collection_name
        venv = Path(sys.executable).parent  # kubectl and kubectl-qdrant
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PATH": f"{venv}{os.pathsep}{os.environ['PATH']}"}

    def commit(self, hnsw_m: int, approval: str | None, **spec: Any) -> None:
        """docs.yaml as the page shows it, in this test's namespace and collection, with this change."""
        doc = documented_manifest()
        doc["metadata"]["namespace"] = self.namespace
        doc["metadata"]["annotations"] = {APPROVE: approval} if approval else {}
        doc["spec"].update(collectionName=self.collection_name, hnsw={"m": hnsw_m}, **spec)
        (self.path / "docs.yaml").write_text(yaml.safe_dump(doc))

    def run(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def plan(self) -> str:
        """The hash `kubectl qdrant plan` gives docs.yaml's change."""
        first = self.run(PLAN).stdout.splitlines()[0]
        prefix = f"VectorCollection {self.namespace}/docs: plan "
        assert first.startswith(prefix), first
        return first.removeprefix(prefix).split()[0]


def verdict(cluster: Any, reason: str) -> dict[str, Any]:
    """docs once the operator's verdict on its current generation has this Ready reason."""

    def check() -> dict[str, Any] | None:
        body = cluster.get(VC, "docs")
        status = body.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        current = status.get("observedGeneration") == body["metadata"]["generation"]
        return body if current and ready.get("reason") == reason else None

    return wait_for(check, 90, f"VectorCollection docs: a verdict {reason} on its current generation")


def hnsw_m(qdrant_server: Any, name: str) -> int:
    return int(collection(qdrant_server, name)["config"]["hnsw_config"]["m"])


def test_the_change_and_its_precomputed_approval_are_applied_in_one_apply(cluster, connection, qdrant_server, tmp_path):
    name = unique("gitops")
    repo = Repo(tmp_path, cluster.plane.admin_kubeconfig, cluster.namespace, name)
    doc = documented_manifest()
    assert doc["spec"]["changePolicy"] == {"approval": "Manual"} and doc["spec"]["hnsw"] == {"m": 32}

    repo.commit(16, None)  # the collection as it is before the change
    repo.run(APPLY)
    first = verdict(cluster, "InSync")
    assert first["status"]["planBase"]
    new = repo.run(PLAN).stdout
    assert new == f"VectorCollection {cluster.namespace}/docs: the spec is unchanged, nothing to plan\n"

    # 1. CI computes the plan of the change; 2. the approval is committed with it; 3. the check passes.
    repo.commit(32, None)
    out = repo.run(PLAN).stdout
    precomputed = repo.plan()
    assert out.splitlines()[1:] == [
        "  - hnsw.m: 16 -> 32",
        f'  to approve it in the same commit, annotate the manifest: {APPROVE}: "{precomputed}"',
    ], out
    repo.commit(32, precomputed)
    assert "the manifest approves this plan" in repo.run(CHECK).stdout

    # 4. One apply: the plan is approved by the time the operator meets it, and applied at once.
    repo.run(APPLY)
    body = verdict(cluster, "InSync")
    assert body["status"]["plan"]["hash"] == precomputed and body["status"]["plan"]["phase"] == "Applied"
    assert body["status"]["plan"]["actions"] == ["set hnsw.m: 16 -> 32"]
    assert hnsw_m(qdrant_server, name) == 32
    assert not events(cluster, "PlanAwaitingApproval"), "it never waited"
    assert events(cluster, "PlanApproved") == [
        f"plan {precomputed} was approved; applying: re-index: set hnsw.m: 16 -> 32"
    ]
    assert body["status"]["planBase"] != first["status"]["planBase"], "the live state moved: the approval is spent"

    # The approval left in Git approves nothing later: the next change is another plan, which waits.
    repo.commit(48, precomputed)
    checked = repo.run(CHECK, check=False)
    assert checked.returncode == 1 and f"the manifest approves plan {precomputed}, but applied now its plan is" in (
        checked.stderr
    )
    repo.run(APPLY)
    verdict(cluster, "AwaitingApproval")
    assert f"the approve-plan annotation names {precomputed}, another plan" in cluster.condition(VC, "docs")["message"]
    assert hnsw_m(qdrant_server, name) == 32


def test_an_approval_for_another_change_or_a_moved_live_state_is_not_carried_out(
    cluster, connection, qdrant_server, tmp_path
):
    name = unique("gitops")
    repo = Repo(tmp_path, cluster.plane.admin_kubeconfig, cluster.namespace, name)
    repo.commit(16, None)
    repo.run(APPLY)
    verdict(cluster, "InSync")

    # A pull request computes its plan (m: 64) against today's live state ...
    repo.commit(64, None)
    stale = repo.plan()
    # ... and another change (a metadata key: no approval needed) is applied first: the live state moves.
    repo.commit(16, None, metadata={"team": "search"})
    repo.run(APPLY)
    moved = verdict(cluster, "InSync")
    assert moved["metadata"]["generation"] == moved["status"]["appliedGeneration"]
    repo.commit(64, stale, metadata={"team": "search"})  # the pull request, rebased, with its old approval
    checked = repo.run(CHECK, check=False)
    assert checked.returncode == 1 and "(another change, or the live state moved)" in checked.stderr
    repo.run(APPLY)
    body = verdict(cluster, "AwaitingApproval")
    ready = cluster.condition(VC, "docs")
    assert (
        ready["reason"] == "AwaitingApproval"
        and f"the approve-plan annotation names {stale}, another plan" in (ready["message"])
    )
    assert body["status"]["plan"]["hash"] != stale and hnsw_m(qdrant_server, name) == 16

    # An approval computed for another change (m: 48) on the current state: that plan (m: 64) waits too.
    repo.commit(48, None, metadata={"team": "search"})
    for_48 = repo.plan()
    repo.commit(64, for_48, metadata={"team": "search"})
    repo.run(APPLY)  # the spec as before, the annotation new: the same generation, met again
    wait_for(
        lambda: f"names {for_48}, another plan" in cluster.condition(VC, "docs")["message"],
        60,
        "the plan held with the other change's approval",
    )
    body = verdict(cluster, "AwaitingApproval")
    assert hnsw_m(qdrant_server, name) == 16

    # Computed again for what is applied, and committed: carried out.
    repo.commit(64, None, metadata={"team": "search"})
    out = repo.run(PLAN).stdout
    assert "warning: the live state may still move (a plan is AwaitingApproval)" in out, out
    fresh = repo.plan()
    assert fresh == body["status"]["plan"]["hash"], "the hash CI computes is the one the operator shows"
    repo.commit(64, fresh, metadata={"team": "search"})
    repo.run(APPLY)
    verdict(cluster, "InSync")
    assert hnsw_m(qdrant_server, name) == 64
