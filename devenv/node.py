"""A real node beside a control plane of its own, so Pods run here as on any cluster: containerd and runc
from Debian's packages with the CNI plugins; kubelet, kube-scheduler and kube-proxy built from the Go module
proxy at the control plane's Kubernetes version; CoreDNS built from it too. Nothing is pulled: the operator
image (`make image`), a Qdrant image from the real build and the pause image are built here and imported.

    python3 devenv/node.py build | up | down | status | images

Standard library only, like controlplane.py; needs root (containerd, cgroups, network namespaces).

The network stays on this machine: the Pods' bridge qcobr0 (10.244.0.0/24, this host at 10.244.0.1) has no
uplink, nothing is masqueraded, and FORWARD drops any packet between it and another interface. The API server
and CoreDNS listen on 10.244.0.1, where Pods reach them; every other server stays on loopback.

State: the control plane under .devenv/node (DEVENV_STATE_DIR), containerd's and the kubelet's under
/var/lib/qco-node and /run/qco-node (one node per machine: a lock serialises `up` across checkouts).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".devenv" / "node"
# The control plane this module starts is the one controlplane.py would start with this environment.
os.environ.update(DEVENV_STATE_DIR=str(STATE), DEVENV_API_HOST="10.244.0.1", DEVENV_NODE="1")
os.environ.setdefault("DEVENV_API_PORT", "16643")
os.environ.setdefault("DEVENV_ETCD_PORT", "12579")

if __package__:
    from devenv import controlplane as cp
    from devenv import image, processes, qdrant_real
else:  # run as a script: its own directory is on sys.path
    import controlplane as cp  # type: ignore[no-redef]
    import image  # type: ignore[no-redef]
    import processes  # type: ignore[no-redef]
    import qdrant_real  # type: ignore[no-redef]

COREDNS_VERSION = "v1.14.7"
BRIDGE = "qcobr0"
GATEWAY = cp.API_HOST
POD_CIDR = "10.244.0.0/24"
NODE_NAME = cp.NODE_NAME
VAR = Path("/var/lib/qco-node")
RUNTIME = Path("/run/qco-node")
SOCKET = RUNTIME / "containerd.sock"
RUN = STATE / "node"
KUBECONFIG = STATE / "admin.kubeconfig"
CHAIN = "QCO-NODE-ISOLATE"
LOCK = Path("/run/qco-node.lock")
KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")  # the kubelet makes, never removes
PROCESSES = ("containerd", "kubelet", "kube-proxy", "coredns", "kube-scheduler")
# The images a Pod here can run, by the name manifests give them (a bare name means docker.io/library/).
QDRANT_IMAGE = f"docker.io/qdrant/qdrant:v{qdrant_real.QDRANT_VERSION}"
OPERATOR_IMAGE = f"docker.io/library/{image.IMAGE}"
PAUSE_IMAGE = "localhost/pause:devenv"
PAUSE_SOURCE = REPO / "devenv" / "pause"


def log(msg: str) -> None:
    print(f"[node] {msg}", file=sys.stderr, flush=True)


def run(*cmd: str, check: bool = True, capture: bool = True) -> str:
    proc = subprocess.run(cmd, capture_output=capture, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {(proc.stderr or '').strip()}")
    return proc.stdout or ""


# ---------------------------------------------------------------------------------------- build


def binaries() -> dict[str, Path]:
    d = cp.bin_dir()
    return {name: d / name for name in ("kubelet", "kube-scheduler", "kube-proxy", "coredns")}


def build() -> None:
    cp.build()
    bins = binaries()
    if not all(bins[n].exists() for n in ("kubelet", "kube-scheduler", "kube-proxy")):
        log("building kubelet, kube-scheduler and kube-proxy (minutes, once)")
        gomod = cp._module_file("k8s.io/kubernetes", cp.KUBERNETES_VERSION, cp.CACHE / "build")
        cp._build_module(
            "kubernetes-node",
            "k8s.io/kubernetes",
            cp.KUBERNETES_VERSION,
            [f"k8s.io/kubernetes/cmd/{n}" for n in ("kubelet", "kube-scheduler", "kube-proxy")],
            cp._staging_replaces(gomod, cp.KUBERNETES_VERSION),
            f"-s -w {cp.version_ldflags()}",
        )
    if not bins["coredns"].exists():
        cp._build_module(
            "coredns", "github.com/coredns/coredns", COREDNS_VERSION, ["github.com/coredns/coredns"], [], "-s -w"
        )


def pause_binary() -> Path:
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(PAUSE_SOURCE.iterdir()))).hexdigest()[:12]
    target = cp.CACHE / "bin" / f"pause-{digest}"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        cp._go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(target), "."], PAUSE_SOURCE)
    return target


# ---------------------------------------------------------------------------------------- images


def pause_image() -> str:
    binary = pause_binary()
    ref = f"localhost/pause:{binary.name.removeprefix('pause-')}"
    if not image.cached(ref):
        with image.working_container("scratch") as c:
            image.buildah("copy", c, str(binary), "/pause")
            image.buildah("config", '--entrypoint=["/pause"]', "--user=65535:65535", c)
            image.buildah("commit", "--rm", "--quiet", c, ref)
    image.buildah("tag", ref, PAUSE_IMAGE)
    return PAUSE_IMAGE


def qdrant_image() -> str:
    """Qdrant from the real build, laid out like the official image (/qdrant, storage and snapshots below
    it), non-root and with telemetry off."""
    exe = qdrant_real.binary()
    if exe is None:
        raise SystemExit("the real Qdrant is not built: run `make qdrant-real-build` first")
    base = image.rootfs()
    recipe = inspect.getsource(qdrant_image)  # a change to the steps below builds a new image
    ref = f"localhost/qdrant-devenv:{image.key(base, exe.stat().st_mtime_ns, exe.stat().st_size, recipe)}"
    if not image.cached(ref):
        with image.working_container(base) as c:
            image.buildah("copy", "--chown=1000:1000", c, str(exe), "/qdrant/qdrant")
            # Qdrant's HTTP client refuses to start without a CA bundle: Debian's, from this machine.
            image.buildah("copy", c, "/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt")
            image.buildah(
                "run", c, "--", "install", "-d", "-o", "1000", "-g", "1000", "/qdrant/storage", "/qdrant/snapshots"
            )
            env = ["QDRANT__TELEMETRY_DISABLED=true", "QDRANT__SERVICE__ENABLE_STATIC_CONTENT=false"]
            image.buildah(
                "config",
                *[f"--env={e}" for e in env],
                "--workingdir=/qdrant",
                "--user=1000:1000",
                "--port=6333",
                "--port=6334",
                '--entrypoint=["/qdrant/qdrant"]',
                "--label=org.opencontainers.image.description=Qdrant built from the vendored source (devenv)",
                c,
            )
            image.buildah("commit", "--rm", "--quiet", c, ref)
    image.buildah("tag", ref, QDRANT_IMAGE)
    return QDRANT_IMAGE


def ctr(*args: str, check: bool = True) -> str:
    return run("ctr", "--address", str(SOCKET), "--namespace", "k8s.io", *args, check=check)


def import_image(ref: str, name: str) -> None:
    """Into containerd under `name`, unless it already holds that image."""
    image_id = image.buildah("inspect", "--type=image", "--format={{.FromImageID}}", ref)
    stamp = RUN / "images" / hashlib.sha256(name.encode()).hexdigest()[:16]
    present = name in ctr("images", "ls", "--quiet").split()
    if present and stamp.exists() and stamp.read_text() == image_id:
        return
    with tempfile.TemporaryDirectory(dir=image.CACHE) as tmp:
        archive = f"{tmp}/image.tar"
        image.buildah("push", "--quiet", ref, f"docker-archive:{archive}:{name}")
        ctr("images", "import", "--snapshotter=overlayfs", archive)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(image_id)
    log(f"imported {name}")


def images() -> None:
    import_image(pause_image(), PAUSE_IMAGE)
    import_image(qdrant_image(), QDRANT_IMAGE)
    operator = image.build()
    import_image(operator, OPERATOR_IMAGE)


# ---------------------------------------------------------------------------------------- network


def _iptables(*args: str, check: bool = True) -> bool:
    return subprocess.run(["iptables", "-w", *args], capture_output=True).returncode == 0 or not check


def network_up() -> None:
    """The bridge with the host's address on it, forwarding on (kube-proxy's DNAT to Service endpoints needs
    it) and an isolation chain: Pods reach each other and this host, nothing beyond."""
    if run("ip", "-br", "link", "show", BRIDGE, check=False) == "":
        run("ip", "link", "add", BRIDGE, "type", "bridge")
    if GATEWAY not in run("ip", "-br", "addr", "show", BRIDGE):
        run("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    saved = RUN / "ip_forward"
    if not saved.exists():
        saved.write_text(forward.read_text())
    forward.write_text("1")
    Path("/proc/sys/net/bridge/bridge-nf-call-iptables").write_text("1")
    if not _iptables("-L", CHAIN, "-n"):
        _iptables("-N", CHAIN)
        _iptables("-A", CHAIN, "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP")
        _iptables("-A", CHAIN, "-o", BRIDGE, "!", "-i", BRIDGE, "-j", "DROP")
    if not _iptables("-C", "FORWARD", "-j", CHAIN):
        _iptables("-I", "FORWARD", "1", "-j", CHAIN)
    cni = VAR / "cni"
    cni.mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "0.4.0",
        "name": "qco-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,  # nothing leaves this machine
                "hairpinMode": True,  # a Pod reaching itself through its Service
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(VAR / "ipam"),
                    "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    (cni / "10-qco-node.conflist").write_text(json.dumps(conflist, indent=2))


def network_down() -> None:
    # Network namespaces of Pods that ended with their node: each holds a veth on the bridge.
    for line in run("ip", "netns", "list", check=False).splitlines():
        ns = line.split()[0]
        if ns.startswith("cni-") and "10.244.0." in run("ip", "-n", ns, "-br", "addr", check=False):
            run("ip", "netns", "delete", ns, check=False)
    run("ip", "link", "delete", BRIDGE, check=False)
    while _iptables("-D", "FORWARD", "-j", CHAIN):
        pass
    _iptables("-F", CHAIN)
    _iptables("-X", CHAIN)
    saved = RUN / "ip_forward"
    if saved.exists():
        Path("/proc/sys/net/ipv4/ip_forward").write_text(saved.read_text())
        saved.unlink()
    shutil.rmtree(VAR / "ipam", ignore_errors=True)


# ---------------------------------------------------------------------------------------- processes

CONTAINERD_CONFIG = """version = 2
root = "{var}/containerd"
state = "{runtime}/containerd"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  enable_selinux = false
  # This sandbox's root lacks CAP_SYS_RESOURCE: the kubelet's oom_score_adj of -998 for a Pod sandbox would fail
  # runc's start ("can't get final child's PID from pipe"); containerd raises it to its own value instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{var}/cni"
