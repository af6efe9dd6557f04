"""kubectl qdrant against the real API server, the operator in-process and the dev (or real) Qdrant: status shows
the connection, collection and snapshot; snapshot takes one that completes and restore puts its points back;
approve applies exactly the pending plan, a changed plan is not approved and the admission policy's refusal is
shown as the API server words it; pause holds a change back until resume; logs names the active replica of two
real operator processes sharing a kopf peering object. No node runs here, so the active Pod's log itself is the
API server's answer for a Pod that does not exist (pods/log is otherwise exercised on the node suite's Pods only
by kubectl)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import models

from collection_operator.kubectl_plugin import views
from collection_operator.kubectl_plugin.client import JSON_PATCH, Kube, resource_path
from collection_operator.kubectl_plugin.errors import ApiError
from collection_operator.kubectl_plugin.kubeconfig import login
from tests.builders import collection_spec
from tests.fixtures.controlplane import KUBECTL
from tests.fixtures.operator import manifest, unique, wait_for
from tests.integration.test_approval import DENIED, can_i, subject  # noqa: F401 (fixture)
from tests.integration.test_ha import RESUMED, start
from tests.integration.test_snapshot import contents, points, source_collection

pytestmark = pytest.mark.integration
PLUGIN = Path(sys.executable).parent / "kubectl-qdrant"
VC = "vectorcollections"
APPROVE = "qdrant.collection-operator.dev/approve-plan"
PAUSED = "qdrant.collection-operator.dev/paused"


def plugin(kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(PLUGIN), *args],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", "a command that succeeds writes nothing to stderr"
    return done


def hnsw_m(qdrant_server: Any, name: str) -> int:
    with qdrant_server.http(timeout=10) as http:
        return int(http.get(f"/collections/{name}").json()["result"]["config"]["hnsw_config"]["m"])


def test_status_snapshot_and_restore(cluster, connection, qdrant_server, control_plane):
    admin, ns = control_plane.admin_kubeconfig, cluster.namespace
    collection = source_collection(cluster, qdrant_server)
    # Through kubectl itself: it finds kubectl-qdrant on PATH.
    env = {**os.environ, "KUBECONFIG": str(admin), "PATH": f"{PLUGIN.parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(
        [str(KUBECTL), "qdrant", "status", "-n", ns], env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.startswith(f"QdrantConnection {ns}/main  Ready=True Connected  since "), out
    assert f"endpoint {qdrant_server.url}" in out and f"└── VectorCollection {ns}/docs  Ready=True InSync" in out
    assert f"collection {collection}  qdrant green  points " in out and "drift: none" in out

    taken = plugin(admin, "snapshot", "docs", "--wait", "-n", ns).stdout.splitlines()
    snapshot = taken[0].split()[1].split("/")[1]
    assert taken == [
        f"CollectionSnapshot {ns}/{snapshot} created: a one-off snapshot of VectorCollection {ns}/docs",
        f"CollectionSnapshot {ns}/{snapshot} completed",
    ]
    body = cluster.get("collectionsnapshots", snapshot)
    assert snapshot.startswith("docs-") and body["spec"]["collectionRef"] == {"name": "docs"}
    record = body["status"]["snapshots"][0]["name"]

    (root,) = json.loads(plugin(admin, "status", "main", "-n", ns, "-o", "json").stdout)["connections"]
    (docs,) = root["children"]
    assert (root["ready"], root["reason"], docs["name"], docs["collection"]) == (
        "True",
        "Connected",
        "docs",
        collection,
    )
    assert [(s["name"], s["phase"], s["snapshots"]) for s in docs["children"]] == [(snapshot, "Completed", 1)]

    original = contents(qdrant_server, collection)
    with closing(qdrant_server.client()) as client:
        client.delete(collection, points_selector=models.PointIdsList(points=list(range(10))), wait=True)
        client.upsert(collection, points=points([100]), wait=True)
    out = plugin(admin, "restore", "docs", "--from", snapshot, "-n", ns).stdout  # its newest file
    assert f"restore from {snapshot}/{record} requested" in out
    value = f"{snapshot}/{record}"
    wait_for(lambda: (cluster.get(VC, "docs").get("status") or {}).get("restoredFrom") == value, 90, "the restore")
    cluster.wait_condition(VC, "docs", "InSync")
    assert contents(qdrant_server, collection) == original
    again = plugin(admin, "restore", "docs", "--from", value, "-n", ns, check=False)
    assert again.returncode == 1 and f"was restored from {value} already" in again.stderr
    missing = plugin(admin, "restore", "docs", "--from", f"{snapshot}/nope", "-n", ns, check=False)
    assert missing.returncode == 1 and f"holds no snapshot nope (it has {record})" in missing.stderr
    absent = plugin(admin, "status", "nope", "-n", ns, check=False)
    assert (absent.returncode, absent.stderr) == (1, f"error: QdrantConnection {ns}/nope not found\n")


def test_approve_applies_exactly_the_pending_plan(cluster, connection, qdrant_server, control_plane):
    admin, ns, name = control_plane.admin_kubeconfig, cluster.namespace, unique("plan")
    spec = collection_spec(collectionName=name, hnsw={"m": 16}, changePolicy={"approval": "Manual"})
    cluster.apply("VectorCollection", "plan", spec)
    cluster.wait_condition(VC, "plan", "InSync")
    nothing = plugin(admin, "approve", "plan", "-n", ns, check=False)
    assert nothing.returncode == 1 and nothing.stderr.startswith(f"error: VectorCollection {ns}/plan has no plan")

    cluster.apply("VectorCollection", "plan", {**spec, "hnsw": {"m": 32}})
    body = cluster.wait_condition(VC, "plan", "AwaitingApproval", status="False")
    plan = body["status"]["plan"]

    # A plan that changed after it was read: the API server's `test` op refuses the patch, nothing is approved.
    kube = Kube(login(str(admin), None)[0])
    stale = {**plan, "hash": "0123456789ab"}
    stale_body = {**body, "status": {**body["status"], "plan": stale}}
    with pytest.raises(ApiError) as refused:
        kube.patch(resource_path(VC, ns, "plan"), views.approval_patch(stale_body, stale), JSON_PATCH, "approving")
    kube.close()
    assert refused.value.status == 422, refused.value
    assert APPROVE not in (cluster.get(VC, "plan")["metadata"].get("annotations") or {})

    out = plugin(admin, "approve", "plan", "-n", ns).stdout
    assert out.startswith(f"plan {plan['hash']}  phase AwaitingApproval  generation 2\n"), out
    assert "  - set hnsw.m: 16 -> 32\n" in out and f"approved plan {plan['hash']} of VectorCollection {ns}/plan" in out
    assert cluster.get(VC, "plan")["metadata"]["annotations"][APPROVE] == plan["hash"]
    body = cluster.wait_condition(VC, "plan", "InSync")
    assert body["status"]["plan"]["phase"] == "Applied" and hnsw_m(qdrant_server, name) == 32


def test_the_admission_policys_refusal_is_shown_as_is(subject, control_plane, unwatched_namespace):  # noqa: F811
    """No operator watches this namespace: the plan is written into status by hand, as the operator would."""
    author = subject("author", "edit")
    approver = subject("approver", "edit", "qdrant-collection-operator:approver")
    wait_for(lambda: can_i(author, "create"), 30, "edit to aggregate the editor role (clusterrole aggregation)")
    control_plane.api.create(unwatched_namespace, manifest("VectorCollection", "docs", collection_spec()))
    plan = {"hash": "4b1e0c9a7d2f", "generation": 1, "phase": "AwaitingApproval", "summary": "re-index: hnsw.m"}
    control_plane.admin(
        "patch",
        VC,
        "docs",
        "-n",
        unwatched_namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"plan": plan}}),
    )
    what = f"approving plan {plan['hash']} of VectorCollection {unwatched_namespace}/docs"
    probe = manifest("VectorCollection", "probe", collection_spec(), annotations={APPROVE: plan["hash"]})
    wait_for(
        lambda: DENIED in author("create", "--dry-run=server", "-f", "-", stdin=json.dumps(probe), check=False),
        30,
        "the approval policy in force",
    )
    refused = plugin(author.kubeconfig, "approve", "docs", check=False)
    assert refused.returncode == 1 and refused.stderr.startswith(f"error: {what}: "), refused.stderr
    assert DENIED in refused.stderr and refused.stderr.count("\n") == 1, "the API server's words, on one line"
    assert APPROVE not in (control_plane.api.get(VC, "docs", unwatched_namespace)["metadata"].get("annotations") or {})
    plugin(approver.kubeconfig, "approve", "docs")
    assert control_plane.api.get(VC, "docs", unwatched_namespace)["metadata"]["annotations"][APPROVE] == plan["hash"]


def test_pause_holds_a_change_back_until_resume(cluster, connection, qdrant_server, control_plane):
    admin, ns, name = control_plane.admin_kubeconfig, cluster.namespace, unique("pause")
    cluster.apply("VectorCollection", "p", collection_spec(collectionName=name, hnsw={"m": 16}))
    cluster.wait_condition(VC, "p", "InSync")
    assert plugin(admin, "pause", "p", "-n", ns).stdout.startswith(f"VectorCollection {ns}/p paused")
    cluster.wait_condition(VC, "p", "Paused", type_="Paused")
    assert "paused (resume: kubectl qdrant resume p)" in plugin(admin, "status", "-n", ns).stdout
    cluster.kubectl("patch", VC, "p", "--type=merge", "-p", '{"spec": {"hnsw": {"m": 20}}}')
    wait_for(lambda: cluster.get(VC, "p")["status"].get("observedGeneration") == 2, 30, "the paused verdict on gen 2")
    time.sleep(4)  # a resync (3 s in tests) passes too
    assert hnsw_m(qdrant_server, name) == 16
    plugin(admin, "resume", "p", "-n", ns)
    assert PAUSED not in (cluster.get(VC, "p")["metadata"].get("annotations") or {})
    wait_for(lambda: hnsw_m(qdrant_server, name) == 20, 60, "the change held back by the pause")
    cluster.wait_condition(VC, "p", "InSync")


def test_logs_names_the_active_replica_of_the_peering_object(control_plane, tmp_path):
    namespace = unique("plugin-ha")  # outside the session operator's glob: only these two processes watch it
    peering = unique("qco")
    control_plane.admin("create", "namespace", namespace)
    kopf_peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": peering}}
    control_plane.admin("apply", "-n", namespace, "-f", "-", stdin=json.dumps(kopf_peering))
    logs = ("logs", "-n", namespace, "--peering", peering, "--operator-namespace", namespace, "--tail", "5")
    where = f"KopfPeering {peering} in namespace {namespace}"
    replicas: list[subprocess.Popen[bytes]] = []
    try:
        replicas.append(start(control_plane, namespace, 200, tmp_path / "a.log", peering, POD_ID="qco-a"))
        wait_for(lambda: RESUMED in (tmp_path / "a.log").read_text(errors="replace"), 60, "replica a to resume")
        replicas.append(start(control_plane, namespace, 100, tmp_path / "b.log", peering, POD_ID="qco-b"))
        wait_for(
            lambda: (
                set(control_plane.api.get("kopfpeerings", peering, namespace).get("status") or {}) == {"qco-a", "qco-b"}
            ),
            60,
            "both replicas on record",
        )

        done = plugin(control_plane.admin_kubeconfig, *logs, check=False)
        assert done.returncode == 1
        assert done.stderr.splitlines() == [
            f"active replica qco-a (priority 200, {where}): Pod {namespace}/qco-a",
            f'error: logs of Pod {namespace}/qco-a: pods "qco-a" not found',
        ]

        replicas[0].send_signal(signal.SIGKILL)
        replicas[0].wait(10)
        # Once a's keep-alives are older than their lifetime (6 s), b is the active one.
        wait_for(
            lambda: "active replica qco-b" in plugin(control_plane.admin_kubeconfig, *logs, check=False).stderr,
            30,
            "the standby to be named active",
        )
    finally:
        for proc in replicas:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        control_plane.admin("delete", "namespace", namespace, "--wait=false", check=False)
