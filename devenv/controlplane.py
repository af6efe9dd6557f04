"""The local Kubernetes control plane: a real etcd and kube-apiserver (and kube-controller-manager),
built from the Go module proxy at pinned versions into a cache outside the repository.

Standard library only, so it runs before any virtual environment exists:

    python3 devenv/controlplane.py build | up | down | status | env

Everything listens on loopback; every process is stopped by the PID recorded when it started.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "collection-operator"
STATE = Path(os.environ.get("DEVENV_STATE_DIR", REPO / ".devenv"))
HOST = "127.0.0.1"
API_PORT = int(os.environ.get("DEVENV_API_PORT", "16443"))
ETCD_PORT = int(os.environ.get("DEVENV_ETCD_PORT", "12379"))
ETCD_PEER_PORT = ETCD_PORT + 1
KCM_PORT = API_PORT + 1

ADMIN_KUBECONFIG = STATE / "admin.kubeconfig"
OPERATOR_KUBECONFIG = STATE / "operator.kubeconfig"
# The identity the operator runs as in tests: its rights come only from manifests/ RBAC.
OPERATOR_USER = "system:serviceaccount:qdrant-operator:qdrant-collection-operator"


def log(msg: str) -> None:
    print(f"[controlplane] {msg}", file=sys.stderr, flush=True)


def bin_dir() -> Path:
    return CACHE / "bin" / f"kubernetes-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}"


def binaries() -> dict[str, Path]:
    d = bin_dir()
    return {name: d / name for name in ("etcd", "kube-apiserver", "kube-controller-manager")}


# ---------------------------------------------------------------------------------------- build


def _go(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false", "CGO_ENABLED": "0"}
    log(f"$ go {' '.join(args)}   (in {cwd})")
    started = time.monotonic()
    proc = subprocess.Popen(["go", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        log(f"  {line.rstrip()}")
    if proc.wait() != 0:
        raise SystemExit(f"go {args[0]} failed (exit {proc.returncode}); see the output above")
    log(f"  done in {time.monotonic() - started:.0f}s")


def _module_file(module: str, version: str, cwd: Path) -> str:
    """Download a module's go.mod through the module proxy and return its text."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=cwd, check=True, capture_output=True, text=True, env={**os.environ, "GOTOOLCHAIN": "local"},
    )
    return Path(json.loads(out.stdout)["GoMod"]).read_text()


def _staging_replaces(kubernetes_gomod: str, version: str) -> list[str]:
    """k8s.io/kubernetes replaces its staging modules with local paths, which a dependent module
    cannot follow; each becomes the published k8s.io/<name> v0.<minor>.<patch> instead."""
    published = "v0." + version.removeprefix("v1.")
    names = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", kubernetes_gomod, re.MULTILINE)
    if not names:
        raise SystemExit("could not find the staging replace list in k8s.io/kubernetes's go.mod")
    return [f"\t{name} => {name} {published}" for name in names]


def _build_module(name: str, require: str, version: str, packages: list[str], replaces: list[str], ldflags: str) -> None:
    src = CACHE / "build" / f"{name}-{version}"
    src.mkdir(parents=True, exist_ok=True)
    go_version = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()
    gomod = [f"module devenv.local/{name}", "", f"go {go_version.removeprefix('go')}", "", f"require {require} {version}"]
    if replaces:
        gomod += ["", "replace (", *replaces, ")"]
    (src / "go.mod").write_text("\n".join(gomod) + "\n")
    imports = "\n".join(f'\t_ "{p}"' for p in packages)
    (src / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    _go(["mod", "tidy"], src)
    out = bin_dir()
    out.mkdir(parents=True, exist_ok=True)
    for pkg in packages:
        target = out / pkg.rstrip("/").split("/")[-1]
        if pkg.startswith("go.etcd.io"):
            target = out / "etcd"
        _go(["build", "-trimpath", "-ldflags", ldflags, "-o", str(target), pkg], src)


def build() -> None:
    if all(p.exists() for p in binaries().values()):
        log(f"binaries cached in {bin_dir()}")
        return
    started = time.monotonic()
    log(f"building etcd {ETCD_VERSION} and Kubernetes {KUBERNETES_VERSION} from the Go module proxy into {CACHE}")
    log("the first build takes 10 to 20 minutes on 2 cores; later runs reuse the cache")
    scratch = CACHE / "build"
    scratch.mkdir(parents=True, exist_ok=True)
    if not binaries()["etcd"].exists():
        _build_module("etcd", "go.etcd.io/etcd/server/v3", ETCD_VERSION, ["go.etcd.io/etcd/server/v3"], [], "-s -w")
    k8s_gomod = _module_file("k8s.io/kubernetes", KUBERNETES_VERSION, scratch)
    minor = KUBERNETES_VERSION.split(".")[1]
    ldflags = " ".join(
        f"-X k8s.io/component-base/version.{k}={v}"
        for k, v in {"gitVersion": KUBERNETES_VERSION, "gitMajor": "1", "gitMinor": minor, "gitTreeState": "clean"}.items()
    )
    _build_module(
        "kubernetes", "k8s.io/kubernetes", KUBERNETES_VERSION,
        ["k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kube-controller-manager"],
        _staging_replaces(k8s_gomod, KUBERNETES_VERSION), f"-s -w {ldflags}",
    )
    log(f"build finished in {time.monotonic() - started:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["build"])
    args = parser.parse_args()
    {"build": build}[args.command]()


if __name__ == "__main__":
    main()
