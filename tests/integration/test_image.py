"""The image `make image` builds (devenv/image.py): its configuration and contents, `--version` through its
entrypoint with `buildah run`, and a collection reconciled by the operator running from the image as
uid 65532 on a read-only root filesystem, on the host network, against the local control plane and
the dev Qdrant.

`buildah run` (1.28, bookworm) has no read-only root option, so that run mounts the image itself:
`buildah mount`, then in a private mount namespace (`unshare --mount`) a read-only bind of that root,
proc, /dev, a tmpfs on /tmp (a Pod's emptyDir) and the kubeconfig read-only on /mnt, then
`chroot --userspec=65532:65532` into it with the image's entrypoint and environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv import image
from tests.builders import collection_spec
from tests.fixtures.operator import GROUP, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(1800),  # the first test builds the image: minutes on a cold machine
    pytest.mark.skipif(
        not (shutil.which("buildah") and shutil.which("mmdebstrap") and os.geteuid() == 0),
        reason="needs root, buildah and mmdebstrap (`make test` installs them with apt when run as root)",
    ),
]

SANDBOX = """
root=$1; config=$2; shift 2
mount --bind "$root" "$root" && mount -o remount,bind,ro "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o size=16m,mode=1777 tmpfs "$root/tmp"
mount --bind "$config" "$root/mnt" && mount -o remount,bind,ro "$root/mnt"
exec /usr/sbin/chroot --userspec=65532:65532 "$root" "$@"
"""


@pytest.fixture(scope="session")
def image_ref() -> str:
    return image.build()  # cached: seconds when only the operator changed, minutes on a cold machine


@pytest.fixture(scope="session")
def config(image_ref: str) -> dict[str, Any]:
    return json.loads(image.buildah("inspect", "--type=image", image_ref))["OCIv1"]["config"]


@pytest.fixture
def container(image_ref: str) -> Iterator[str]:
    name = image.buildah("from", image_ref)
    try:
        yield name
    finally:
        image.buildah("rm", name)


def test_image_configuration_labels_and_the_deployment_name(image_ref: str, config: dict[str, Any]):
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == [image.ENTRYPOINT]
    assert config["Cmd"] == ["run", "--all-namespaces"]
    labels = config["Labels"]
    revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=image.REPO, capture_output=True, text=True).stdout
    assert labels["org.opencontainers.image.revision"].startswith(revision.strip())
    assert labels["org.opencontainers.image.version"] == image.VERSION
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.title"] == image.NAME
    assert labels["org.opencontainers.image.source"]
    deployment = yaml.safe_load((image.REPO / "manifests/base/deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image.IMAGE
    assert image_ref == f"localhost/{image.IMAGE}"
    index = json.loads((image.OCI_LAYOUT / "index.json").read_text())
    assert image.VERSION in [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]


def test_image_holds_no_caches_docs_or_pip(container: str):
    root = Path(image.buildah("mount", container))
    try:
        assert not list((root / "var/lib/apt/lists").glob("*_Packages"))
        assert not list((root / "var/cache/apt").glob("**/*.deb"))
        docs = [p for p in (root / "usr/share/doc").rglob("*") if p.is_file() and not p.is_symlink()]
        assert {p.name for p in docs} == {"copyright"}  # dpkg's path-exclude leaves only symlinks behind
        assert not (root / "usr/share/man").exists() or not any((root / "usr/share/man").iterdir())
        assert not list((root / "opt/venv").glob("lib/python3*/site-packages/pip"))
        assert not (root / "root/.cache").exists()
        assert list((root / "opt/venv/lib").glob("python3*/site-packages/collection_operator/py.typed"))
    finally:
        image.buildah("umount", container)


def test_entrypoint_reports_the_version(container: str, config: dict[str, Any]):
    out = image.buildah(
        "run",
        "--isolation=chroot",
        "--network=host",
        "--user=65532",
        container,
        "--",
        *config["Entrypoint"],
        "--version",
    )
    assert out == f"{image.NAME} {image.VERSION}"


def test_operator_from_the_image_reconciles_as_non_root_on_a_read_only_root(
    container: str, config: dict[str, Any], control_plane: Any, qdrant_server: Any, tmp_path: Path
):
    secrets = tmp_path / "mnt"
    secrets.mkdir(mode=0o755)
    shutil.copy(control_plane.operator_kubeconfig, secrets / "kubeconfig")
    (secrets / "kubeconfig").chmod(0o644)
    env = dict(item.split("=", 1) for item in config["Env"])
    env |= {
        "HOME": "/home/nonroot",
        "KUBECONFIG": "/mnt/kubeconfig",
        "QDRANT_OPERATOR_METRICS_PORT": "0",
        "QDRANT_OPERATOR_HEALTH_PORT": "0",
    }
    root = image.buildah("mount", container)

    def sandbox(*cmd: str) -> list[str]:
        return ["unshare", "--mount", "--propagation=private", "sh", "-ec", SANDBOX, "sh", root, str(secrets), *cmd]

    namespace = f"image-{uuid.uuid4().hex[:6]}"  # not the in-process operator's namespaces
    control_plane.admin("create", "namespace", namespace)
    proc = None
    try:
        probe = subprocess.run(
            sandbox("python3", "-c", "import os; print(os.getuid()); open('/etc/probe', 'w')"),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert probe.stdout.strip() == "65532"
        assert "Read-only file system" in probe.stderr
        with (tmp_path / "operator.log").open("wb") as log:
            proc = subprocess.Popen(
                sandbox(*config["Entrypoint"], "run", "--namespace", namespace),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        collection = f"img_{uuid.uuid4().hex[:6]}"
        docs = [
            {
                "kind": "QdrantConnection",
                "metadata": {"name": "main"},
                "spec": {"url": qdrant_server.url, "environment": "Testing"},
            },
            {
                "kind": "VectorCollection",
                "metadata": {"name": "docs"},
                "spec": collection_spec(collectionName=collection),
            },
        ]
        if qdrant_server.api_key:
            control_plane.admin(
                "create",
                "secret",
                "generic",
                "qdrant-key",
                "-n",
                namespace,
                f"--from-literal=api-key={qdrant_server.api_key}",
            )
            docs[0]["spec"]["apiKeySecretRef"] = {"name": "qdrant-key"}
        for doc in docs:
            doc["apiVersion"] = f"{GROUP}/v1alpha1"
            control_plane.admin("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "operator.log").read_text()[-3000:]
            status = control_plane.admin.json("get", "vectorcollections", "docs", "-n", namespace).get("status") or {}
            return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])

        wait_for(ready, 90, "the VectorCollection Ready, reconciled by the operator in the image")
        uid = control_plane.admin.json("get", "vectorcollections", "docs", "-n", namespace)["metadata"]["uid"]
        with qdrant_server.http(timeout=10) as http:
            info = http.get(f"/collections/{collection}").json()["result"]
        assert info["config"]["metadata"]["qdrant-collection-operator.dev/owner"] == f"{namespace}/docs/{uid}"
        # Deleted while the operator runs: its finalizers go with it (deletionPolicy Retain keeps the data).
        control_plane.admin("delete", "vectorcollections,qdrantconnections", "--all", "-n", namespace, "--timeout=60s")
        with qdrant_server.http(timeout=10) as http:
            http.delete(f"/collections/{collection}")
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        control_plane.admin("delete", "namespace", namespace, "--wait=false", check=False)
        image.buildah("umount", container)
