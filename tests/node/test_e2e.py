"""End to end on a real node: the operator installed by its Helm chart and running as Pods, Qdrant as a
StatefulSet reached by Service DNS, everything as a user does it. The tests run in order and build on each
other: the quickstart installs what the later tests use, and its clean-up runs last."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path

from tests.docs_commands import shell_blocks
from tests.fixtures.operator import wait_for
from tests.node.conftest import AUDIT_LOG, CONTAINERD, REPO, Node

QUICKSTART = REPO / "docs" / "quickstart.md"
OPERATOR_NS = "qdrant-operator"
RELEASE = "qdrant-collection-operator"
SERVICE_ACCOUNT = f"system:serviceaccount:{OPERATOR_NS}:{RELEASE}"
GROUP = "qdrant.collection-operator.dev"


def quickstart() -> tuple[list[str], str]:
    """The quickstart's blocks: those that set up, and the clean-up (its last block)."""
    blocks = shell_blocks(QUICKSTART)
    assert len(blocks) >= 5, "docs/quickstart.md lost a step"
    return blocks[:-1], blocks[-1]


def qdrant_get(port: int, path: str, api_key: str | None = None) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"api-key": api_key} if api_key else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def qdrant_put(port: int, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def api_key(node: Node, namespace: str = "qdrant") -> str:
    import base64

    data = node.json("-n", namespace, "get", "secret", "qdrant-api-key")["data"]["api-key"]
    return base64.b64decode(data).decode()


def test_quickstart_followed_literally(node: Node):
    setup, _ = quickstart()
    for block in setup:
        node.sh(block, timeout=400)
    assert node.condition("vectorcollection", "docs", "search")["status"] == "True"
    with node.port_forward("qdrant", "svc/qdrant", 6333) as port:
        info = qdrant_get(port, "/collections/docs", api_key(node))["result"]
    assert info["config"]["params"]["vectors"]["text"]["size"] == 384
    assert info["config"]["params"]["vectors"]["text"]["distance"] == "Cosine"


def test_operator_runs_as_deployed(node: Node):
    deployment = node.json("-n", OPERATOR_NS, "get", "deployment", RELEASE)
    assert deployment["status"].get("readyReplicas") == 2
    labels = node.json("get", "namespace", OPERATOR_NS)["metadata"]["labels"]
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted"
    pods = node.json("-n", OPERATOR_NS, "get", "pods", "-l", f"app.kubernetes.io/name={RELEASE}")["items"]
    assert len(pods) == 2
    for pod in pods:
        name = pod["metadata"]["name"]
        # The root filesystem is read-only for real, not only in the spec.
        refused = node.kubectl(
            "-n",
            OPERATOR_NS,
            "exec",
            name,
            "--",
            "python3",
            "-c",
            "import sys\ntry:\n    open('/probe', 'w')\nexcept OSError as e:\n    print(e.strerror)",
        )
        assert "Read-only file system" in refused
        projected = [v for v in pod["spec"]["volumes"] if "projected" in v]
        assert any("serviceAccountToken" in s for v in projected for s in v["projected"]["sources"])

    # It logs in with its projected (Pod-bound) token: the audit log names the Pod the token is bound to.
    def bound_logins() -> set[str]:
        names = set()
        for line in AUDIT_LOG.read_text().splitlines():
            event = json.loads(line)
            if event["user"].get("username") == SERVICE_ACCOUNT:
                names.update(event["user"].get("extra", {}).get("authentication.kubernetes.io/pod-name", []))
        return names

    assert wait_for(
        lambda: bound_logins() & {p["metadata"]["name"] for p in pods}, 60, "a write with a bound token", interval=1
    )

    # The kubelet probes both containers: its prober counts successful liveness and readiness probes.
    def probed() -> bool:
        metrics = node.kubectl("get", "--raw", "/api/v1/nodes/qco-node/proxy/metrics/probes")
        for pod in pods:
            for probe in ("Liveness", "Readiness"):
                wanted = (f'pod="{pod["metadata"]["name"]}"', f'probe_type="{probe}"', 'result="successful"')
                if not any(all(w in line for w in wanted) for line in metrics.splitlines()):
                    return False
        return True

    wait_for(probed, 90, "liveness and readiness probes counted by the kubelet", interval=5)

    # The kubectl plugin finds the active replica through the peering object and reads its log from the kubelet,
    # and shows the quickstart's tree.
    peers = node.json("get", "clusterkopfpeering", RELEASE)["status"]
    active = max(peers, key=lambda identity: peers[identity]["priority"]).split("@", 1)[1].split("/", 1)[0]
    logged = node.sh("kubectl qdrant logs --tail 20")
    assert logged.strip(), "no log lines from the active replica"
    assert logged.strip().splitlines()[-1] in node.kubectl("-n", OPERATOR_NS, "logs", active)  # the active one's
    tree = node.sh("kubectl qdrant status -n search")
    assert "main" in tree and "docs" in tree, tree

    # The chart's `helm test` Pod (the operator's image, admitted by the namespace's `restricted` level) asks the
    # metrics Service for the operator's metrics.
    tested = node.sh(f"helm test {RELEASE} --namespace {OPERATOR_NS} --timeout 2m", timeout=180)
    assert "Phase:          Succeeded" in tested, tested


def qdrant_writes(port: int, key: str | None = None) -> dict[str, int]:
    """Every write Qdrant has answered since it started, by call ('PATCH /collections/{collection_name}'): its
    own telemetry, which counts each REST request it served."""
    calls = qdrant_get(port, "/telemetry?details_level=2", key)["result"]["requests"]["rest"]["responses"]
    return {
        call: sum(status["count"] for status in statuses.values())
        for call, statuses in calls.items()
        if not call.startswith("GET ")
    }


def connection(namespace: str, url: str, secret: bool = True) -> str:
    key = "\n  apiKeySecretRef: {name: qdrant-api-key}" if secret else ""
    return f"""apiVersion: {GROUP}/v1alpha1
kind: QdrantConnection
metadata: {{name: main, namespace: {namespace}}}
spec:
  url: {url}{key}
  environment: Testing
"""


def collections(namespace: str, names: list[str]) -> str:
    return "".join(
        f"""---
apiVersion: {GROUP}/v1alpha1
kind: VectorCollection
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  connectionRef: {{name: main}}
  vectors: [{{name: v, size: 4, distance: Dot}}]
"""
        for name in names
    )


def settled(node: Node, namespace: str, names: list[str]) -> bool:
    """Every one Ready for its current generation."""
    items = {i["metadata"]["name"]: i for i in node.json("-n", namespace, "get", "vectorcollections")["items"]}
    for name in names:
        item = items.get(name)
        if item is None:
            return False
        ready = next((c for c in item.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})
        if ready.get("status") != "True" or item["status"].get("observedGeneration") != item["metadata"]["generation"]:
            return False
    return True


def test_standby_serves_when_the_active_pod_is_deleted(node: Node):
    peers = node.json("get", "clusterkopfpeering", RELEASE)["status"]
    assert len(peers) == 2, peers
    active = max(peers, key=lambda identity: peers[identity]["priority"])  # kopf: the highest priority runs
    pod, lifetime = active.split("@", 1)[1].split("/", 1)[0], peers[active]["lifetime"]
    node.kubectl("-n", OPERATOR_NS, "delete", "pod", pod, "--wait=false")
    deleted = time.monotonic()
    node.apply(collections("search", ["after-failover"]).replace("size: 4", "size: 8"))
    wait_for(
        lambda: settled(node, "search", ["after-failover"]),
        3 * lifetime,
        "the standby serving a new collection",
        interval=1,
    )
    took = time.monotonic() - deleted
    print(f"active Pod deleted -> new collection Ready: {took:.1f}s (peering lifetime {lifetime}s)")
    assert took < lifetime, f"the new collection took {took:.1f}s, longer than the peering lifetime ({lifetime}s)"


def test_helm_upgrade_while_50_collections_change(node: Node):
    names = [f"c-{i:02}" for i in range(50)]
    node.kubectl("create", "namespace", "fleet")
    node.sh(
        "kubectl -n qdrant get secret qdrant-api-key -o jsonpath='{.data.api-key}' | base64 -d | "
        "kubectl -n fleet create secret generic qdrant-api-key --from-file=api-key=/dev/stdin"
    )
    node.apply(connection("fleet", "http://qdrant.qdrant.svc:6333") + collections("fleet", names))
    wait_for(lambda: settled(node, "fleet", names), 300, "50 collections Ready", interval=3)
    # The next release's image: the same build under a new tag, as a registry would serve it.
    image = "docker.io/library/qdrant-collection-operator"
    node.sh(f"ctr --address {CONTAINERD} -n k8s.io images tag --force {image}:0.1.0 {image}:0.1.0-next")
    key = api_key(node)
    with node.port_forward("qdrant", "svc/qdrant", 6333) as port:
        before = qdrant_writes(port, key)

        def change_all() -> None:
            for name in names:
                node.kubectl(
                    "-n", "fleet", "patch", "vectorcollection", name, "--type=merge", "-p", '{"spec":{"hnsw":{"m":32}}}'
                )

        changes = threading.Thread(target=change_all)
        changes.start()
        # docs/upgrade.md: `helm upgrade` upgrades the CRDs too (templates of the chart), before the Deployment.
        node.sh(
            f"helm upgrade {RELEASE} charts/qdrant-collection-operator --namespace {OPERATOR_NS} --reuse-values "
            "--set image.tag=0.1.0-next --wait --timeout 5m",
            timeout=400,
        )
        changes.join()
        released = node.json("get", "crd", "-l", "app.kubernetes.io/managed-by=Helm")["items"]  # the operator's 4
        assert sorted(c["metadata"]["annotations"]["helm.sh/resource-policy"] for c in released) == ["keep"] * 4
        node.sh(block_with("upgrade.md", "kubectl get qdrant -A"), timeout=300)  # its checks, as written
        wait_for(lambda: settled(node, "fleet", names), 300, "50 changed collections Ready", interval=3)
        for name in names:
            assert qdrant_get(port, f"/collections/{name}", key)["result"]["config"]["hnsw_config"]["m"] == 32
        after = qdrant_writes(port, key)

    def images() -> set[str]:  # the old release's Pods may still be terminating a moment after `--wait`
        return {
            c["image"] for p in node.json("-n", OPERATOR_NS, "get", "pods")["items"] for c in p["spec"]["containers"]
        }

    wait_for(
        lambda: images() == {"qdrant-collection-operator:0.1.0-next"}, 60, "only the new release's Pods", interval=1
    )
    done = {call: after.get(call, 0) - before.get(call, 0) for call in after}
    assert done.get("PATCH /collections/{collection_name}") == 50, done  # each change once, none twice
    assert done.get("PUT /collections/{collection_name}", 0) == 0, done  # nothing created again


DURABLE_QDRANT = """apiVersion: v1
kind: Namespace
metadata:
  name: qdrant-durable
  labels: {pod-security.kubernetes.io/enforce: restricted}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: qdrant-durable-0}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: node-local
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: PV_PATH, type: Directory}
---
apiVersion: v1
kind: Service
metadata: {name: qdrant, namespace: qdrant-durable}
spec:
  selector: {app: qdrant}
  ports: [{name: http, port: 6333}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: qdrant, namespace: qdrant-durable}
spec:
  serviceName: qdrant
  replicas: 1
  selector: {matchLabels: {app: qdrant}}
  template:
    metadata: {labels: {app: qdrant}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 1000, fsGroup: 1000, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: qdrant
          image: qdrant/qdrant:v1.19.0
          ports: [{name: http, containerPort: 6333}]
          # Loading collections takes a while: readiness starts late, as with real data.
          readinessProbe: {httpGet: {path: /readyz, port: 6333}, initialDelaySeconds: 10, periodSeconds: 2}
          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
          volumeMounts: [{name: storage, mountPath: /qdrant/storage}]
  volumeClaimTemplates:
    - metadata: {name: storage}
      spec:
        storageClassName: node-local
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 1Gi}}
"""


def test_qdrant_pod_deleted_mid_work(node: Node, tmp_path):
    # A Qdrant whose data outlives its Pod, on a PersistentVolume: what production runs.
    volume = Path("/var/lib/qco-node/pv/qdrant-durable-0")
    volume.mkdir(parents=True, exist_ok=True)
    os.chown(volume, 1000, 1000)
    names = [f"d-{i}" for i in range(5)]
    try:
        node.apply(DURABLE_QDRANT.replace("PV_PATH", str(volume)))
        node.sh("kubectl -n qdrant-durable rollout status statefulset/qdrant --timeout=180s", timeout=200)
        node.kubectl("create", "namespace", "durable-apps")
        node.apply(connection("durable-apps", "http://qdrant.qdrant-durable.svc:6333", secret=False))
        node.apply(collections("durable-apps", names))
        wait_for(lambda: settled(node, "durable-apps", names), 180, "5 collections Ready", interval=1)
        with node.port_forward("qdrant-durable", "svc/qdrant", 6333) as port:
            for name in names:  # a point in each: the data that must survive
                qdrant_put(
                    port,
                    f"/collections/{name}/points?wait=true",
                    {"points": [{"id": 1, "vector": {"v": [1, 0, 0, 0]}}]},
                )

        seen: set[str] = set()
        stop = threading.Event()

        def record() -> None:
            while not stop.is_set():
                for item in node.json("-n", "durable-apps", "get", "vectorcollections")["items"]:
                    seen.update(
                        c["reason"] for c in item.get("status", {}).get("conditions", []) if c["type"] == "Ready"
                    )
                time.sleep(0.5)

        recorder = threading.Thread(target=record)
        recorder.start()
        try:
            old = node.json("-n", "qdrant-durable", "get", "pod", "qdrant-0")["metadata"]["uid"]
            node.kubectl("-n", "qdrant-durable", "delete", "pod", "qdrant-0", "--wait=false")

            def replaced_not_ready() -> bool:  # the old Qdrant gone, its successor starting
                pod = node.json("-n", "qdrant-durable", "get", "pods")["items"]
                return (
                    bool(pod)
                    and pod[0]["metadata"]["uid"] != old
                    and not any(
                        c["type"] == "Ready" and c["status"] == "True"
                        for c in pod[0].get("status", {}).get("conditions", [])
                    )
                )

            wait_for(replaced_not_ready, 60, "a new Qdrant Pod, not yet Ready", interval=0.2)
            for name in names:  # work arrives while Qdrant is gone
                node.kubectl(
                    "-n",
                    "durable-apps",
                    "patch",
                    "vectorcollection",
                    name,
                    "--type=merge",
                    "-p",
                    '{"spec":{"hnsw":{"m":48}}}',
                )
            wait_for(
                lambda: settled(node, "durable-apps", names), 180, "the changes applied once Qdrant is back", interval=1
            )
        finally:
            stop.set()
            recorder.join()
        assert "ConnectionNotReady" in seen, seen
        with node.port_forward("qdrant-durable", "svc/qdrant", 6333) as port:
            for name in names:
                assert qdrant_get(port, f"/collections/{name}")["result"]["config"]["hnsw_config"]["m"] == 48
                assert qdrant_get(port, f"/collections/{name}")["result"]["points_count"] == 1
            writes = qdrant_writes(port)  # since the new Pod started
        # A change the old Pod took on a kept-alive connection while it shut down is not made again, and nothing
        # is created again over the data that survived.
        assert writes.get("PATCH /collections/{collection_name}", 0) <= len(names), writes
        assert writes.get("PUT /collections/{collection_name}", 0) == 0, writes
    finally:
        node.kubectl(
            "delete", "namespace", "durable-apps", "qdrant-durable", "--ignore-not-found", "--timeout=120s", check=False
        )
        node.kubectl("delete", "pv", "qdrant-durable-0", "--ignore-not-found", check=False)
        shutil.rmtree(volume, ignore_errors=True)


def test_quickstart_clean_up(node: Node):
    node.kubectl("delete", "namespace", "fleet", "--ignore-not-found", "--timeout=120s")
    _, clean_up = quickstart()
    node.sh(clean_up, timeout=400)
    assert node.kubectl("get", "namespaces", "-o", "name").count("namespace/search") == 0
    assert GROUP not in node.kubectl("get", "crd", "-o", "name")
    assert node.sh("helm list --all-namespaces --short").strip() == ""


def block_with(doc: str, command: str) -> str:
    """The one ```sh block of docs/<doc> that holds command."""
    found = [b for b in shell_blocks(REPO / "docs" / doc) if command in b]
    assert len(found) == 1, f"docs/{doc}: {len(found)} blocks with {command!r}"
    return found[0]


def test_kustomize_install_and_uninstall_as_documented(node: Node):
    node.sh(block_with("install.md", "kubectl apply --server-side -k manifests/base"), timeout=300)
    # No peering object was applied: the operator made its own, and its replicas meet there.
    wait_for(
        lambda: len(node.json("get", "clusterkopfpeering", RELEASE).get("status") or {}) == 2,
        60,
        "both replicas in the peering",
        interval=1,
    )
    node.sh(block_with("quickstart.md", "examples/quickstart/qdrant.yaml"), timeout=300)
    node.kubectl("create", "namespace", "kz")
    node.sh(
        "kubectl -n qdrant get secret qdrant-api-key -o jsonpath='{.data.api-key}' | base64 -d | "
        "kubectl -n kz create secret generic qdrant-api-key --from-file=api-key=/dev/stdin"
    )
    node.apply(connection("kz", "http://qdrant.qdrant.svc:6333") + collections("kz", ["k-0"]))
    wait_for(lambda: settled(node, "kz", ["k-0"]), 120, "a collection through the kustomize install", interval=1)

    listed = node.sh(block_with("uninstall.md", "kubectl get vc,vsnap -A"))
    assert "kz" in listed and "k-0" in listed  # what would be deleted, and with which policy
    node.sh(block_with("uninstall.md", "kubectl delete vectorcollections --all -A"), timeout=300)
    node.sh(block_with("uninstall.md", "kubectl delete -k manifests/base"), timeout=300)
    crds = node.kubectl("get", "crd", "-o", "name")
    assert "clusterkopfpeerings.kopf.dev" in crds and "kopfpeerings.kopf.dev" in crds  # shared: kept
    assert GROUP not in crds
    wait_for(
        lambda: "qdrant-operator" not in node.kubectl("get", "namespaces", "-o", "name"),
        120,
        "the operator's namespace gone",
        interval=1,
    )
    node.kubectl("delete", "namespace", "kz", "qdrant", "--timeout=120s")