"""


def kubelet_config(port: int, healthz: int) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": GATEWAY,  # the API server reaches it here for logs and exec
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": cp.HOST,
        "healthzPort": healthz,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(cp.PKI / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",  # no systemd here
        "failCgroupV1": False,  # this VM's kernel mounts cgroup v1 (deprecated in Kubernetes, still supported)
        "failSwapOn": False,
        "clusterDNS": [GATEWAY],
        "clusterDomain": "cluster.local",
        "resolvConf": "",  # Pods get cluster DNS only: no resolver of this machine
        "containerRuntimeEndpoint": f"unix://{SOCKET}",
        "staticPodPath": "",
        # A test machine's disk is often fuller than a node's defaults allow.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "maxPods": 110,
        "podPidsLimit": 4096,
    }


def _pid(name: str) -> int | None:
    return processes.running(RUN / f"{name}.pid")


def _spawn(name: str, args: list[str]) -> None:
    proc = processes.spawn(args, RUN / f"{name}.log", RUN / f"{name}.pid")
    log(f"started {name} (pid {proc.pid}), log {RUN / f'{name}.log'}")


def _wait(what: str, check, timeout: float, name: str) -> None:
    processes.wait_started(what, check, timeout, RUN / f"{name}.log", RUN / f"{name}.pid")


def kubectl(*args: str, check: bool = True) -> str:
    return run("kubectl", f"--kubeconfig={KUBECONFIG}", *args, check=check)


def _node_ready() -> bool:
    out = kubectl(
        "get", "node", NODE_NAME, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False
    )
    return out.strip() == "True"


COREFILE = """cluster.local:53 in-addr.arpa:53 {{
    bind {gateway}
    errors
    kubernetes cluster.local in-addr.arpa {{
        kubeconfig {kubeconfig} coredns
        pods insecure
    }}
}}
.:53 {{
    bind {gateway}
    # Nothing is forwarded: this network has no way out.
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""

# CoreDNS reads what its kubernetes plugin serves from; kube-proxy's and the scheduler's rights are Kubernetes'
# default ClusterRoles for their names.
COREDNS_RBAC = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "devenv:coredns"}
rules:
  - apiGroups: [""]
    resources: [services, namespaces, pods]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "devenv:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "devenv:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}]
