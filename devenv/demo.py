"""`make demo`: the whole local environment, with the operator reconciling the examples.

The real control plane, the dev Qdrant server on Qdrant's engine, the CRDs and the operator's RBAC,
then the operator itself (as its own service-account identity, in the background) and the examples.
Everything keeps running afterwards for you to explore; `make down` stops it all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from collection_operator.api import GROUP, KINDS
from devenv import controlplane as cp
from devenv import ports, processes
from devenv.qdrant_dev import __main__ as qdrant_dev

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KUBECTL = [str(BIN / "kubectl"), f"--kubeconfig={cp.ADMIN_KUBECONFIG}"]
NAMESPACE = "demo"
EXAMPLE_QDRANT = "http://127.0.0.1:6333"  # what the examples and docs show
DEFAULT_PORTS = {"qdrant": 6333, "metrics": 18080, "health": 18081}
PORTS_FILE = cp.STATE / "demo-ports.json"
OPERATOR_PID = cp.STATE / "operator.pid"
OPERATOR_LOG = cp.STATE / "operator.log"
EXAMPLES = [
    "qdrantconnection-minimal.yaml",
    "vectorcollection-minimal.yaml",
    "vectorcollection-complete.yaml",
    "vectorcollection-embeddings-preset.yaml",
]


def demo_ports() -> dict[str, int]:
    """The ports the docs show when all are free; if another process holds one (another checkout's demo, a test
    run), free ones instead. Remembered while this demo's Qdrant runs, so `make demo` again finds it."""
    if PORTS_FILE.exists() and processes.running(qdrant_dev.PID_FILE) is not None:
        return dict(json.loads(PORTS_FILE.read_text()))
    stop_operator()  # its own metrics and health ports count as free
    chosen = DEFAULT_PORTS
    if not all(ports.bindable(port) for port in DEFAULT_PORTS.values()):
        chosen = dict(zip(DEFAULT_PORTS, ports.free_ports(len(DEFAULT_PORTS)), strict=True))
        print(f"ports {', '.join(map(str, DEFAULT_PORTS.values()))} are not all free: using {chosen}", flush=True)
    cp.STATE.mkdir(parents=True, exist_ok=True)
    PORTS_FILE.write_text(json.dumps(chosen))
    return chosen


def kubectl(*args: str, show: bool = True, stdin: str | None = None) -> str:
    if show:
        print(f"$ kubectl {' '.join(args)}", flush=True)
    out = subprocess.run([*KUBECTL, *args], check=True, capture_output=True, text=True, input=stdin).stdout
    if show:
        print(out, end="", flush=True)
    return out


def start_operator(metrics: int, health: int) -> None:
    stop_operator()
    env = {
        **os.environ,
        "KUBECONFIG": str(cp.OPERATOR_KUBECONFIG),
        "QDRANT_OPERATOR_METRICS_PORT": str(metrics),
        "QDRANT_OPERATOR_HEALTH_PORT": str(health),
        "QDRANT_OPERATOR_RESYNC_INTERVAL_SECONDS": "30",
    }
    # Only the demo namespace: the demo never touches what tests or other work put in the cluster.
    command = [str(BIN / "qdrant-collection-operator"), "run", "-n", NAMESPACE]
    proc = processes.spawn(command, OPERATOR_LOG, OPERATOR_PID, env=env)
    print(f"operator started (pid {proc.pid}), log {OPERATOR_LOG}, metrics http://127.0.0.1:{metrics}/metrics")


def stop_operator() -> None:
    pid = processes.running(OPERATOR_PID)
    if pid is not None:
        processes.stop(pid, 20)
    OPERATOR_PID.unlink(missing_ok=True)


