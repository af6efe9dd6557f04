"""Issue 20, the install path on the real API server:

- `kubectl apply --server-side -k manifests/base` on an empty cluster ends, in that one command, with an
  operator that creates its own peering object and serves a collection; the documented uninstall then deletes
  the operator's objects and leaves kopf's peering CRDs and another operator's peering object in place.
  An empty cluster: a second kube-apiserver (and controller manager) on the session's etcd under a key prefix
  of its own, so the session's CRDs, shared by every other test, are never touched.
- an operator whose peering object is missing and that may not create it says so at WARNING (naming the object
  and the kubectl command that creates it) and in `qdrant_operator_peering_object_missing`, stays paused, and
  is active and serves as soon as that command has run.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from collection_operator.k8s.api import kopf_peering
from devenv import controlplane as cp
from devenv import processes
from devenv.ports import free_ports
from tests.builders import collection_spec
from tests.fixtures.controlplane import Kubectl
from tests.fixtures.operator import Cluster, manifest, unique, wait_for
from tests.integration.test_operator_process import operator_env

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "qdrant-collection-operator"
KOPF_CRDS = ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")
METRIC = "qdrant_operator_peering_object_missing"


@dataclass(frozen=True)
class EmptyCluster:
    admin_kubeconfig: Path
    operator_kubeconfig: Path  # the operator's identity: its rights come from the base's RBAC once applied

    @property
    def admin(self) -> Kubectl:
        return Kubectl(self.admin_kubeconfig)


def kubeconfig_for(source: Path, target: Path, server: str | None = None, token: str | None = None) -> Path:
    """A copy of a session kubeconfig pointed at another API server or carrying another token."""
    config = json.loads(source.read_text())  # devenv writes kubeconfigs as JSON
    if server is not None:
        config["clusters"][0]["cluster"]["server"] = server
    if token is not None:
        config["users"][0]["user"]["token"] = token
    target.write_text(json.dumps(config))
    target.chmod(0o600)
    return target


@pytest.fixture
def empty_cluster(control_plane, tmp_path) -> Iterator[EmptyCluster]:
    work = tmp_path / "empty-cluster"
    work.mkdir()
    bins = cp.binaries()
    api_port, kcm_port = free_ports(2)
    server = f"https://{cp.HOST}:{api_port}"
    admin = kubeconfig_for(cp.ADMIN_KUBECONFIG, work / "admin.kubeconfig", server=server)
    apiserver = processes.spawn(
        [
            str(bins["kube-apiserver"]),
            f"--etcd-servers=http://{cp.HOST}:{cp.ETCD_PORT}",
            f"--etcd-prefix=/empty-{uuid.uuid4().hex[:8]}",  # nothing of the session's cluster is visible
            f"--bind-address={cp.HOST}",
            f"--advertise-address={cp.HOST}",
            f"--secure-port={api_port}",
            f"--tls-cert-file={cp.PKI / 'apiserver.crt'}",
            f"--tls-private-key-file={cp.PKI / 'apiserver.key'}",
            f"--token-auth-file={cp.TOKENS}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={cp.PKI / 'sa.pub'}",
            f"--service-account-signing-key-file={cp.PKI / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
        ],
        work / "kube-apiserver.log",
        work / "kube-apiserver.pid",
    )
    kcm = None
    try:
        with httpx.Client(
            base_url=server,
            verify=ssl.create_default_context(cafile=str(cp.PKI / "ca.crt")),
            headers={"Authorization": f"Bearer {cp._tokens()['admin']}"},
        ) as http:

            def ready() -> bool:
                try:
                    return http.get("/readyz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    assert apiserver.poll() is None, (work / "kube-apiserver.log").read_text()[-3000:]
                    return False

            wait_for(ready, 180, "the empty cluster's kube-apiserver")
        # Namespace deletion (the uninstall) needs the namespace controller.
        kcm = processes.spawn(
            [
                str(bins["kube-controller-manager"]),
                f"--kubeconfig={admin}",
                f"--authentication-kubeconfig={admin}",
                f"--authorization-kubeconfig={admin}",
                f"--bind-address={cp.HOST}",
                f"--secure-port={kcm_port}",
                "--leader-elect=false",
                "--controllers=garbage-collector-controller,namespace-controller",
            ],
            work / "kube-controller-manager.log",
            work / "kube-controller-manager.pid",
        )
        yield EmptyCluster(admin, kubeconfig_for(cp.OPERATOR_KUBECONFIG, work / "operator.kubeconfig", server=server))
    finally:
        for proc in (kcm, apiserver):
            if proc is not None:
                processes.stop(proc.pid, 15)


class OperatorProcess:
    """`qdrant-collection-operator run` in its own process, its log in a file, /metrics on a loopback port."""

    def __init__(self, kubeconfig: Path, log: Path, scope: list[str], peering: str) -> None:
        self.log_path = log
        self.metrics_port = free_ports(1)[0]
        env = operator_env(
            KUBECONFIG=str(kubeconfig),
            QDRANT_OPERATOR_METRICS_PORT=str(self.metrics_port),
            QDRANT_OPERATOR_HEALTH_PORT="0",
            QDRANT_OPERATOR_PEERING_NAME=peering,
        )
        self._log = log.open("wb")
        self.proc = subprocess.Popen([str(BIN), "run", *scope], env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def missing(self, kind: str, namespace: str, name: str) -> float | None:
        """The peering-missing gauge of one object, None before it has a value."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        wanted = {"kind": kind, "namespace": namespace, "name": name}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == METRIC and sample.labels == wanted:
                    return sample.value
        return None

    def stop(self) -> None:
        processes.stop(self.proc.pid, 30)  # SIGTERM, SIGKILL after 30 s
        self._log.close()


