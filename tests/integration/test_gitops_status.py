"""What Flux and Argo CD read from the operator's status, checked with their own code on real objects:
every version of an object that the real API server served while the real operator drove it through a
scenario (recorded with `kubectl get --watch`) goes through kstatus `status.Compute` (sigs.k8s.io/cli-utils,
Flux's health checks) and through the kind's Argo CD health.lua in gopher-lua (Argo CD's Lua VM).

Each version is named by what it says (no status yet, a generation not observed yet, else its Ready
reason); EXPECTED maps that name to the verdict a Flux user and an Argo CD user should see."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from collection_operator.api import GROUP
from tests.fixtures.controlplane import KUBECTL
from tests.fixtures.gohelpers import argo_health, kstatus
from tests.fixtures.operator import wait_for

pytestmark = pytest.mark.integration
VC, QC, CS = "vectorcollections", "qdrantconnections", "collectionsnapshots"
KINDS = {VC: "VectorCollection", QC: "QdrantConnection", CS: "CollectionSnapshot"}
PAUSED = "qdrant.collection-operator.dev/paused"
MANAGED = "qdrant.collection-operator.dev/managed"

# name of a version -> (kstatus, Argo CD health)
EXPECTED = {
    "no status": ("InProgress", "Progressing"),  # just applied: the operator has not looked yet
    "generation not observed": ("InProgress", "Progressing"),  # a change not applied yet
    "paused, generation not observed": ("InProgress", "Suspended"),  # changed while paused, not looked at yet
    # VectorCollection
    "InSync": ("Current", "Healthy"),
    "Optimizing": ("InProgress", "Progressing"),
    "ConnectionNotReady": ("InProgress", "Degraded"),  # a generation already applied, now unreachable
    "ImmutableFieldChanged": ("Failed", "Degraded"),
    "Paused": ("Current", "Suspended"),  # nothing in progress; the Paused condition says why
    "Unmanaged": ("Current", "Suspended"),
    "AwaitingApproval": ("InProgress", "Suspended"),  # a plan waits for a person's approval (changePolicy Manual)
    "Migrating": ("InProgress", "Progressing"),  # BlueGreen: the new collection is being filled
    "AwaitingReembedding": ("InProgress", "Progressing"),  # BlueGreen: the application's pipeline fills it
    "Switched": ("InProgress", "Progressing"),  # the name moved; the next reconcile confirms InSync
    # QdrantConnection
    "Connecting": ("InProgress", "Progressing"),
    "Recovering": ("InProgress", "Progressing"),  # circuit breaker half-open: a trial call decides
    "Connected": ("Current", "Healthy"),
    "Unauthorized": ("InProgress", "Degraded"),  # retried: a rotated Secret is picked up without a change
    "Unreachable": ("InProgress", "Degraded"),
    "CircuitOpen": ("InProgress", "Degraded"),
    # CollectionSnapshot
    "SnapshotInProgress": ("InProgress", "Progressing"),
    "Completed": ("Current", "Healthy"),
    "InvalidSpec": ("Failed", "Degraded"),
    "CollectionNotFound": ("Failed", "Degraded"),
}


def version_name(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    hands_off = [t for t in ("Paused", "Unmanaged") if (conditions.get(t) or {}).get("status") == "True"]
    if hands_off and status.get("observedGeneration") == obj["metadata"]["generation"]:
        return hands_off[0]
    ready = conditions.get("Ready")
    if ready is None:
        return "no status"
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        paused = any(c["type"] == "Paused" and c["status"] == "True" for c in status["conditions"])
        return "paused, generation not observed" if paused else "generation not observed"
    return str(ready["reason"])


@contextmanager
def recording(cluster: Any, plural: str, name: str, existing: bool = False) -> Iterator[list[dict[str, Any]]]:
    """Every version of one object the API server serves while the block runs (its watch stream). `existing`:
    the object is there already, so the block starts once the watch has served its current version (a kubectl
    that starts slowly on a busy machine would otherwise begin after the versions the block is about)."""
    versions: list[dict[str, Any]] = []
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(
            [
                str(KUBECTL),
                f"--kubeconfig={cluster.plane.admin_kubeconfig}",
                "get",
                plural,
                "-n",
                cluster.namespace,
                f"--field-selector=metadata.name={name}",
                "--watch",
                "-o",
                "json",
            ],
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        try:
            if existing:
                wait_for(lambda: os.fstat(out.fileno()).st_size, 30, f"the watch on {plural}/{name}")
            yield versions
        finally:
            proc.terminate()
            proc.wait(10)
            out.seek(0)
            text, decoder, at = out.read(), json.JSONDecoder(), 0
            while text[at:].strip():
                obj, end = decoder.raw_decode(text[at:].lstrip())
                at = len(text) - len(text[at:].lstrip()) + end
                versions.append(obj)


def verdicts(plural: str, versions: list[dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """(version name, kstatus, Argo CD health, Argo CD message, the version's status) per distinct version."""
    unique = list({v["metadata"]["resourceVersion"]: v for v in versions}.values())
    flux = kstatus(unique)
    argo = argo_health(KINDS[plural], unique)
    return [
        (version_name(v), f["status"], a["status"], a["message"], json.dumps(v.get("status")))
        for v, f, a in zip(unique, flux, argo, strict=True)
    ]


def check(plural: str, versions: list[dict[str, Any]], *must_see: str) -> None:
    got = verdicts(plural, versions)
    seen = {name for name, *_ in got}
    assert seen >= set(must_see), f"versions seen: {seen}"
    wrong = [
        (name, f"kstatus {flux}, Argo CD {argo} ({message})", f"expected {EXPECTED.get(name)}", status)
        for name, flux, argo, message, status in got
        if name not in EXPECTED or (flux, argo) != EXPECTED[name]
    ]
    assert not wrong, "\n".join(map(str, wrong))


def observed(cluster: Any, plural: str, name: str) -> None:
    def current() -> bool:
        body = cluster.get(plural, name)
        return (body.get("status") or {}).get("observedGeneration") == body["metadata"]["generation"]

    wait_for(current, 60, f"{plural}/{name} to observe its generation")


def spec(collection: str, connection: str = "main", **more: Any) -> dict[str, Any]:
    """Named after the test namespace: the session's Qdrant is shared by every test."""
    return {
        "connectionRef": {"name": connection},
        "collectionName": collection,
        "vectors": [{"name": "a", "size": 4, "distance": "Dot"}],
        **more,
    }


def test_collection_lifecycle(cluster, connection, qdrant_server):
    """Applied, Ready, an in-place change while Qdrant re-indexes, the named vector made unnamed (Stalled),
    reverted, paused (and changed while paused), resumed, unmanaged."""
    with recording(cluster, VC, "docs") as versions:
        cluster.apply("VectorCollection", "docs", spec(cluster.namespace))
        cluster.wait_condition(VC, "docs", "InSync")
        cluster.apply("VectorCollection", "docs", spec(cluster.namespace, hnsw={"m": 32}))
        if qdrant_server.is_dev:  # real Qdrant indexes nothing below its threshold: an empty collection stays green
            cluster.wait_condition(VC, "docs", "Optimizing", status="True", type_="Reconciling")
        observed(cluster, VC, "docs")
        cluster.wait_condition(VC, "docs", "InSync")
        unnamed = spec(cluster.namespace, hnsw={"m": 32})
        unnamed["vectors"] = [{"size": 4, "distance": "Dot"}]  # a vector added would be added in place (1.18+)
        cluster.apply("VectorCollection", "docs", unnamed)
        cluster.wait_condition(VC, "docs", "ImmutableFieldChanged", type_="Stalled")
        cluster.apply("VectorCollection", "docs", spec(cluster.namespace, hnsw={"m": 32}))
        cluster.wait_condition(VC, "docs", "InSync")
        cluster.kubectl("annotate", VC, "docs", f"{PAUSED}=true")
        cluster.wait_condition(VC, "docs", "Paused", type_="Paused")
        cluster.apply("VectorCollection", "docs", spec(cluster.namespace, hnsw={"m": 24}), annotations={PAUSED: "true"})
        observed(cluster, VC, "docs")
        cluster.kubectl("annotate", VC, "docs", f"{PAUSED}-")
        cluster.wait_condition(VC, "docs", "InSync")
        observed(cluster, VC, "docs")
        cluster.kubectl("annotate", VC, "docs", f"{MANAGED}=false")
        cluster.wait_condition(VC, "docs", "Unmanaged", type_="Unmanaged")
    must_see = ["no status", "generation not observed", "InSync", "ImmutableFieldChanged", "Paused", "Unmanaged"]
    check(VC, versions, *must_see, *(["Optimizing"] if qdrant_server.is_dev else []))


def test_plan_approval_and_blue_green_states(cluster, connection, qdrant_server):
    """A re-index held for approval (Argo CD: Suspended), approved; a vector size change that waits for
    re-embedding, approved early; each state as Flux's kstatus and Argo CD's Lua health read it."""
    policy = {"approval": "Manual", "immutable": "BlueGreen"}
    with recording(cluster, VC, "plan") as versions:
        cluster.apply("VectorCollection", "plan", spec(cluster.namespace, hnsw={"m": 16}, changePolicy=policy))
        cluster.wait_condition(VC, "plan", "InSync")
        cluster.apply("VectorCollection", "plan", spec(cluster.namespace, hnsw={"m": 32}, changePolicy=policy))
        body = cluster.wait_condition(VC, "plan", "AwaitingApproval", status="False")
        approve = f"qdrant.collection-operator.dev/approve-plan={body['status']['plan']['hash']}"
        cluster.kubectl("annotate", VC, "plan", approve, "--overwrite")
        cluster.wait_condition(VC, "plan", "InSync")
        with qdrant_server.http(timeout=10) as http:  # points that only re-embedding can carry over
            points = [{"id": i, "vector": {"a": [1.0, 0.0, 0.0, float(i)]}} for i in range(3)]
            http.put(f"/collections/{cluster.namespace}/points?wait=true", json={"points": points}).raise_for_status()
        resized = spec(cluster.namespace, hnsw={"m": 32}, changePolicy=policy)
        resized["vectors"][0]["size"] = 8
        cluster.apply("VectorCollection", "plan", resized)
        body = cluster.wait_condition(VC, "plan", "AwaitingApproval", status="False")  # the migration's plan
        cluster.kubectl(
            "annotate", VC, "plan", approve.split("=")[0] + "=" + body["status"]["plan"]["hash"], "--overwrite"
        )
        body = cluster.wait_condition(VC, "plan", "AwaitingReembedding", status="False")
        cluster.kubectl(
            "annotate", VC, "plan", approve.split("=")[0] + "=" + body["status"]["plan"]["hash"], "--overwrite"
        )
        cluster.wait_condition(VC, "plan", "InSync")
    check(VC, versions, "InSync", "AwaitingApproval", "AwaitingReembedding")


def test_connection_and_collection_when_qdrant_goes_away(cluster, operator, qdrant_server_factory):
    """A connection (Connecting, Connected) and its collection, then the Qdrant stops: both were applied,
    now neither works; then it is back."""
    server = qdrant_server_factory()
    with recording(cluster, QC, "flaky") as connections, recording(cluster, VC, "docs") as collections:
        cluster.apply(
            "QdrantConnection",
            "flaky",
            {"url": server.url, "environment": "Testing", "circuitBreaker": {"failureThreshold": 1, "openSeconds": 2}},
        )
        cluster.wait_condition(QC, "flaky", "Connected")
        cluster.apply("VectorCollection", "docs", spec(cluster.namespace, "flaky"))
        cluster.wait_condition(VC, "docs", "InSync")
        server.stop()
        try:
            cluster.wait_condition(QC, "flaky", status="False", timeout=60)
            cluster.wait_condition(VC, "docs", "ConnectionNotReady", status="False", timeout=60)
        finally:
            server.start()
        cluster.wait_condition(QC, "flaky", "Connected", timeout=60)
        cluster.wait_condition(VC, "docs", "InSync", timeout=60)
    check(QC, connections, "Connected")
    assert {name for name, *_ in verdicts(QC, connections)} & {"Unreachable", "CircuitOpen"}
    check(VC, collections, "InSync", "ConnectionNotReady")


def test_connection_with_a_wrong_api_key(cluster, operator, qdrant_server_factory):
    server = qdrant_server_factory(api_key="the-right-key")
    cluster.kubectl("create", "secret", "generic", "key", "--from-literal=api-key=a-wrong-key")
    with recording(cluster, QC, "wrong") as versions:
        cluster.apply(
            "QdrantConnection",
            "wrong",
            {"url": server.url, "environment": "Testing", "apiKeySecretRef": {"name": "key"}},
        )
        cluster.wait_condition(QC, "wrong", "Unauthorized", status="False", timeout=30)
    check(QC, versions, "Unauthorized")


def test_snapshots(cluster, connection):
    cluster.apply("VectorCollection", "docs", spec(cluster.namespace))
    cluster.wait_condition(VC, "docs", "InSync")
    with (
        recording(cluster, CS, "once") as once,
        recording(cluster, CS, "badcron") as badcron,
        recording(cluster, CS, "nothing") as nothing,
    ):
        cluster.apply("CollectionSnapshot", "once", {"collectionRef": {"name": "docs"}})
        cluster.apply("CollectionSnapshot", "badcron", {"collectionRef": {"name": "docs"}, "schedule": "61 * * * *"})
        cluster.apply("CollectionSnapshot", "nothing", {"collectionRef": {"name": "nothing"}})
        cluster.wait_condition(CS, "once", "Completed", timeout=60)
        cluster.wait_condition(CS, "badcron", "InvalidSpec", type_="Stalled")
        cluster.wait_condition(CS, "nothing", "CollectionNotFound", type_="Stalled")
    check(CS, once, "Completed")
    check(CS, badcron, "InvalidSpec")
    check(CS, nothing, "CollectionNotFound")


def flux_verdicts(versions: list[dict[str, Any]], name: str) -> set[str]:
    return {flux for version, flux, *_ in verdicts(VC, versions) if version == name}


def test_flux_just_applied_is_in_progress(cluster, connection):
    doc = {"apiVersion": f"{GROUP}/v1alpha1", "kind": "VectorCollection", "metadata": {"name": "new"}}
    doc["spec"] = spec(cluster.namespace)
    with recording(cluster, VC, "new") as versions:
        # The version the create returned: a watch started just before can miss it on a busy machine.
        created = json.loads(cluster.kubectl("create", "-f", "-", "-o", "json", stdin=json.dumps(doc)))
        cluster.wait_condition(VC, "new", "InSync")
    assert flux_verdicts([created, *versions], "no status") == {"InProgress"}


def test_flux_paused_and_unmanaged_are_current(cluster, connection):
    cluster.apply("VectorCollection", "held", spec(cluster.namespace), annotations={PAUSED: "true"})
    with recording(cluster, VC, "held", existing=True) as versions:
        cluster.wait_condition(VC, "held", "Paused", type_="Paused")
        cluster.kubectl("annotate", VC, "held", f"{PAUSED}-", f"{MANAGED}=false")
        cluster.wait_condition(VC, "held", "Unmanaged", type_="Unmanaged")
    assert (flux_verdicts(versions, "Paused"), flux_verdicts(versions, "Unmanaged")) == ({"Current"}, {"Current"})
