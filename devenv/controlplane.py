"""The local Kubernetes control plane: a real etcd and kube-apiserver (and kube-controller-manager),
built from the Go module proxy at pinned versions into a cache outside the repository.

Standard library only, so it runs before any virtual environment exists:

    python3 devenv/controlplane.py build | up | down | status | env

Everything listens on loopback; every process is stopped by the PID recorded when it started.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

try:
    from devenv import ports, processes
except ModuleNotFoundError:  # run as a script (python3 devenv/...): its own directory is on sys.path
    import ports  # type: ignore[no-redef]
    import processes  # type: ignore[no-redef]

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "collection-operator"
STATE = Path(os.environ.get("DEVENV_STATE_DIR", REPO / ".devenv"))
HOST = "127.0.0.1"
# devenv/node.py runs a second control plane whose API server Pods must reach: on the Pods' bridge address
# (DEVENV_API_HOST), with the Node authorizer, a kubelet's credentials and every controller (DEVENV_NODE).
API_HOST = os.environ.get("DEVENV_API_HOST", HOST)
NODE = os.environ.get("DEVENV_NODE") == "1"
NODE_NAME = "qco-node"
PORTS_FILE = STATE / "ports.json"  # the ports this checkout's control plane runs on, when not the defaults
PORTS_FROM_ENV = "DEVENV_API_PORT" in os.environ or "DEVENV_ETCD_PORT" in os.environ


def _configured_ports() -> tuple[int, int]:
    """(API server, etcd client) ports: the environment's, else those of this checkout's running control
    plane, else the defaults. Each also uses the next port (controller manager, etcd peer)."""
    if not PORTS_FROM_ENV and PORTS_FILE.exists():
        saved = json.loads(PORTS_FILE.read_text())
        return saved["api"], saved["etcd"]
    return int(os.environ.get("DEVENV_API_PORT", "16443")), int(os.environ.get("DEVENV_ETCD_PORT", "12379"))


API_PORT, ETCD_PORT = _configured_ports()
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
    proc = subprocess.Popen(
        ["go", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    compiled = 0
    for line in proc.stdout:
        # `go build -v` names each package as it compiles: a heartbeat, summarised every 100.
        if args[0] == "build" and re.fullmatch(r"[\w.~/-]+", line.strip()):
            compiled += 1
            if compiled % 100 == 0:
                log(f"  compiled {compiled} packages (now {line.strip()})")
            continue
        log(f"  {line.rstrip()}")
    if proc.wait() != 0:
        raise SystemExit(f"go {args[0]} failed (exit {proc.returncode}); see the output above")
    log(f"  done in {time.monotonic() - started:.0f}s")


def _module_file(module: str, version: str, cwd: Path) -> str:
    """Download a module's go.mod through the module proxy and return its text."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "GOTOOLCHAIN": "local"},
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


def _build_module(
    name: str, require: str, version: str, packages: list[str], replaces: list[str], ldflags: str
) -> None:
    src = CACHE / "build" / f"{name}-{version}"
    src.mkdir(parents=True, exist_ok=True)
    go_version = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout
    gomod = [f"module devenv.local/{name}", "", f"go {go_version.strip().removeprefix('go')}", ""]
    gomod.append(f"require {require} {version}")
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
        _go(["build", "-v", "-trimpath", "-ldflags", ldflags, "-o", str(target), pkg], src)


def version_ldflags() -> str:
    """Stamp the release into a Kubernetes binary so `kubectl version` reports it, as a released build does."""
    stamp = {
        "gitVersion": KUBERNETES_VERSION,
        "gitMajor": "1",
        "gitMinor": KUBERNETES_VERSION.split(".")[1],
        "gitTreeState": "clean",
    }
    return " ".join(f"-X k8s.io/component-base/version.{k}={v}" for k, v in stamp.items())


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
    _build_module(
        "kubernetes",
        "k8s.io/kubernetes",
        KUBERNETES_VERSION,
        ["k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kube-controller-manager"],
        _staging_replaces(k8s_gomod, KUBERNETES_VERSION),
        f"-s -w {version_ldflags()}",
    )
    log(f"build finished in {time.monotonic() - started:.0f}s")


# ------------------------------------------------------------------------------------ run & stop

SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"  # the first address of SERVICE_CIDR: the `kubernetes` Service
RUN = STATE / "controlplane"
PKI = RUN / "pki"
TOKENS = RUN / "tokens.csv"
AUDIT_LOG = RUN / "audit.log"
PROCESSES = ("etcd", "kube-apiserver", "kube-controller-manager")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _pki() -> None:
    """A CA of our own and a loopback serving certificate, so clients verify TLS for real."""
    if (PKI / "apiserver.crt").exists():
        return
    PKI.mkdir(parents=True, exist_ok=True)
    ca, sa = PKI / "ca", PKI / "sa"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=devenv-ca",
        "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
    )  # fmt: skip
    _signed_cert(
        "apiserver",
        "/CN=kube-apiserver",
        f"subjectAltName=IP:127.0.0.1,IP:{API_HOST},IP:{KUBERNETES_SERVICE_IP},DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
        "extendedKeyUsage=serverAuth\n",
    )
    # The API server's client certificate towards kubelets (logs, exec, port-forward).
    _signed_cert(
        "kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "extendedKeyUsage=clientAuth\n"
    )
    _openssl("genrsa", "-out", f"{sa}.key", "2048")
    _openssl("rsa", "-in", f"{sa}.key", "-pubout", "-out", f"{sa}.pub")


def _signed_cert(name: str, subject: str, extensions: str) -> None:
    """PKI/<name>.key and .crt, signed by the CA with these X.509 extensions."""
    cert, ca = PKI / name, PKI / "ca"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", f"{cert}.key", "-out", f"{cert}.csr")
    ext = PKI / f"{name}.ext"
    ext.write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{cert}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-days", "3650", "-extfile", str(ext), "-out", f"{cert}.crt",
    )  # fmt: skip


def _tokens() -> dict[str, str]:
    """Static bearer tokens: admin (system:masters), the operator (rights from manifests/ only) and the
    controller manager. Random per environment; the file is read by kube-apiserver at start."""
    if not TOKENS.exists():
        rows = [
            (secrets.token_hex(16), "admin", "admin", "system:masters"),
            (
                secrets.token_hex(16),
                OPERATOR_USER,
                "operator",
                "system:serviceaccounts,system:serviceaccounts:qdrant-operator,system:authenticated",
            ),
            (secrets.token_hex(16), "system:kube-controller-manager", "kcm", "system:masters"),
        ]
        if NODE:  # each with the rights Kubernetes' default RBAC (or the Node authorizer) gives that name
            rows += [
                (secrets.token_hex(16), f"system:node:{NODE_NAME}", "kubelet", "system:nodes"),
                (secrets.token_hex(16), "system:kube-scheduler", "scheduler", "system:authenticated"),
                (secrets.token_hex(16), "system:kube-proxy", "kube-proxy", "system:authenticated"),
                (secrets.token_hex(16), "system:coredns", "coredns", "system:authenticated"),
            ]
        TOKENS.write_text("".join(f'{t},{user},{uid},"{groups}"\n' for t, user, uid, groups in rows))
    tokens = {}
    for line in TOKENS.read_text().splitlines():
        token, _user, uid = line.split(",")[:3]
        tokens[uid] = token
    return tokens


def _kubeconfig(path: Path, user: str, token: str) -> None:
    ca = (PKI / "ca.crt").read_bytes()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "devenv",
                "cluster": {
                    "server": f"https://{API_HOST}:{API_PORT}",
                    "certificate-authority-data": base64.b64encode(ca).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "devenv", "user": user, "namespace": "default"}}],
        "current-context": user,
    }
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML; no PyYAML needed here
    path.chmod(0o600)


def _pid(name: str) -> int | None:
    return processes.running(RUN / f"{name}.pid")