def reset(qdrant: str) -> None:
    """Start from scratch: a demo namespace and demo collections left by an earlier run are removed
    (the dev Qdrant is the demo's own; the operator would rightly refuse collections it did not create).
    The operator runs meanwhile: it removes its finalizers from the connection and snapshots it watches."""
    subprocess.run(
        [*KUBECTL, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--timeout=90s"],
        check=True,
        capture_output=True,
    )
    for collection in ("minimal", "docs", "embeddings", "minimal-restored"):
        request = urllib.request.Request(f"{qdrant}/collections/{collection}", method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()  # an absent one answers "false", not 404


def add_points(qdrant: str, collection: str) -> None:
    points = [{"id": i, "vector": [float(i == j) for j in range(384)], "payload": {"n": i}} for i in range(3)]
    request = urllib.request.Request(
        f"{qdrant}/collections/{collection}/points?wait=true",
        method="PUT",
        data=json.dumps({"points": points}).encode(),
        headers={"content-type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=30).close()


def wait_ready(timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = json.loads(kubectl("get", "qdrant", "-n", NAMESPACE, "-o", "json", show=False))["items"]
        ready = [
            i
            for i in items
            if any(
                c["type"] == "Ready" and c["status"] == "True" for c in (i.get("status") or {}).get("conditions", [])
            )
        ]
        if items and len(ready) == len(items):
            return
        time.sleep(1)
    raise SystemExit(f"not everything became Ready in {timeout:.0f}s; see {OPERATOR_LOG}")


def main() -> None:
    if sys.argv[1:] == ["down"]:
        stop_operator()
        return
    cp.up()
    chosen = demo_ports()
    qdrant = f"http://127.0.0.1:{chosen['qdrant']}"
    subprocess.run([sys.executable, "-m", "devenv.qdrant_dev", "up", "--port", str(chosen["qdrant"])], check=True)
    kubectl("apply", "--server-side", "--force-conflicts", "-k", str(REPO / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{k.plural}.{GROUP}" for k in KINDS))
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(REPO / "manifests/base/namespace.yaml"),
        "-f",
        str(REPO / "manifests/base/rbac.yaml"),
    )
    start_operator(chosen["metrics"], chosen["health"])
    reset(qdrant)
    kubectl("create", "namespace", NAMESPACE)
    for example in EXAMPLES:
        path = REPO / "examples" / example
        if qdrant != EXAMPLE_QDRANT and EXAMPLE_QDRANT in (text := path.read_text()):
            print(f"# {example} with the dev Qdrant's URL {qdrant} in place of {EXAMPLE_QDRANT}")
            kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=text.replace(EXAMPLE_QDRANT, qdrant))
        else:
            kubectl("apply", "-n", NAMESPACE, "-f", str(path))
    started = time.monotonic()
    wait_ready()
    print(f"\nall Ready {time.monotonic() - started:.1f}s after apply\n")
    kubectl("get", "qdrant", "-n", NAMESPACE)
    print("\nA snapshot of 'minimal' with three points, restored into a new collection:")
    add_points(qdrant, "minimal")
    kubectl("apply", "-n", NAMESPACE, "-f", str(REPO / "examples/collectionsnapshot-once.yaml"))
    kubectl(
        "wait",
        "-n",
        NAMESPACE,
        "--for=jsonpath={.status.phase}=Completed",
        "--timeout=60s",
        "collectionsnapshot/minimal-backup",
    )
    kubectl("apply", "-n", NAMESPACE, "-f", str(REPO / "examples/vectorcollection-restore.yaml"))
    kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", "--timeout=90s", "vectorcollection/minimal-restored")
    kubectl("get", "qdrant", "-n", NAMESPACE)
    print(f"\n$ curl {qdrant}/collections/docs   # what Qdrant itself reports for the complete example")
    with urllib.request.urlopen(f"{qdrant}/collections/docs", timeout=10) as resp:
        info = json.load(resp)["result"]
    print(
        json.dumps(
            {"status": info["status"], "config": info["config"], "payload_schema": info["payload_schema"]}, indent=2
        )
    )
    print(
        "\nEverything keeps running. Try:\n"
        f"  export KUBECONFIG={cp.ADMIN_KUBECONFIG}\n"
        f"  kubectl -n {NAMESPACE} edit vectorcollection docs      # change hnsw.m and watch Qdrant follow\n"
        f"  curl -X PATCH {qdrant}/collections/docs -H 'content-type: application/json' \\\n"
        '       -d \'{"hnsw_config": {"m": 48}}\'                 # drift, corrected within 30 s\n'
        "  make down                                              # stop operator, Qdrant, control plane"
    )


if __name__ == "__main__":
    main()
