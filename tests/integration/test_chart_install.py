"""The rendered chart against the real API server: a server-side dry-run apply of every object it knows
(the monitoring.coreos.com kinds need prometheus-operator's CRDs, which are not installed here; tests/unit/
test_monitoring.py checks their shape), a real `helm install`, `upgrade` and `uninstall` of its CRDs, and its
namespaced mode with a live operator acting as the chart's ServiceAccount."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from devenv import gotools
from devenv.ports import free_port
from tests.builders import collection_spec
from tests.docs_commands import shell_blocks
from tests.fixtures.operator import unique, wait_for
from tests.integration.test_ha import active_gauges
from tests.integration.test_install_path import kubeconfig_for
from tests.integration.test_operator_process import BIN, operator_env, solo  # noqa: F401 (fixture)
from tests.unit.test_chart import CHART, MONITORING, OTHER_VALUES, REPO, helm, template, template_values

pytestmark = pytest.mark.integration


def dry_run(control_plane, objects: list[dict]) -> str:
    known = [obj for obj in objects if not obj["apiVersion"].startswith("monitoring.coreos.com/")]
    out = control_plane.admin(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(known)
    )
    assert out.count("(server dry run)") == len(known), out
    return out


def test_default_chart_applies(control_plane, namespace):
    out = dry_run(control_plane, template("--include-crds", namespace=namespace))
    assert "deployment.apps/qdrant-collection-operator serverside-applied (server dry run)" in out
    assert "customresourcedefinition.apiextensions.k8s.io/vectorcollections." in out
    assert "customresourcedefinition.apiextensions.k8s.io/clusterkopfpeerings.kopf.dev serverside-applied" in out


def test_chart_with_other_values_and_monitoring_applies(control_plane, namespace, tmp_path):
    values = {**OTHER_VALUES, "namespaces": [namespace]}
    out = dry_run(control_plane, template_values(values, tmp_path, *MONITORING, namespace=namespace))
    assert "configmap/qdrant-collection-operator-settings serverside-applied (server dry run)" in out
    assert "configmap/qdrant-collection-operator-dashboard serverside-applied (server dry run)" in out


def test_helm_takes_over_the_crds_as_upgrade_md_says_upgrades_and_uninstall_keeps_them(control_plane, namespace):
    """The CRDs here were applied by kubectl (as a chart that had them in crds/ left them): `helm install` refuses
    them until docs/upgrade.md's block marks them as the release's; then install and upgrade manage them, and
    `helm uninstall` leaves them (crds.keep)."""
    release = "qco-it"
    helm = [str(gotools.build("helm")), f"--kubeconfig={control_plane.admin_kubeconfig}", "--namespace", namespace]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*helm, *args], capture_output=True, text=True, timeout=300)

    plurals = ("qdrantconnections", "vectorcollections", "collectionsnapshots", "collectionaccesskeys")
    crds = [f"{plural}.qdrant.collection-operator.dev" for plural in plurals]
    try:
        refused = run("install", release, str(CHART))
        assert refused.returncode != 0 and "invalid ownership metadata" in refused.stderr, refused.stderr
        [block] = [b for b in shell_blocks(REPO / "docs/upgrade.md") if "meta.helm.sh/release-name" in b]
        mark = block.replace("release-name=qdrant-collection-operator", f"release-name={release}")
        mark = mark.replace("release-namespace=qdrant-operator", f"release-namespace={namespace}")
        assert mark.count(f"={release} ") == 1 and mark.count(f"={namespace}\n") == 1, mark
        path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # the venv's kubectl
        env = {**os.environ, "KUBECONFIG": str(control_plane.admin_kubeconfig), "PATH": path}
        subprocess.run(["bash", "-euo", "pipefail", "-c", mark], env=env, check=True, capture_output=True, timeout=120)

        installed = run("install", release, str(CHART))
        assert installed.returncode == 0, installed.stderr
        assert "kubectl get qdrant -A" in installed.stdout  # the NOTES
        for crd in crds:
            meta = control_plane.admin.json("get", "crd", crd)["metadata"]
            assert meta["annotations"]["helm.sh/resource-policy"] == "keep"
            assert meta["annotations"]["meta.helm.sh/release-name"] == release
        upgraded = run("upgrade", release, str(CHART), "--reuse-values", "--set", "replicas=1")
        assert upgraded.returncode == 0, upgraded.stderr
        uninstalled = run("uninstall", release)
        assert uninstalled.returncode == 0, uninstalled.stderr
        assert "These resources were kept due to the resource policy" in uninstalled.stdout, uninstalled.stdout
        for crd in crds:
            assert crd in uninstalled.stdout
            control_plane.admin("get", "crd", crd)
    finally:
        run("uninstall", release)


def test_with_namespaces_listed_the_operator_may_touch_secrets_only_there(
    control_plane, namespace, unwatched_namespace
):
    """The chart's namespaced mode, applied for real and asked of the API server's authorizer (as the
    operator's ServiceAccount): Secrets, its kinds' status and KopfPeerings in the watched namespace only."""
    release = "qco-ns"
    rendered = yaml.safe_load_all(
        helm("template", release, str(CHART), "--namespace", namespace, "--set", f"namespaces={{{namespace}}}")
    )
    rbac = [
        o
        for o in rendered
        if o and o["kind"] in {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    ]
    text = yaml.safe_dump_all(rbac)
    control_plane.admin("apply", "--server-side", "-f", "-", stdin=text)
    user = f"--as=system:serviceaccount:{namespace}:{release}-qdrant-collection-operator"

    def can(*args: str) -> bool:
        # "yes" on stdout with exit 0; "no" exits 1, and then the call returns stderr
        return control_plane.admin("auth", "can-i", user, *args, check=False).strip().splitlines()[-1:] == ["yes"]

    try:
        wait_for(lambda: can("get", "secrets", "-n", namespace), 30, "the RoleBinding in force")
        for verb in ("create", "patch"):
            assert can(verb, "secrets", "-n", namespace)
        assert can("patch", "vectorcollections.qdrant.collection-operator.dev/status", "-n", namespace)
        assert can("create", "kopfpeerings.kopf.dev", "-n", namespace)
        assert can("list", "namespaces") and can("watch", "customresourcedefinitions.apiextensions.k8s.io")
        for verb in ("get", "create", "patch", "list"):
            assert not can(verb, "secrets", "-n", unwatched_namespace)
        assert not can("patch", "vectorcollections.qdrant.collection-operator.dev/status", "-n", unwatched_namespace)
        assert not can("create", "clusterkopfpeerings.kopf.dev")
    finally:
        control_plane.admin("delete", "--ignore-not-found", "-f", "-", stdin=text)


def test_the_namespaced_chart_runs_a_live_operator_with_its_own_roles(control_plane, solo, qdrant_server, tmp_path):  # noqa: F811
    """The chart's namespaced mode with a live operator: its RBAC applied, and the `run` command of its
    Deployment (args and environment as rendered) acting as its ServiceAccount, with a token from the
    TokenRequest API. It makes its KopfPeering, becomes the active replica and reconciles a connection and a
    collection in the namespace it is given, with no request refused."""
    release, namespace = "qco-live", solo.namespace
    chart = helm("template", release, str(CHART), "--namespace", namespace, "--set", f"namespaces={{{namespace}}}")
    rendered = [o for o in yaml.safe_load_all(chart) if o]
    rbac = [
        o
        for o in rendered
        if o["kind"] in {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    ]
    assert {o["kind"] for o in rbac if o["metadata"].get("namespace") == namespace} >= {"Role", "RoleBinding"}
    text = yaml.safe_dump_all(rbac)
    control_plane.admin("apply", "--server-side", "-f", "-", stdin=text)
    [deployment] = [o for o in rendered if o["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    token = control_plane.admin("create", "token", account, "-n", namespace, "--duration=1h").strip()
    kubeconfig = kubeconfig_for(control_plane.admin_kubeconfig, tmp_path / "operator.kubeconfig", token=token)
    args = [a for a in container["args"] if a not in ("--bind", "0.0.0.0")]  # loopback only here
    assert args == ["run", f"--namespace={namespace}"], container["args"]
    metrics_port = free_port()
    env = operator_env(
        **{e["name"]: e["value"] for e in container.get("env") or [] if "value" in e},
        KUBECONFIG=str(kubeconfig),
        QDRANT_OPERATOR_METRICS_PORT=str(metrics_port),
        QDRANT_OPERATOR_HEALTH_PORT=str(free_port()),
    )
    peering = env["QDRANT_OPERATOR_PEERING_NAME"]
    log = tmp_path / "operator.log"
    proc = subprocess.Popen(
        [str(BIN), *args, "--bind", "127.0.0.1"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        spec: dict = {"url": qdrant_server.url, "environment": "Testing"}
        if qdrant_server.api_key:
            solo.kubectl("create", "secret", "generic", "qdrant-key", f"--from-literal=api-key={qdrant_server.api_key}")
            spec["apiKeySecretRef"] = {"name": "qdrant-key"}
        solo.apply("QdrantConnection", "main", spec)
        solo.apply("VectorCollection", "docs", collection_spec(collectionName=unique("chartns")))
        solo.wait_condition("qdrantconnections", "main", "Connected", timeout=90)
        solo.wait_condition("vectorcollections", "docs", "InSync", timeout=90)
        assert solo.get("kopfpeerings", peering)["metadata"]["name"] == peering, "made by the operator itself"
        wait_for(lambda: active_gauges({"live": metrics_port}) == {"live": 1.0}, 60, "the replica active")
        solo.kubectl("delete", "vectorcollection", "docs")  # its finalizer removed by the operator
        out = log.read_text(errors="replace")
        assert "Forbidden" not in out and " 403" not in out, out[-3000:]
    finally:
        proc.terminate()
        proc.wait(30)
        control_plane.admin("delete", "--ignore-not-found", "-f", "-", stdin=text)