def _spawn(name: str, args: list[str]) -> None:
    proc = processes.spawn(args, RUN / f"{name}.log", RUN / f"{name}.pid")
    log(f"started {name} (pid {proc.pid}), log {RUN / f'{name}.log'}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def _wait(what: str, check, timeout: float, name: str) -> None:
    processes.wait_started(what, check, timeout, RUN / f"{name}.log", RUN / f"{name}.pid")


def _choose_ports() -> None:
    """Keep the configured ports when they are free; else (another checkout's control plane or demo holds
    them) pick free ones and remember them for this checkout. Ports set in the environment are never moved."""
    global API_PORT, ETCD_PORT, ETCD_PEER_PORT, KCM_PORT
    taken = [p for p in (ETCD_PORT, ETCD_PEER_PORT, API_PORT, KCM_PORT) if not ports.bindable(p)]
    if taken and PORTS_FROM_ENV:
        raise SystemExit(
            f"port {HOST}:{taken[0]} is taken by another process; choose other DEVENV_API_PORT/DEVENV_ETCD_PORT"
        )
    if taken:
        API_PORT, ETCD_PORT = ports.free_ports(4)[::2]
        ETCD_PEER_PORT, KCM_PORT = ETCD_PORT + 1, API_PORT + 1
        log(f"ports {', '.join(map(str, taken))} are taken: using API server port {API_PORT}, etcd port {ETCD_PORT}")
    STATE.mkdir(parents=True, exist_ok=True)
    PORTS_FILE.write_text(json.dumps({"api": API_PORT, "etcd": ETCD_PORT}))


def _apiserver_ready(token: str, path: str = "/readyz") -> bool:
    ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    req = urllib.request.Request(f"https://{API_HOST}:{API_PORT}{path}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


NODE_APISERVER_FLAGS = (
    [
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--kubelet-client-certificate={PKI / 'kubelet-client.crt'}",
        f"--kubelet-client-key={PKI / 'kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP",
    ]
    if NODE
    else ["--authorization-mode=RBAC"]
)

AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  # Writes are what tests count; reads would only make the log large.
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
"""


def up() -> None:
    build()
    bins = binaries()
    RUN.mkdir(parents=True, exist_ok=True)
    _pki()
    tokens = _tokens()
    if _pid("kube-apiserver") and _apiserver_ready(tokens["admin"]):
        log(f"already running at https://{API_HOST}:{API_PORT}")
        _write_kubeconfigs(tokens)
        return
    down(quiet=True)
    started = time.monotonic()
    _choose_ports()
    etcd_url, peer_url = f"http://{HOST}:{ETCD_PORT}", f"http://{HOST}:{ETCD_PEER_PORT}"
    _spawn(
        "etcd",
        [
            str(bins["etcd"]),
            "--name=devenv",
            f"--data-dir={RUN / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=devenv={peer_url}",
            "--unsafe-no-fsync",  # a throwaway test store: durability costs seconds per test run
            "--log-level=warn",
        ],
    )
    _wait("etcd", lambda: _port_open(ETCD_PORT), 60, "etcd")
    (RUN / "audit-policy.yaml").write_text(AUDIT_POLICY)
    _spawn(
        "kube-apiserver",
        [
            str(bins["kube-apiserver"]),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={API_HOST}",
            f"--advertise-address={API_HOST}",
            f"--secure-port={API_PORT}",
            f"--tls-cert-file={PKI / 'apiserver.crt'}",
            f"--tls-private-key-file={PKI / 'apiserver.key'}",
            f"--token-auth-file={TOKENS}",
            *NODE_APISERVER_FLAGS,
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={PKI / 'sa.pub'}",
            f"--service-account-signing-key-file={PKI / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",  # routed by kube-proxy on the node only
            f"--audit-policy-file={RUN / 'audit-policy.yaml'}",
            f"--audit-log-path={AUDIT_LOG}",
            "--audit-log-maxsize=100",
            "--audit-log-maxbackup=1",
            "--audit-log-mode=blocking",  # so a test reads every write as soon as it is acknowledged
            "--v=1",
        ],
    )
    _wait("kube-apiserver", lambda: _apiserver_ready(tokens["admin"]), 180, "kube-apiserver")
    _write_kubeconfigs(tokens)
    _kubeconfig(RUN / "kcm.kubeconfig", "kube-controller-manager", tokens["kcm"])
    _spawn(
        "kube-controller-manager",
        [
            str(bins["kube-controller-manager"]),
            f"--kubeconfig={RUN / 'kcm.kubeconfig'}",
            f"--authentication-kubeconfig={RUN / 'kcm.kubeconfig'}",
            f"--authorization-kubeconfig={RUN / 'kcm.kubeconfig'}",
            f"--bind-address={HOST}",
            f"--secure-port={KCM_PORT}",
            "--leader-elect=false",
            # Garbage collection and namespace deletion are what an operator's tests need; a node needs them all.
            # The clusterrole aggregation controller fills the built-in view, edit and admin roles from the
            # shipped roles labelled aggregate-to-* (manifests/base/roles.yaml), as on a real cluster.
            "--controllers="
            + (
                "*"
                if NODE
                else "garbage-collector-controller,namespace-controller,serviceaccount-controller,"
                "clusterrole-aggregation-controller"
            ),
            f"--service-account-private-key-file={PKI / 'sa.key'}",
            f"--root-ca-file={PKI / 'ca.crt'}",
            "--v=1",
        ],
    )
    log(
        f"control plane {KUBERNETES_VERSION} ready at https://{API_HOST}:{API_PORT} in "
        f"{time.monotonic() - started:.1f}s; admin kubeconfig: {ADMIN_KUBECONFIG}"
    )


def _write_kubeconfigs(tokens: dict[str, str]) -> None:
    _kubeconfig(ADMIN_KUBECONFIG, "admin", tokens["admin"])
    _kubeconfig(OPERATOR_KUBECONFIG, "operator", tokens["operator"])


def down(quiet: bool = False) -> None:
    for name in reversed(PROCESSES):
        pid = _pid(name)
        if pid is None:
            continue
        processes.stop(pid, 15)
        (RUN / f"{name}.pid").unlink(missing_ok=True)
        log(f"stopped {name} (pid {pid})")
    if not quiet:
        log("control plane stopped")


def status() -> None:
    for name in PROCESSES:
        pid = _pid(name)
        print(f"{name}: " + (f"running, pid {pid}" if pid else "stopped"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "up", "down", "status"])
    args = parser.parse_args()
    {"build": build, "up": up, "down": down, "status": status}[args.command]()


if __name__ == "__main__":
    main()