def jsonpath(kubectl: Kubectl, *args: str) -> str:
    return kubectl(*args, check=False).strip()


def admin_shell(kubeconfig: Path) -> dict[str, str]:
    """The environment of an administrator's shell: the pinned kubectl first on PATH."""
    return {**os.environ, "KUBECONFIG": str(kubeconfig), "PATH": f"{BIN.parent}:{os.environ['PATH']}"}


def peering_warnings(log: str) -> list[str]:
    return [line for line in log.splitlines() if "[WARNING " in line and "peering" in line]


def documented_uninstall() -> list[str]:
    """The commands of docs/uninstall.md's "Remove the operator" block, as a reader would paste them."""
    text = (REPO / "docs/uninstall.md").read_text()
    section = text.split("## 3. Remove the operator", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


@pytest.mark.parametrize("apply", [["--server-side"], []], ids=["server-side", "client-side"])
def test_the_base_installs_in_one_command_and_uninstalls_leaving_kopfs_crds(
    empty_cluster: EmptyCluster, qdrant_server_factory, tmp_path, apply
):
    admin = empty_cluster.admin
    out = admin("apply", *apply, "-k", str(REPO / "manifests/base"))  # one command, nothing before it
    assert "customresourcedefinition.apiextensions.k8s.io/clusterkopfpeerings.kopf.dev" in out, out
    admin("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{crd}" for crd in KOPF_CRDS))
    base = yaml.safe_load_all(admin("kustomize", str(REPO / "manifests/base")))
    deployment = next(doc for doc in base if doc and doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    peering = next(e["value"] for e in container["env"] if e["name"] == "QDRANT_OPERATOR_PEERING_NAME")
    assert jsonpath(admin, "get", "clusterkopfpeering", peering, "-o", "name").startswith(
        "Error from server (NotFound)"
    )

    # The Deployment's replica, as its identity (the base's RBAC) and with its arguments; no kubelet runs here.
    qdrant = qdrant_server_factory()
    op = OperatorProcess(empty_cluster.operator_kubeconfig, tmp_path / "operator.log", ["--all-namespaces"], peering)
    try:
        wait_for(lambda: f"created ClusterKopfPeering {peering}" in op.log(), 60, "the operator to create its peering")
        assert (
            admin("get", "clusterkopfpeering", peering, "-o", "name").strip()
            == f"clusterkopfpeering.kopf.dev/{peering}"
        )
        wait_for(lambda: op.missing("ClusterKopfPeering", "", peering) == 0, 30, "the gauge at 0")
        assert not peering_warnings(op.log())
        admin("create", "namespace", "apps")
        connection = manifest("QdrantConnection", "main", {"url": qdrant.url, "environment": "Testing"})
        collection = manifest("VectorCollection", "docs", collection_spec(collectionName=unique("install")))
        admin("apply", "-n", "apps", "-f", "-", stdin=yaml.safe_dump_all([connection, collection]))
        wait_for(lambda: ready_reason(admin, "apps", "docs") == "InSync", 90, "the collection InSync")

        # Uninstall as documented: resources first, while the operator runs (docs/uninstall.md step 2).
        admin("delete", "-n", "apps", "vectorcollections,qdrantconnections", "--all", "--timeout=60s")
    finally:
        op.stop()
    admin("create", "-f", "-", stdin=json.dumps(kopf_peering(None, "another-kopf-operator")))
    commands = documented_uninstall()
    assert any("-k manifests/base" in c for c in commands), commands
    env = admin_shell(empty_cluster.admin_kubeconfig)
    for command in commands:
        proc = subprocess.run(command, shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)

    assert admin("get", "crd", *KOPF_CRDS, "-o", "name").split() == [
        f"customresourcedefinition.apiextensions.k8s.io/{c}" for c in KOPF_CRDS
    ]
    assert admin("get", "clusterkopfpeerings", "-o", "name").split() == [
        "clusterkopfpeering.kopf.dev/another-kopf-operator"
    ]
    for kind, name in [
        ("crd", "vectorcollections.qdrant.collection-operator.dev"),
        ("namespace", "qdrant-operator"),
        ("clusterrole", "qdrant-collection-operator"),
        ("clusterrolebinding", "qdrant-collection-operator"),
        ("clusterrole", "qdrant-collection-operator:approver"),
        ("validatingadmissionpolicy", "qdrant-collection-operator-approve-plan"),
        ("validatingadmissionpolicybinding", "qdrant-collection-operator-approve-plan"),
    ]:
        assert "NotFound" in jsonpath(admin, "get", kind, name), (kind, name)


def ready_reason(kubectl: Kubectl, namespace: str, name: str) -> str:
    path = '{.status.conditions[?(@.type=="Ready")].reason}'
    return jsonpath(kubectl, "get", "vectorcollection", name, "-n", namespace, "-o", f"jsonpath={path}")


@pytest.fixture
def no_create_identity(control_plane, tmp_path) -> Iterator[tuple[str, Path]]:
    """A namespace and a kubeconfig for a ServiceAccount in it bound to the shipped ClusterRole without its
    `create` on kopf's peerings: what an operator installed with an older or trimmed role has."""
    namespace = unique("peer")
    control_plane.admin("create", "namespace", namespace)
    control_plane.admin("create", "serviceaccount", "operator", "-n", namespace)
    role = next(
        doc
        for doc in yaml.safe_load_all((REPO / "manifests/base/rbac.yaml").read_text())
        if doc and doc["kind"] == "ClusterRole"
    )
    for rule in role["rules"]:
        rule["verbs"] = [verb for verb in rule["verbs"] if not (verb == "create" and "kopf.dev" in rule["apiGroups"])]
    role["metadata"] = {"name": f"{namespace}-no-peering-create"}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": role["metadata"]["name"]},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": namespace}],
    }
    control_plane.admin("apply", "-f", "-", stdin=yaml.safe_dump_all([role, binding]))
    try:
        token = control_plane.admin("create", "token", "operator", "-n", namespace, "--duration=1h").strip()
        kubeconfig = kubeconfig_for(cp.OPERATOR_KUBECONFIG, tmp_path / "no-create.kubeconfig", token=token)
        yield namespace, kubeconfig
    finally:
        control_plane.admin("delete", "clusterrolebinding,clusterrole", role["metadata"]["name"], check=False)
        control_plane.admin("delete", "namespace", namespace, "--wait=false", check=False)


