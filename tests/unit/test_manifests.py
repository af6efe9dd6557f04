"""manifests/ renders with kustomize (kubectl's own) and wires the pieces together."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.builders import collection_spec

REPO = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"


def render(path: str) -> list[dict]:
    out = subprocess.run([str(KUBECTL), "kustomize", str(REPO / path)], check=True, capture_output=True, text=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def test_base_includes_crds_rbac_and_a_hardened_deployment():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in render("manifests/base")}
    assert ("CustomResourceDefinition", "vectorcollections.qdrant.collection-operator.dev") in docs
    binding = docs[("ClusterRoleBinding", "qdrant-collection-operator")]
    deployment = docs[("Deployment", "qdrant-collection-operator")]
    pod = deployment["spec"]["template"]["spec"]
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # HA: two replicas in one kopf peering, handed over one at a time.
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["QDRANT_OPERATOR_PEERING_NAME"] == "qdrant-collection-operator"
    pdb = docs[("PodDisruptionBudget", "qdrant-collection-operator")]
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"] and pdb["spec"]["maxUnavailable"] == 1


def test_base_holds_no_object_of_a_kind_it_defines_and_the_operator_may_create_its_peering():
    """kubectl refuses an object in the same apply as the CRD of its kind ("no matches for kind"): the base
    defines kopf's peering kinds and leaves the peering object to the operator, which its role allows."""
    docs = render("manifests/base")
    crds = [d["spec"] for d in docs if d["kind"] == "CustomResourceDefinition"]
    defined = {(f"{crd['group']}/{v['name']}", crd["names"]["kind"]) for crd in crds for v in crd["versions"]}
    assert ("kopf.dev/v1", "ClusterKopfPeering") in defined
    assert not [(d["apiVersion"], d["kind"]) for d in docs if (d["apiVersion"], d["kind"]) in defined]
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    creatable = {r for rule in role["rules"] if "create" in rule["verbs"] for r in rule["resources"]}
    assert {"clusterkopfpeerings", "kopfpeerings"} <= creatable


def test_dev_overlay_adds_verbose_logging():
    deployment = next(d for d in render("manifests/overlays/dev") if d["kind"] == "Deployment")
    assert "--verbose" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_the_role_reads_secrets_by_name_only_and_never_deletes_one():
    """get by name; create and patch for CollectionAccessKeys' own Secrets; no list, watch, update or delete."""
    role = next(d for d in render("manifests/base") if d["kind"] == "ClusterRole")
    secrets = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert [r["verbs"] for r in secrets] == [["get", "create", "patch"]]


def test_network_policy_limits_egress_to_dns_api_server_and_qdrant_ports_without_link_local():
    policy = next(d for d in render("manifests/base") if d["kind"] == "NetworkPolicy")
    assert "Egress" in policy["spec"]["policyTypes"]
    ports = {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert ports == {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP"), (6333, "TCP")}
    blocks = [peer["ipBlock"] for rule in policy["spec"]["egress"] for peer in rule.get("to", [])]
    assert all(rule.get("to") for rule in policy["spec"]["egress"] if any(p["port"] != 53 for p in rule["ports"]))
    assert {"169.254.0.0/16", "fe80::/10"} <= {cidr for block in blocks for cidr in block.get("except", [])}


def test_shard_number_is_capped():
    import pydantic
    import pytest

    from collection_operator.api.collection import MAX_SHARD_NUMBER, VectorCollectionSpec

    base = collection_spec()
    VectorCollectionSpec.model_validate({**base, "shardNumber": MAX_SHARD_NUMBER})
    with pytest.raises(pydantic.ValidationError):
        VectorCollectionSpec.model_validate({**base, "shardNumber": 1024})
