"""manifests/ renders with kustomize (kubectl's own) and wires the pieces together."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

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
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_dev_overlay_adds_verbose_logging():
    deployment = next(d for d in render("manifests/overlays/dev") if d["kind"] == "Deployment")
    assert "--verbose" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