"""


def up() -> None:
    if os.geteuid() != 0:
        raise SystemExit("the node needs root: containerd, cgroups and network namespaces")
    started = time.monotonic()
    build()
    for d in (RUN, VAR, RUNTIME):
        d.mkdir(parents=True, exist_ok=True)
    network_up()
    subprocess.run([sys.executable, str(REPO / "devenv" / "controlplane.py"), "up"], check=True)
    tokens = cp._tokens()
    for uid in ("kubelet", "scheduler", "kube-proxy", "coredns"):
        cp._kubeconfig(RUN / f"{uid}.kubeconfig", uid, tokens[uid])
    bins = binaries()
    if _pid("containerd") is None:
        (RUN / "containerd.toml").write_text(
            CONTAINERD_CONFIG.format(var=VAR, runtime=RUNTIME, socket=SOCKET, pause=PAUSE_IMAGE)
        )
        _spawn("containerd", ["containerd", f"--config={RUN / 'containerd.toml'}"])
        _wait("containerd", lambda: SOCKET.exists() and ctr("version", check=False) != "", 60, "containerd")
    images()
    _apply(COREDNS_RBAC)
    if _pid("kubelet") is None:
        port, healthz = cp.ports.free_ports(2)
        (RUN / "kubelet.yaml").write_text(json.dumps(kubelet_config(port, healthz), indent=2))
        _spawn(
            "kubelet",
            [
                str(bins["kubelet"]),
                f"--config={RUN / 'kubelet.yaml'}",
                f"--kubeconfig={RUN / 'kubelet.kubeconfig'}",
                f"--root-dir={VAR / 'kubelet'}",
                f"--cert-dir={VAR / 'kubelet' / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={GATEWAY}",
                "--v=1",
            ],
        )
    if _pid("kube-proxy") is None:
        metrics, healthz = cp.ports.free_ports(2)
        _spawn(
            "kube-proxy",
            [
                str(bins["kube-proxy"]),
                f"--kubeconfig={RUN / 'kube-proxy.kubeconfig'}",
                "--proxy-mode=iptables",
                f"--cluster-cidr={POD_CIDR}",
                f"--hostname-override={NODE_NAME}",
                f"--metrics-bind-address={cp.HOST}:{metrics}",
                f"--healthz-bind-address={cp.HOST}:{healthz}",
                "--conntrack-max-per-core=0",  # leave the machine's conntrack table size alone
                "--v=1",
            ],
        )
    if _pid("coredns") is None:
        (RUN / "Corefile").write_text(COREFILE.format(gateway=GATEWAY, kubeconfig=RUN / "coredns.kubeconfig"))
        _spawn("coredns", [str(bins["coredns"]), "-conf", str(RUN / "Corefile")])
    if _pid("kube-scheduler") is None:
        port = cp.ports.free_ports(1)[0]
        conf = RUN / "scheduler.kubeconfig"
        _spawn(
            "kube-scheduler",
            [
                str(bins["kube-scheduler"]),
                f"--kubeconfig={conf}",
                f"--authentication-kubeconfig={conf}",
                f"--authorization-kubeconfig={conf}",
                f"--bind-address={cp.HOST}",
                f"--secure-port={port}",
                "--leader-elect=false",
                "--v=1",
            ],
        )
    _wait(f"node {NODE_NAME}", _node_ready, 180, "kubelet")
    log(f"node {NODE_NAME} Ready in {time.monotonic() - started:.0f}s; kubeconfig: {KUBECONFIG}")


def _apply(manifest: str) -> None:
    subprocess.run(
        ["kubectl", f"--kubeconfig={KUBECONFIG}", "apply", "-f", "-"],
        input=manifest,
        text=True,
        check=True,
        capture_output=True,
    )


def _containers_down() -> None:
    """Every container and Pod sandbox this node's containerd runs: stopped, with their shims."""
    if not SOCKET.exists() or _pid("containerd") is None:
        return
    for task in ctr("tasks", "ls", "--quiet", check=False).split():
        ctr("tasks", "kill", "--all", "--signal=SIGKILL", task, check=False)
    deadline = time.monotonic() + 20
    while ctr("tasks", "ls", "--quiet", check=False).split() and time.monotonic() < deadline:
        for task in ctr("tasks", "ls", "--quiet", check=False).split():
            ctr("tasks", "delete", "--force", task, check=False)
        time.sleep(0.5)
    for container in ctr("containers", "ls", "--quiet", check=False).split():
        ctr("containers", "delete", container, check=False)


