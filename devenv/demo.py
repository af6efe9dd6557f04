"""`make demo`: the local control plane, the CRDs and the examples, shown through kubectl."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from collection_operator.api import GROUP, KINDS
from devenv import controlplane as cp

REPO = Path(__file__).resolve().parent.parent
KUBECTL = [str(Path(sys.executable).parent / "kubectl"), f"--kubeconfig={cp.ADMIN_KUBECONFIG}"]
NAMESPACE = "demo"


def kubectl(*args: str) -> None:
    print(f"$ kubectl {' '.join(args)}", flush=True)
    subprocess.run([*KUBECTL, *args], check=True)


def main() -> None:
    cp.up()
    kubectl("version")
    kubectl("apply", "--server-side", "-k", str(REPO / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{k.plural}.{GROUP}" for k in KINDS))
    subprocess.run([*KUBECTL, "create", "namespace", NAMESPACE], capture_output=True)
    for example in sorted((REPO / "examples").glob("*.yaml")):
        kubectl("apply", "-n", NAMESPACE, "-f", str(example))
    kubectl("get", "qdrant", "-n", NAMESPACE)
    print(
        "\nThe API server validated and stored every example. The reconcilers that turn them into Qdrant\n"
        "collections are not built yet, so READY stays empty. The control plane keeps running:\n"
        f"  export KUBECONFIG={cp.ADMIN_KUBECONFIG}\n  make cluster-down   # when done"
    )


if __name__ == "__main__":
    main()