def test_a_missing_peering_it_may_not_create_is_a_warning_and_a_metric_until_created(
    control_plane, no_create_identity, qdrant_server_factory, tmp_path
):
    namespace, kubeconfig = no_create_identity
    qdrant = qdrant_server_factory()
    cluster = Cluster(control_plane, namespace)
    op = OperatorProcess(kubeconfig, tmp_path / "operator.log", ["-n", namespace], "paused-peering")
    try:
        warning = wait_for(lambda: peering_warnings(op.log()), 60, "the WARNING about the missing peering")[0]
        assert f"KopfPeering paused-peering in namespace {namespace} does not exist" in warning, warning
        assert "may not create it" in warning and "403" in warning, warning
        wait_for(lambda: op.missing("KopfPeering", namespace, "paused-peering") == 1, 30, "the gauge at 1")
        cluster.apply("QdrantConnection", "main", {"url": qdrant.url, "environment": "Testing"})
        cluster.apply("VectorCollection", "docs", collection_spec(collectionName=unique("paused")))

        # The command the warning names, pasted into a shell by an administrator.
        command = warning.split("create it: ", 1)[1].strip()
        proc = subprocess.run(
            command,
            shell=True,
            env=admin_shell(control_plane.admin_kubeconfig),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, (command, proc.stderr)

        cluster.wait_condition("vectorcollections", "docs", "InSync", timeout=90)
        wait_for(lambda: op.missing("KopfPeering", namespace, "paused-peering") == 0, 30, "the gauge back at 0")
        assert f"peering object KopfPeering paused-peering in namespace {namespace} exists" in op.log()
        assert "Resuming operations" in op.log()
    finally:
        op.stop()


def test_with_the_shipped_role_the_operator_creates_its_kopfpeering(control_plane, qdrant_server_factory, tmp_path):
    namespace = unique("peer")
    control_plane.admin("create", "namespace", namespace)
    cluster = Cluster(control_plane, namespace)
    op = OperatorProcess(control_plane.operator_kubeconfig, tmp_path / "operator.log", ["-n", namespace], "made")
    try:
        wait_for(lambda: f"created KopfPeering made in namespace {namespace}" in op.log(), 60, "the KopfPeering made")
        assert cluster.get("kopfpeerings", "made")["kind"] == "KopfPeering"
        cluster.apply("QdrantConnection", "main", {"url": qdrant_server_factory().url, "environment": "Testing"})
        cluster.apply("VectorCollection", "docs", collection_spec(collectionName=unique("made")))
        cluster.wait_condition("vectorcollections", "docs", "InSync", timeout=90)
        assert op.missing("KopfPeering", namespace, "made") == 0
        assert not peering_warnings(op.log())
    finally:
        op.stop()
        control_plane.admin("delete", "namespace", namespace, "--wait=false", check=False)