def _shims() -> list[int]:
    """PIDs of runc shims serving this node's containerd (they outlive it by design)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if argv[0].endswith(b"containerd-shim-runc-v2") and str(SOCKET).encode() in argv:
                    found.append(int(proc.name))
    return found


def _unmount_below(root: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(f"{root}/")), key=len, reverse=True):
        run("umount", "--lazy", point, check=False)


def down(quiet: bool = False) -> None:
    for name in ("kube-scheduler", "coredns", "kube-proxy", "kubelet"):
        _stop(name)
    _containers_down()
    _stop("containerd")
    for pid in _shims():
        processes.stop(pid, 5)
    _unmount_below(VAR)
    _unmount_below(RUNTIME)
    network_down()
    # kube-proxy's rules (they name the Services of a control plane that is going away too), then the kubelet's.
    if (bins := binaries())["kube-proxy"].exists():
        run(str(bins["kube-proxy"]), "--cleanup", check=False)
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            for hook in ("INPUT", "OUTPUT"):
                while (
                    subprocess.run(
                        [tool, "-w", "-t", table, "-D", hook, "-j", "KUBE-FIREWALL"], capture_output=True
                    ).returncode
                    == 0
                ):
                    pass
            for chain in KUBELET_CHAINS:
                subprocess.run([tool, "-w", "-t", table, "-F", chain], capture_output=True)
                subprocess.run([tool, "-w", "-t", table, "-X", chain], capture_output=True)
    subprocess.run([sys.executable, str(REPO / "devenv" / "controlplane.py"), "down"], check=False)
    # The next `up` starts an empty cluster: Pods on record whose containers are gone would only mislead.
    shutil.rmtree(STATE / "controlplane" / "etcd-data", ignore_errors=True)
    shutil.rmtree(VAR / "kubelet", ignore_errors=True)
    if not quiet:
        log("node stopped")


def _stop(name: str) -> None:
    pid = _pid(name)
    if pid is not None:
        processes.stop(pid, 15)
        log(f"stopped {name} (pid {pid})")
    (RUN / f"{name}.pid").unlink(missing_ok=True)


def status() -> None:
    for name in PROCESSES:
        pid = _pid(name)
        print(f"{name}: " + (f"running, pid {pid}" if pid else "stopped"))


@contextlib.contextmanager
def locked():
    """One node per machine: its bridge, addresses and runtime directories are machine-wide. A caller that
    holds the lock for longer (the test suite, from `up` to `down`) sets QCO_NODE_LOCKED=1 for this script."""
    if os.environ.get("QCO_NODE_LOCKED") == "1":
        yield
        return
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "up", "down", "status", "images"])
    args = parser.parse_args()
    if args.command in ("build", "status"):
        {"build": build, "status": status}[args.command]()
        return
    with locked():
        {"up": up, "down": down, "images": images}[args.command]()


if __name__ == "__main__":
    main()
