"""kubectl qdrant's pure parts: the status tree and its text, the active replica of a kopf peering object, the
approval patch, the kubeconfig it reads, its argument errors, and the krew manifest's archive. The commands
against the real API server: tests/integration/test_kubectl_plugin.py."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from collection_operator.api.collection import VectorCollectionSpec
from collection_operator.kubectl_plugin import kubeconfig, main, views
from collection_operator.kubectl_plugin.errors import PluginError
from collection_operator.reconcile.collection import plan_hash
from devenv import krew_archive

NOW = datetime.datetime(2026, 12, 7, 3, 0, 0, tzinfo=datetime.UTC)
APPROVE = "qdrant.collection-operator.dev/approve-plan"
PAUSED = "qdrant.collection-operator.dev/paused"


def ready(status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "conditions": [
            {"type": "Ready", "status": status, "reason": reason, "message": message, "lastTransitionTime": "T1"}
        ],
        "observedGeneration": 1,
    }


def obj(kind_spec: dict[str, Any], status: dict[str, Any], name: str, namespace: str = "demo", **meta: Any):
    return {
        "metadata": {"name": name, "namespace": namespace, "generation": 1, **meta},
        "spec": kind_spec,
        "status": status,
    }


CONNECTION = obj(
    {"endpoints": ["http://q1:6333", "http://q2:6333"]},
    {
        **ready("True", "Connected", "Connected to Qdrant 1.19.0"),
        "health": "Degraded",
        "serverVersion": "1.19.0",
        "circuitBreaker": "Closed",
        "endpoints": [
            {"url": "http://q1:6333", "health": "Healthy", "circuitBreaker": "Closed", "inRotation": True},
            {
                "url": "http://q2:6333",
                "health": "Unhealthy",
                "circuitBreaker": "Open",
                "inRotation": False,
                "reason": "Unreachable",
            },
        ],
    },
    "main",
)
PLAN = {
    "hash": "4b1e0c9a7d2f",
    "generation": 2,
    "phase": "AwaitingApproval",
    "summary": "re-index: hnsw.m",
    "actions": ["set hnsw.m: 16 -> 32"],
    "reindex": True,
    "estimatedVectors": 1000,
}
DOCS = obj(
    {"connectionRef": {"name": "main"}},
    {
        **ready("False", "AwaitingApproval", "plan 4b1e0c9a7d2f awaits approval"),
        "collectionName": "docs",
        "qdrantStatus": "green",
        "pointsCount": 1000,
        "plan": PLAN,
        "drift": [{"field": "optimizers.indexingThreshold", "desired": "20000", "actual": "10000"}],
    },
    "docs",
    generation=2,
    annotations={PAUSED: "true"},
)
BACKUP = obj(
    {"collectionRef": {"name": "docs"}, "schedule": "@daily"},
    {
        **ready("True", "Completed", "1 snapshot"),
        "phase": "Completed",
        "snapshots": [{"name": "docs-1"}],
        "lastSnapshotTime": "T2",
        "nextScheduleTime": "T3",
    },
    "backup",
)
ORPHAN = obj({"collectionRef": {"name": "gone"}}, {"connection": "demo/main", "phase": "Failed"}, "old-backup")
ELSEWHERE = obj({"connectionRef": {"name": "shared", "namespace": "infra"}}, {}, "other")


def test_the_tree_hangs_snapshots_under_collections_under_their_connection():
    roots = views.tree([CONNECTION], [ELSEWHERE, DOCS], [ORPHAN, BACKUP])
    assert [r.key for r in roots] == ["demo/main", "infra/shared"]
    assert views.render(roots) == "\n".join(
        [
            "QdrantConnection demo/main  Ready=True Connected  since T1",
            "│   health Degraded  version 1.19.0  breaker Closed",
            "│   endpoint http://q1:6333 (Healthy, Closed)",
            "│   endpoint http://q2:6333 (Unhealthy, Open, Unreachable, out of rotation)",
            "│   message: Connected to Qdrant 1.19.0",
            "├── VectorCollection demo/docs  Ready=False AwaitingApproval  since T1",
            "│   │   collection docs  qdrant green  points 1000",
            "│   │   plan AwaitingApproval 4b1e0c9a7d2f: re-index: hnsw.m",
            "│   │   drift: optimizers.indexingThreshold is 10000, spec says 20000",
            "│   │   paused (resume: kubectl qdrant resume docs)",
            "│   │   observed generation 1 of 2: the operator has not caught up yet",
            "│   │   message: plan 4b1e0c9a7d2f awaits approval",
            "│   └── CollectionSnapshot demo/backup  Ready=True Completed  since T1",
            "│           phase Completed  schedule @daily  snapshots 1  last T2  next T3",
            "│           message: 1 snapshot",
            "└── VectorCollection demo/gone  Ready=-",
            "    │   message: " + views.NOT_LISTED,
            "    └── CollectionSnapshot demo/old-backup  Ready=Unknown",
            "            phase Failed  snapshots 0",
            "            observed generation - of 1: the operator has not caught up yet",
            "QdrantConnection infra/shared  Ready=-",
            "│   message: " + views.NOT_LISTED,
            "└── VectorCollection demo/other  Ready=Unknown",
            "        drift: none",
            "        observed generation - of 1: the operator has not caught up yet",
        ]
    )


def test_one_connection_only_and_the_json_form():
    (root,) = views.tree([CONNECTION], [DOCS, ELSEWHERE], [BACKUP], only="demo/main")
    doc = json.loads(json.dumps(root.as_json()))
    assert (doc["kind"], doc["ready"], doc["health"], doc["version"]) == (
        "QdrantConnection",
        "True",
        "Degraded",
        "1.19.0",
    )
    (docs,) = doc["children"]
    assert docs["plan"] == PLAN and docs["paused"] is True and docs["drift"][0]["actual"] == "10000"
    assert [s["name"] for s in docs["children"]] == ["backup"] and docs["children"][0]["snapshots"] == 1


def peer(priority: int, seconds_ago: int, lifetime: int = 60) -> dict[str, Any]:
    lastseen = (NOW - datetime.timedelta(seconds=seconds_ago)).isoformat()
    return {"priority": priority, "lifetime": lifetime, "lastseen": lastseen}


def test_the_active_replica_is_the_alive_peer_of_the_highest_priority():
    status = {
        "root@qdrant-collection-operator-7c9f-abcde/20261207025900/x1y": peer(100, 5),
        "root@qdrant-collection-operator-7c9f-fghij.cluster.local/20261207025800/z2w": peer(200, 10),
        "root@old-pod/20261207010000/q9q": peer(900, 600),  # its keep-alives stopped: kopf counts it gone
        "not-a-peer": {"priority": "x"},
    }
    active = views.active_peer(status, NOW)
    assert active.priority == 200 and active.pod == "qdrant-collection-operator-7c9f-fghij"
    assert views.Peer("qco-a", 1, NOW).pod == "qco-a"  # POD_ID (the Pod's name) is kopf's identity as is


def test_no_active_replica_when_the_top_priority_is_shared_or_nobody_is_alive():
    with pytest.raises(PluginError, match="share the top priority 100, and kopf pauses them all"):
        views.active_peer({"a@h1/1/x": peer(100, 1), "a@h2/1/y": peer(100, 2), "a@h3/1/z": peer(50, 1)}, NOW)
    with pytest.raises(
        PluginError, match=r"no operator replica is alive in the peering object \(1 listed, none seen lately\)"
    ):
        views.active_peer({"a@h1/1/x": peer(100, 120)}, NOW)


def test_the_approval_patch_tests_the_plan_and_sets_exactly_its_hash():
    plan = views.pending_plan(DOCS)
    tests = [
        {"op": "test", "path": "/status/plan/hash", "value": "4b1e0c9a7d2f"},
        {"op": "test", "path": "/status/plan/phase", "value": "AwaitingApproval"},
        {"op": "test", "path": "/metadata/generation", "value": 2},
    ]
    assert views.approval_patch(DOCS, plan) == [
        *tests,
        {
            "op": "add",
            "path": "/metadata/annotations/qdrant.collection-operator.dev~1approve-plan",
            "value": "4b1e0c9a7d2f",
        },
    ]
    bare = {**DOCS, "metadata": {k: v for k, v in DOCS["metadata"].items() if k != "annotations"}}
    assert views.approval_patch(bare, plan)[-1] == {
        "op": "add",
        "path": "/metadata/annotations",
        "value": {APPROVE: "4b1e0c9a7d2f"},
    }
    assert "  - set hnsw.m: 16 -> 32" in views.describe_plan(plan) and "re-indexes" in views.describe_plan(plan)


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (None, "has no plan to approve"),
        ({**PLAN, "phase": "Applied"}, "its plan 4b1e0c9a7d2f is Applied"),
        ({**PLAN, "generation": 1}, "is for generation 1, the spec is at generation 2"),
    ],
)
def test_no_pending_plan_is_refused_with_the_reason(plan, message):
    with pytest.raises(PluginError, match=message):
        views.pending_plan({**DOCS, "status": {"plan": plan}})


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def vc(spec: dict[str, Any], annotations: dict[str, str] | None = None, status: dict[str, Any] | None = None):
    meta: dict[str, Any] = {"name": "docs", "namespace": "demo", "generation": 3}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "qdrant.collection-operator.dev/v1alpha1",
        "kind": "VectorCollection",
        "metadata": meta,
        "spec": spec,
        **({"status": status} if status is not None else {}),
    }


SPEC = {"connectionRef": {"name": "main"}, "vectors": [{"size": 4, "distance": "Dot"}], "hnsw": {"m": 16}}
SETTLED = {**ready("True", "InSync", ""), "appliedGeneration": 3, "planBase": "0123456789ab"}


def test_a_plan_computed_before_applying_is_the_operators_hash_over_the_manifest_and_plan_base():
    change = {**SPEC, "hnsw": {"m": 32}}
    p = views.preview(vc(change), "demo", vc(SPEC, status=SETTLED))
    spec = VectorCollectionSpec.model_validate(change)
    assert p.hash == plan_hash("demo/docs", spec, "0123456789ab") and p.plan_base == "0123456789ab"
    assert p.changes == ["hnsw.m: 16 -> 32"] and p.unsettled is None
    text = views.describe_preview(p)
    assert text.splitlines() == [
        f"VectorCollection demo/docs: plan {p.hash} (live state 0123456789ab)",
        "  - hnsw.m: 16 -> 32",
        f'  to approve it in the same commit, annotate the manifest: {APPROVE}: "{p.hash}"',
    ]
    assert views.stale_approval(p) is None, "no approval in the manifest: nothing to check"

    approved = views.preview(vc(change, {APPROVE: p.hash}), "demo", vc(SPEC, status=SETTLED))
    assert views.stale_approval(approved) is None and "the manifest approves this plan" in views.describe_preview(
        approved
    )
    moved = views.preview(vc(change, {APPROVE: p.hash}), "demo", vc(SPEC, status={**SETTLED, "planBase": "ffff"}))
    assert moved.hash != p.hash
    assert views.stale_approval(moved) == (
        f"VectorCollection demo/docs: the manifest approves plan {p.hash}, but applied now its plan is {moved.hash} "
        "(another change, or the live state moved): the operator would not apply it"
    )


def test_a_plan_preview_says_what_it_cannot_know():
    new = views.preview(vc(SPEC), "demo", None)
    assert (
        new.hash is None
        and views.describe_preview(new) == "VectorCollection demo/docs: new; its create needs no approval"
    )
    same = views.preview(vc(SPEC), "demo", vc(SPEC, status=SETTLED))
    assert views.describe_preview(same) == "VectorCollection demo/docs: the spec is unchanged, nothing to plan"
    busy = {**SETTLED, "appliedGeneration": 2}
    moving = views.preview(vc({**SPEC, "hnsw": {"m": 32}}), "demo", vc(SPEC, status=busy))
    assert moving.unsettled == "generation 3 is not applied yet (applied: 2)"
    assert "warning: the live state may still move (generation 3 is not applied yet" in views.describe_preview(moving)
    waiting = {**SETTLED, "pendingPlan": "AwaitingApproval"}
    held = views.preview(vc(SPEC, {APPROVE: "0" * 12}), "demo", vc(SPEC, status=waiting))
    assert held.planned and held.hash == plan_hash(
        "demo/docs", VectorCollectionSpec.model_validate(SPEC), "0123456789ab"
    )
    assert views.describe_preview(held).splitlines()[1:3] == [
        "  - the spec is unchanged",
        "  warning: the live state may still move (a plan is AwaitingApproval): compute again once it is Ready",
    ]
    assert views.stale_approval(held) is not None, "the waiting plan is checked even when the spec is unchanged"
    assert views.stale_approval(views.preview(vc(SPEC, {APPROVE: "0" * 12}), "demo", vc(SPEC, status=SETTLED))) is None
    with pytest.raises(PluginError, match=r"demo/docs has no status\.planBase: the operator has not applied it yet"):
        views.preview(vc(SPEC), "demo", vc(SPEC, status={}))
    with pytest.raises(PluginError, match=r"demo/docs in the manifest: invalid spec: hnsw\.m: "):
        views.preview(vc({**SPEC, "hnsw": {"m": "many"}}), "demo", None)


def test_the_kubeconfig_merges_files_picks_the_context_and_resolves_relative_files(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    first = write(
        tmp_path / "sub" / "a.yaml",
        {
            "current-context": "a",
            "contexts": [{"name": "a", "context": {"cluster": "ca", "user": "ua"}}],
            "clusters": [
                {"name": "ca", "cluster": {"server": "https://127.0.0.1:1", "certificate-authority": "ca.crt"}}
            ],
            "users": [{"name": "ua", "user": {"token": "tok-a"}}],
        },
    )
    token = json.dumps({"kind": "ExecCredential", "status": {"token": "tok-exec"}})
    second = write(
        tmp_path / "b.yaml",
        {
            "current-context": "ignored: the first file's wins",
            "contexts": [{"name": "b", "context": {"cluster": "cb", "user": "ub", "namespace": "team"}}],
            "clusters": [{"name": "cb", "cluster": {"server": "https://127.0.0.1:2"}}],
            "users": [
                {"name": "ub", "user": {"exec": {"command": sys.executable, "args": ["-c", f"print({token!r})"]}}}
            ],
        },
    )
    monkeypatch.setenv("KUBECONFIG", f"{first}:{tmp_path / 'missing.yaml'}:{second}")
    info, namespace = kubeconfig.login(None, None)
    assert (info.server, info.token, info.ca_path, namespace) == (
        "https://127.0.0.1:1",
        "tok-a",
        str(tmp_path / "sub" / "ca.crt"),
        "default",
    )
    info, namespace = kubeconfig.login(None, "b")  # a client-go credential plugin, run for real
    assert (info.server, info.token, namespace) == ("https://127.0.0.1:2", "tok-exec", "team")
    with pytest.raises(PluginError, match="context 'c' is not in the kubeconfig"):
        kubeconfig.login(None, "c")
    with pytest.raises(PluginError, match=r"kubeconfig .*nope\.yaml does not exist"):
        kubeconfig.login(str(tmp_path / "nope.yaml"), None)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main.main(list(argv))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_an_expected_error_is_one_line_and_exit_1_never_a_traceback(capsys, tmp_path):
    code, _, err = run(capsys, "--kubeconfig", str(tmp_path / "nope.yaml"), "status")
    assert (code, err) == (1, f"error: kubeconfig {tmp_path / 'nope.yaml'} does not exist\n")
    config = write(tmp_path / "c.yaml", {"current-context": "x", "contexts": [], "clusters": [], "users": []})
    code, _, err = run(capsys, "approve", "docs", "--kubeconfig", str(config))  # the options after the command too
    assert (code, err) == (1, "error: context 'x' is not in the kubeconfig\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["approve"], "the following arguments are required: NAME"),
        (["restore", "docs"], "the following arguments are required: --from"),
        (["logs", "--tail", "-1"], "-1: must be at least 0"),
        (["snapshot", "docs", "--wait", "--timeout", "0"], "0: must be above 0"),
        (["status", "-o", "yaml"], "invalid choice: 'yaml'"),
    ],
)
def test_bad_arguments_are_refused_by_name(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err


def test_the_krew_manifest_names_the_archive_it_installs():
    assert krew_archive.main(["--check"]) == 0, "the manifest's sha256 is stale: python3 devenv/krew_archive.py"
    manifest = yaml.safe_load(krew_archive.MANIFEST.read_text())
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2" and manifest["kind"] == "Plugin"
    assert manifest["metadata"]["name"] == krew_archive.MANIFEST.stem  # krew: the file is named after the plugin
    (platform,) = manifest["spec"]["platforms"]
    assert platform["bin"] == "kubectl-qdrant" and platform["files"] == [{"from": "kubectl-qdrant", "to": "."}]
    assert krew_archive.archive() == krew_archive.archive(), "the archive is the same on every build"
