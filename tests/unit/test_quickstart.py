"""docs/quickstart.md as a test on a real node runs it: its ```sh blocks, the files they apply and the YAML they
send inline, checked here without a cluster."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from collection_operator.api import API_VERSION, KINDS
from tests.docs_commands import heredocs, shell_blocks

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "docs" / "quickstart.md"
SPECS = {k.kind: k.spec for k in KINDS}
BUILTIN_KINDS = {("v1", "Namespace"), ("v1", "Secret"), ("v1", "Service"), ("apps/v1", "StatefulSet")}


def test_shell_blocks_in_order_with_continuations_and_heredocs(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n```sh\nmake demo\nhelm install a b \\\n  --wait\n```\n\n"
        "```yaml\nkind: NotShell\n```\n\n"
        "1. A step:\n\n   ```sh\n   kubectl get pods\n   ```\n\n"
        "```sh\nkubectl apply -f - <<'EOF'\nkind: Namespace\n```not a fence\nEOF\nkubectl get ns\n```\n"
    )
    blocks = shell_blocks(page)
    assert blocks == [
        "make demo\nhelm install a b \\\n  --wait\n",
        "kubectl get pods\n",
        "kubectl apply -f - <<'EOF'\nkind: Namespace\n```not a fence\nEOF\nkubectl get ns\n",
    ]
    assert heredocs(blocks[2]) == ["kind: Namespace\n```not a fence\n"]
    assert heredocs(blocks[0]) == []


def quickstart_commands() -> list[list[str]]:
    """Every command line of the quickstart (continuations joined, heredoc bodies left out), split as sh would."""
    commands = []
    for block in shell_blocks(QUICKSTART):
        for body in heredocs(block):
            block = block.replace(body, "", 1)
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and line.strip() != "EOF":
                commands.append(shlex.split(line, comments=True))
    return commands


def applied_documents() -> list[dict]:
    """What the quickstart applies: the files named by `kubectl apply -f FILE` and the inline heredocs."""
    docs: list[dict] = []
    for command in quickstart_commands():
        if command[:1] == ["kubectl"] and "apply" in command:
            files = [command[i + 1] for i, arg in enumerate(command) if arg == "-f" and command[i + 1] != "-"]
            for name in files:
                assert (REPO / name).is_file(), f"the quickstart applies {name}, which does not exist"
                docs += [d for d in yaml.safe_load_all((REPO / name).read_text()) if d]
    for block in shell_blocks(QUICKSTART):
        for body in heredocs(block):
            docs += [d for d in yaml.safe_load_all(body) if d]
    return docs


def test_the_quickstart_installs_the_chart_and_waits_for_each_step():
    commands = [" ".join(c) for c in quickstart_commands()]
    install = next(c for c in commands if c.startswith("helm install"))
    assert install.startswith("helm install qdrant-collection-operator charts/qdrant-collection-operator ")
    assert "--wait" in install
    # Its namespace exists first, with the restricted Pod Security level enforced.
    labelled = "kubectl label namespace qdrant-operator pod-security.kubernetes.io/enforce=restricted"
    assert commands.index("kubectl create namespace qdrant-operator") < commands.index(labelled)
    assert commands.index(labelled) < commands.index(install)
    assert (REPO / "charts/qdrant-collection-operator/Chart.yaml").is_file()
    waits = [c for c in commands if c.startswith("kubectl -n search wait --for=condition=Ready")]
    assert [w.split()[5] for w in waits] == ["qdrantconnection/main", "vectorcollection/docs"]
    assert "kubectl -n qdrant rollout status statefulset/qdrant --timeout=180s" in commands
    assert commands.index("kubectl create namespace search") < commands.index(waits[0])
    # Clean-up last: the resources while the operator runs, then the operator.
    assert commands.index("kubectl delete namespace search --timeout=120s") < next(
        i for i, c in enumerate(commands) if c.startswith("helm uninstall")
    )


def test_every_applied_document_parses_and_has_a_known_kind():
    docs = applied_documents()
    crd_kinds = {(API_VERSION, kind) for kind in SPECS}
    assert {(d["apiVersion"], d["kind"]) for d in docs} <= crd_kinds | BUILTIN_KINDS
    for doc in docs:
        if doc["kind"] in SPECS:
            SPECS[doc["kind"]].model_validate(doc["spec"])
    assert [d["kind"] for d in docs if d["kind"] in SPECS] == ["QdrantConnection", "VectorCollection"]


def test_the_connection_reaches_the_quickstart_qdrant_with_its_key():
    docs = applied_documents()
    by_kind = {d["kind"]: d for d in docs}
    service, secret, qdrant = by_kind["Service"], by_kind["Secret"], by_kind["StatefulSet"]
    connection, collection = by_kind["QdrantConnection"], by_kind["VectorCollection"]
    port = service["spec"]["ports"][0]["port"]
    assert (
        connection["spec"]["url"]
        == f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc:{port}"
    )
    assert collection["spec"]["connectionRef"]["name"] == connection["metadata"]["name"]
    # The key the connection reads is a copy of the one Qdrant serves with, made by the quickstart itself.
    ref = connection["spec"]["apiKeySecretRef"]
    key = ref.get("key", "api-key")
    assert key in secret["stringData"]
    copy = f"kubectl -n search create secret generic {ref['name']} --from-file={key}=/dev/stdin"
    assert copy in " ".join(" ".join(c) for c in quickstart_commands())
    container = qdrant["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["QDRANT__SERVICE__API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": key,
    }
    assert container["image"] == "qdrant/qdrant:v1.19.0" and container["imagePullPolicy"] == "IfNotPresent"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}


def test_the_quickstart_qdrant_fits_the_restricted_pod_security_level():
    docs = applied_documents()
    namespace = next(d for d in docs if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = next(d for d in docs if d["kind"] == "StatefulSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
    assert all(set(volume) == {"name", "emptyDir"} for volume in pod["volumes"])  # no PVC, no hostPath
    mounts = {m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
    assert "/qdrant/storage" in mounts


def test_no_example_a_user_applies_in_cluster_targets_loopback():
    """127.0.0.1 in a Pod is the Pod itself: only an example that says it is for the local process environment
    may name it."""
    for path in sorted((REPO / "examples").rglob("*.yaml")):
        text = path.read_text()
        if re.search(r"127\.0\.0\.1|localhost", text):
            assert "local process environment" in text, f"{path.name} targets loopback without saying it is local"
