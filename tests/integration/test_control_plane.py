"""The CRDs and RBAC against the real kube-apiserver, through real kubectl."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from devenv import controlplane
from tests.builders import collection_spec
from tests.fixtures.controlplane import KubectlError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GROUP = "qdrant.collection-operator.dev"


def collection(name: str, **spec) -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "VectorCollection",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


MINIMAL = collection_spec()


def test_server_reports_a_real_version(control_plane):
    version = json.loads(control_plane.admin("version", "-o", "json"))["serverVersion"]
    assert version["gitVersion"] == controlplane.KUBERNETES_VERSION
    assert version["minor"] == controlplane.KUBERNETES_VERSION.split(".")[1]


def test_crds_are_established_and_listable(control_plane, namespace):
    for plural in ("qdrantconnections", "vectorcollections", "collectionsnapshots"):
        crd = control_plane.admin.json("get", "crd", f"{plural}.{GROUP}")
        established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert established["Established"] == "True"
        assert control_plane.admin.json("get", plural, "-n", namespace)["items"] == []
    assert control_plane.admin("get", "qdrant", "-n", namespace, "-o", "name") == ""  # the category works


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_accepted(control_plane, namespace, path):
    out = control_plane.admin("apply", "--dry-run=server", "-n", namespace, "-f", str(path))
    assert "(server dry run)" in out


def test_missing_required_field_is_rejected_with_a_readable_message(control_plane, namespace):
    with pytest.raises(KubectlError) as err:
        control_plane.admin(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=collection("no-conn", vectors=[{"size": 4, "distance": "Cosine"}]),
        )
    assert "spec.connectionRef: Required value" in err.value.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {**MINIMAL, "replicationFactor": 1, "writeConsistencyFactor": 2},
            "writeConsistencyFactor must not exceed replicationFactor",
        ),
        (
            {**MINIMAL, "quantization": {"scalar": {}, "binary": {}}},
            "quantization takes exactly one of scalar, product, binary or disabled",
        ),
        (
            {**MINIMAL, "vectors": [{"size": 4, "distance": "Cosine"}, {"name": "b", "size": 4, "distance": "Dot"}]},
            'an unnamed vector (name "") must be the only dense vector',
        ),
        ({**MINIMAL, "vectors": [{"size": 0, "distance": "Cosine"}]}, "should be greater than or equal to 1"),
        ({**MINIMAL, "vectors": [{"size": 4, "distance": "Hamming"}]}, 'Unsupported value: "Hamming"'),
        ({**MINIMAL, "hnsw": {"efConstrukt": 100}}, 'unknown field "spec.hnsw.efConstrukt"'),
        (
            {**MINIMAL, "metadata": {"qdrant-collection-operator.dev/owner": "ns/other/uid"}},
            "qdrant-collection-operator.dev/owner is the operator's ownership marker",
        ),
        ({**MINIMAL, "metadata": {f"k{i}": "v" for i in range(65)}}, "must have at most 64 items"),
        ({**MINIMAL, "metadata": {"dim": 768}}, 'spec.metadata.dim: Invalid value: "integer"'),
        ({**MINIMAL, "strictMode": {"maxQueryLimit": 0}}, "should be greater than or equal to 1"),
        ({**MINIMAL, "strictMode": {"maxQueryLimt": 10}}, 'unknown field "spec.strictMode.maxQueryLimt"'),
        (
            {**MINIMAL, "sparseVectors": [{"name": "kw", "index": {"datatype": "Turbo4"}}]},
            'Unsupported value: "Turbo4"',
        ),
    ],
    ids=[
        "write-consistency",
        "two-quantizations",
        "unnamed-plus-named",
        "size-0",
        "bad-distance",
        "typo",
        "owner-key",
        "metadata-keys",
        "metadata-not-string",
        "strict-limit-0",
        "strict-typo",
        "sparse-datatype",
    ],
)
def test_invalid_specs_are_rejected(control_plane, namespace, spec, message):
    with pytest.raises(KubectlError) as err:
        control_plane.admin("apply", "-n", namespace, "-f", "-", stdin=collection("bad", **spec))
    assert message in err.value.stderr


def test_immutable_fields_are_rejected_by_cel(control_plane, namespace):
    control_plane.admin("apply", "-n", namespace, "-f", "-", stdin=collection("docs", collectionName="docs", **MINIMAL))
    changes = {
        "connectionRef is immutable": {"spec": {"connectionRef": {"name": "other"}}},
        "collectionName is immutable": {"spec": {"collectionName": "elsewhere"}},
    }
    for message, patch in changes.items():
        with pytest.raises(KubectlError) as err:
            control_plane.admin("patch", "-n", namespace, "vc", "docs", "--type=merge", "-p", json.dumps(patch))
        assert message in err.value.stderr
    with pytest.raises(KubectlError) as err:
        control_plane.admin(
            "patch",
            "-n",
            namespace,
            "vc",
            "docs",
            "--type=json",
            "-p",
            '[{"op": "replace", "path": "/spec/vectors/0/size", "value": 8}]',
        )
    assert "a vector's size, distance, datatype and multivector are immutable" in err.value.stderr
    # A mutable field still changes, and nothing above was stored.
    control_plane.admin("patch", "-n", namespace, "vc", "docs", "--type=merge", "-p", '{"spec":{"hnsw":{"m":32}}}')
    spec = control_plane.admin.json("get", "-n", namespace, "vc", "docs")["spec"]
    assert spec["connectionRef"] == {"name": "main"} and spec["vectors"][0]["size"] == 4 and spec["hnsw"] == {"m": 32}


def test_blue_green_lifts_the_immutability_rules_qdrant_needs_a_new_collection_for(control_plane, namespace):
    blue_green = {"changePolicy": {"immutable": "BlueGreen"}}
    doc = collection("bg", collectionName="bg", shardNumber=1, **MINIMAL, **blue_green)
    control_plane.admin("apply", "-n", namespace, "-f", "-", stdin=doc)
    patch = {"spec": {"shardNumber": 2, "vectors": [{"size": 8, "distance": "Cosine"}], "wal": {"capacityMb": 64}}}
    control_plane.admin("patch", "-n", namespace, "vc", "bg", "--type=merge", "-p", json.dumps(patch))
    spec = control_plane.admin.json("get", "-n", namespace, "vc", "bg")["spec"]
    assert (
        spec["shardNumber"] == 2 and spec["vectors"][0]["size"] == 8 and spec["changePolicy"]["rollbackWindow"] == "1h"
    )
    with pytest.raises(KubectlError) as err:  # the name applications use is never lifted
        control_plane.admin(
            "patch", "-n", namespace, "vc", "bg", "--type=merge", "-p", '{"spec":{"collectionName":"x"}}'
        )
    assert "collectionName is immutable" in err.value.stderr
    with pytest.raises(KubectlError) as err:
        bad = {"spec": {"changePolicy": {"rollbackWindow": "soon"}}}
        control_plane.admin("patch", "-n", namespace, "vc", "bg", "--type=merge", "-p", json.dumps(bad))
    assert "rollbackWindow" in err.value.stderr


def test_printer_columns_through_kubectl(control_plane, namespace):
    control_plane.admin("apply", "-n", namespace, "-f", "-", stdin=collection("cols", **MINIMAL))
    header = control_plane.admin("get", "vectorcollections", "-n", namespace).splitlines()[0]
    columns = ["NAME", "COLLECTION", "CONNECTION", "READY", "REASON", "POINTS", "PLAN", "AGE"]
    assert re.split(r"\s+", header.strip()) == columns
    wide = control_plane.admin("get", "vectorcollections", "-n", namespace, "-o", "wide").splitlines()[0]
    more = ["PLAN-HASH", "PHYSICAL", "QDRANT", "INDEXED", "SEGMENTS", "SHARDS", "REPLICATION", "MESSAGE"]
    assert re.split(r"\s+", wide.strip())[8:] == more
    assert "cols" in control_plane.admin("get", "qdrant", "-n", namespace)
    assert "cols" in control_plane.admin("get", "vc", "-n", namespace)


def test_a_stalled_collection_does_not_read_as_fine(control_plane, unwatched_namespace):
    namespace = unwatched_namespace  # status is written by hand below: no operator may rewrite it
    """The status the operator writes for a vector added to an existing collection, as kubectl shows it."""
    control_plane.admin("apply", "-n", namespace, "-f", "-", stdin=collection("stuck", **MINIMAL))
    stamp = "2026-01-01T00:00:00Z"
    status = {
        "collectionName": "stuck",
        "qdrantStatus": "green",
        "pointsCount": 12,
        "indexedVectorsCount": 10,
        "segmentsCount": 3,
        "shardNumber": 2,
        "replicationFactor": 1,
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "ImmutableFieldChanged",
                "message": "vectors added",
                "lastTransitionTime": stamp,
            },
            {"type": "Reconciling", "status": "False", "reason": "Idle", "message": "", "lastTransitionTime": stamp},
            {
                "type": "Stalled",
                "status": "True",
                "reason": "ImmutableFieldChanged",
                "message": "vectors added",
                "lastTransitionTime": stamp,
            },
        ],
    }
    control_plane.admin(
        "patch",
        "-n",
        namespace,
        "vc",
        "stuck",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    assert control_plane.admin.row("vc", "stuck", "-n", namespace) | {"AGE": ""} == {
        "NAME": "stuck",
        "COLLECTION": "stuck",
        "CONNECTION": "main",
        "READY": "False",
        "REASON": "ImmutableFieldChanged",
        "POINTS": "12",
        "PLAN": "",
        "AGE": "",
    }
    wide = control_plane.admin.row("vc", "stuck", "-n", namespace, "-o", "wide")
    assert [wide[c] for c in ("QDRANT", "INDEXED", "SEGMENTS", "SHARDS", "REPLICATION", "MESSAGE")] == [
        "green",
        "10",
        "3",
        "2",
        "1",
        "vectors added",
    ]


def test_connection_and_snapshot_columns_through_kubectl(control_plane, unwatched_namespace):
    namespace = unwatched_namespace  # status is written by hand below: no operator may rewrite it
    conn = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "QdrantConnection",
        "metadata": {"name": "main"},
        "spec": {"url": "http://qdrant.example:6333", "environment": "Testing"},
    }
    snap = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "CollectionSnapshot",
        "metadata": {"name": "nightly"},
        "spec": {"collectionRef": {"name": "docs"}, "schedule": "0 3 * * *"},
    }
    control_plane.admin(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps({"kind": "List", "apiVersion": "v1", "items": [conn, snap]}),
    )
    stamp = "2026-01-01T00:00:00Z"
    ready = [{"type": "Ready", "status": "False", "reason": "CircuitOpen", "message": "", "lastTransitionTime": stamp}]
    control_plane.admin(
        "patch",
        "-n",
        namespace,
        "qconn",
        "main",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "status": {
                    "url": "http://qdrant-0.example:6333 (+2)",
                    "health": "Unhealthy",
                    "circuitBreaker": "Open",
                    "peers": 1,
                    "collections": 3,
                    "conditions": ready,
                }
            }
        ),
    )
    got = control_plane.admin.row("qconn", "main", "-n", namespace, "-o", "wide")
    assert [got[c] for c in ("URL", "HEALTH", "READY", "REASON", "BREAKER", "PEERS", "COLLECTIONS")] == [
        "http://qdrant-0.example:6333 (+2)",
        "Unhealthy",
        "False",
        "CircuitOpen",
        "Open",
        "1",
        "3",
    ]
    stalled = [{**ready[0], "reason": "CollectionNotFound"}]
    control_plane.admin(
        "patch",
        "-n",
        namespace,
        "vsnap",
        "nightly",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "status": {
                    "phase": "Failed",
                    "connection": f"{namespace}/main",
                    "count": 2,
                    "totalSize": "1.5 GiB",
                    "conditions": stalled,
                }
            }
        ),
    )
    got = control_plane.admin.row("vsnap", "nightly", "-n", namespace, "-o", "wide")
    assert [got[c] for c in ("PHASE", "SNAPSHOTS", "SIZE", "READY", "REASON", "CONNECTION")] == [
        "Failed",
        "2",
        "1.5 GiB",
        "False",
        "CollectionNotFound",
        f"{namespace}/main",
    ]


def test_operator_identity_has_exactly_its_cluster_role(control_plane, namespace):
    op = control_plane.operator
    # Granted by manifests/base/rbac.yaml: reading and patching its kinds, reading Secrets, posting Events.
    assert op.json("get", "vectorcollections", "-n", namespace)["items"] == []
    control_plane.admin("create", "secret", "generic", "key", "-n", namespace, "--from-literal=api-key=s3cret")
    assert op.json("get", "secret", "key", "-n", namespace)["data"]["api-key"]
    assert op("auth", "can-i", "patch", "vectorcollections/status", "-n", namespace).strip() == "yes"
    # Not granted: the operator never deletes Secrets nor creates its users' resources.
    with pytest.raises(KubectlError) as err:
        op("delete", "secret", "key", "-n", namespace)
    assert "Forbidden" in err.value.stderr
    assert 'cannot delete resource "secrets"' in err.value.stderr
    with pytest.raises(KubectlError) as err:
        op("apply", "-n", namespace, "-f", "-", stdin=collection("sneaky", **MINIMAL))
    assert "Forbidden" in err.value.stderr
    assert control_plane.admin.json("get", "secret", "key", "-n", namespace)["metadata"]["name"] == "key"


def test_namespace_deletion_and_garbage_collection_run(control_plane):
    """kube-controller-manager is part of the control plane: owned objects and namespaces go away."""
    control_plane.admin("create", "namespace", "gc-check")
    try:
        owner = control_plane.admin.json("create", "configmap", "owner", "-n", "gc-check")
        dependent = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "dependent",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner["metadata"]["uid"],
                    }
                ],
            },
        }
        control_plane.admin("apply", "-n", "gc-check", "-f", "-", stdin=json.dumps(dependent))
        control_plane.admin("delete", "configmap", "owner", "-n", "gc-check")
        control_plane.admin("wait", "--for=delete", "configmap/dependent", "-n", "gc-check", "--timeout=60s")
    finally:
        control_plane.admin("delete", "namespace", "gc-check", "--timeout=90s")
    assert "NotFound" in control_plane.admin("get", "namespace", "gc-check", check=False)
