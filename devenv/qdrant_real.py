"""The real Qdrant server, built from the source in ../shared/vendor/qdrant/ with cargo into a cache
outside the repository, and started as a single node or an N-node cluster on loopback.

Standard library only, so it runs before any virtual environment exists:

    python3 devenv/qdrant_real.py build | up [--port P] [--api-key K] | cluster-up [--nodes N] [--port P]
                                  | down | status

Every process listens on loopback and is stopped by the PID recorded when it started.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

try:
    from devenv import ports, processes
except ModuleNotFoundError:  # run as a script (python3 devenv/...): its own directory is on sys.path
    import ports  # type: ignore[no-redef]
    import processes  # type: ignore[no-redef]

QDRANT_VERSION = "1.19.0"
QDRANT_COMMIT = "74f3e85b9473c62560006c043e13737ce6b48412"
TONIC_VERSION = "0.14.6"
RAFT_REV = "aafb07c7"

REPO = Path(__file__).resolve().parent.parent
VENDOR = Path(os.environ.get("QDRANT_VENDOR_DIR", REPO.parent / "shared" / "vendor" / "qdrant"))
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "collection-operator"
STATE = Path(os.environ.get("DEVENV_STATE_DIR", REPO / ".devenv"))
HOST = "127.0.0.1"


def log(msg: str) -> None:
    print(f"[qdrant-real] {msg}", file=sys.stderr, flush=True)


def cached_binary() -> Path:
    return CACHE / f"qdrant-{QDRANT_VERSION}" / "qdrant"


def binary() -> Path | None:
    """The Qdrant to run: QDRANT_BIN if set, else the cached build, else None."""
    if os.environ.get("QDRANT_BIN"):
        return Path(os.environ["QDRANT_BIN"])
    return cached_binary() if cached_binary().exists() else None


def how_to_get_one() -> str:
    if VENDOR.is_dir():
        return f"no real Qdrant built yet: run `make qdrant-real-build` (from {VENDOR}, ~25 min once)"
    return (
        f"no real Qdrant: {VENDOR} (the vendored source) is absent and QDRANT_BIN is unset; "
        "set QDRANT_BIN to a qdrant 1.19 binary or QDRANT_URL to a running server"
    )


# ---------------------------------------------------------------------------------------- build


def _apt() -> None:
    """Debian packages the build needs (protoc, the well-known protos, patch), installed only when missing;
    lld too if it can be had (it links the 120 MB binary in seconds instead of a minute)."""
    if not shutil.which("cargo"):
        raise SystemExit("cargo is not on PATH: install Rust 1.95 or newer (rustup) and run again")
    needed = [
        pkg
        for pkg, present in (
            ("protobuf-compiler", shutil.which("protoc")),
            ("libprotobuf-dev", Path("/usr/include/google/protobuf/empty.proto").exists()),
            ("patch", shutil.which("patch")),
        )
        if not present
    ]
    optional = [] if shutil.which("ld.lld") else ["lld"]
    if not needed and not optional:
        return
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None or not shutil.which("apt-get"):
        if needed:
            raise SystemExit(f"install the Debian packages {' '.join(needed)} and run again")
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends"]
    log(f"$ apt-get install {' '.join(needed + optional)}")
    subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    if needed:
        subprocess.run([*install, *needed], check=True, env=env, stdout=subprocess.DEVNULL)
    if optional:
        subprocess.run([*install, *optional], check=False, env=env, stdout=subprocess.DEVNULL)


def _tonic_crate(scratch: Path) -> Path:
    """The registry's tonic 0.14.6 .crate, fetched by cargo itself through a one-dependency project."""
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    found = sorted(cargo_home.glob(f"registry/cache/*/tonic-{TONIC_VERSION}.crate"))
    if found:
        return found[0]
    fetcher = scratch / "tonic-fetch"
    (fetcher / "src").mkdir(parents=True, exist_ok=True)
    (fetcher / "src" / "lib.rs").write_text("")
    (fetcher / "Cargo.toml").write_text(
        '[package]\nname = "tonic-fetch"\nversion = "0.0.0"\nedition = "2021"\n\n'
        f'[dependencies]\ntonic = {{ version = "={TONIC_VERSION}", default-features = false }}\n'
    )
    subprocess.run(["cargo", "fetch", "-q"], cwd=fetcher, check=True)
    found = sorted(cargo_home.glob(f"registry/cache/*/tonic-{TONIC_VERSION}.crate"))
    if not found:
        raise SystemExit(f"cargo fetched tonic {TONIC_VERSION} but its .crate is not under {cargo_home}")
    return found[0]


def _rewrite_assert_matches(text: str) -> str:
    """`debug_assert_matches!(expr, pattern, msg..)` (std only from Rust 1.96) becomes
    `debug_assert!(matches!(expr, pattern), msg..)`, the same check, for Rust 1.95."""
    text = text.replace("use std::debug_assert_matches;\n", "")
    out, pos, macro = [], 0, "debug_assert_matches!("
    while (start := text.find(macro, pos)) >= 0:
        i, depth, args, arg_start = start + len(macro), 1, [], start + len(macro)
        while depth:
            c = text[i]
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
            if (c == "," and depth == 1) or depth == 0:
                args.append(text[arg_start:i])
                arg_start = i + 1
            i += 1
        args = [a for a in args if a.strip()]
        rest = "".join(f",{a}" for a in args[2:])
        out.append(text[pos:start] + f"debug_assert!(matches!({args[0].strip()}, {args[1].strip()}){rest})")
        pos = i
    return "".join(out) + text[pos:]


def _prepare_source(scratch: Path) -> Path:
    src = scratch / f"qdrant-{QDRANT_VERSION}"
    if (scratch / ".prepared").exists():
        return src
    log(f"unpacking Qdrant {QDRANT_VERSION}, raft-rs {RAFT_REV} and tonic {TONIC_VERSION} into {scratch}")
    for name in (f"qdrant-{QDRANT_VERSION}", "raft-rs", f"tonic-{TONIC_VERSION}"):
        shutil.rmtree(scratch / name, ignore_errors=True)
    with tarfile.open(VENDOR / f"qdrant-v{QDRANT_VERSION}-src.tar.gz") as tar:
        tar.extractall(scratch, filter="data")
    with tarfile.open(VENDOR / f"raft-rs-{RAFT_REV}.tar.gz") as tar:
        tar.extractall(scratch, filter="data")
    with tarfile.open(_tonic_crate(scratch)) as tar:
        tar.extractall(scratch, filter="data")
    # Qdrant's tonic fork is the registry's tonic plus one commit.
    patch = VENDOR / "qdrant-tonic-f8f18b7.patch"
    subprocess.run(["patch", "-p2", "-s", "-i", str(patch)], cwd=scratch / f"tonic-{TONIC_VERSION}", check=True)
    manifest = src / "Cargo.toml"
    text = manifest.read_text()
    fork = '[patch.crates-io]\ntonic = { git = "https://github.com/qdrant/tonic", branch = "v0.14.6-qdrant" }\n'
    if fork not in text:
        raise SystemExit(f"{manifest}: the tonic fork patch line is not where expected")
    text = text.replace(
        fork,
        (
            f'[patch.crates-io]\ntonic = {{ path = "../tonic-{TONIC_VERSION}" }}\n\n'
            '[patch."https://github.com/tikv/raft-rs"]\n'
            'raft = { path = "../raft-rs" }\nraft-proto = { path = "../raft-rs/proto" }\n'
        ),
    )
    manifest.write_text(text)
    for rs in (src / "lib").rglob("*.rs"):
        body = rs.read_text()
        if "debug_assert_matches" in body:
            rs.write_text(_rewrite_assert_matches(body))
            log(f"  debug_assert_matches -> debug_assert!(matches!(..)) in {rs.relative_to(src)}")
    (scratch / ".prepared").touch()
    return src


def _cargo_build(src: Path) -> None:
    env = {
        **os.environ,
        "CARGO_PROFILE_RELEASE_LTO": "false",
        "CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "16",
        "GIT_COMMIT_ID": QDRANT_COMMIT,
        "CARGO_TERM_COLOR": "never",
    }
    if shutil.which("ld.lld"):
        env["RUSTFLAGS"] = (env.get("RUSTFLAGS", "") + " -C link-arg=-fuse-ld=lld").strip()
    jobs = os.environ.get("CARGO_BUILD_JOBS", "2")
    args = ["cargo", "build", "--release", "--bin", "qdrant", "-j", jobs, "--ignore-rust-version"]
    log(f"$ {' '.join(args)}   (in {src})")
    proc = subprocess.Popen(args, cwd=src, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    compiled = downloaded = 0
    started = time.monotonic()
    for line in proc.stdout:
        # Cargo names each crate as it compiles (about 635): a heartbeat, summarised every 50.
        if m := re.match(r"\s+Compiling (\S+ v\S+)", line):
            compiled += 1
            if compiled % 50 == 0:
                log(f"  compiled {compiled} crates in {time.monotonic() - started:.0f}s (now {m.group(1)})")
            continue
        if re.match(r"\s+Download(ed|ing) ", line):
            downloaded += 1
            if downloaded % 200 == 0:
                log(f"  downloaded {downloaded} crates")
            continue
        log(f"  {line.rstrip()}")
    if proc.wait() != 0:
        raise SystemExit(f"cargo build failed (exit {proc.returncode}); see the output above")


def build() -> None:
    if cached_binary().exists():
        log(f"Qdrant {QDRANT_VERSION} cached at {cached_binary()}")
        return
    if not VENDOR.is_dir():
        raise SystemExit(how_to_get_one())
    scratch = CACHE / "build" / f"qdrant-{QDRANT_VERSION}"
    scratch.mkdir(parents=True, exist_ok=True)
    # One build at a time per cache: a second caller (another clone) waits and then reuses it.
    with open(scratch / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another process is building Qdrant into this cache; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if cached_binary().exists():
            log(f"Qdrant {QDRANT_VERSION} cached at {cached_binary()}")
            return
        started = time.monotonic()
        log(f"building Qdrant {QDRANT_VERSION} from {VENDOR} into {cached_binary().parent}")
        log("the first build takes 20 to 30 minutes on 2 cores (and ~3 GB of disk); later runs reuse it")
        _apt()
        src = _prepare_source(scratch)
        _cargo_build(src)
        out = cached_binary()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        shutil.copy2(src / "target" / "release" / "qdrant", tmp)
        subprocess.run(["strip", str(tmp)], check=False)
        tmp.rename(out)
        log(f"build finished in {time.monotonic() - started:.0f}s: {out}")


# ------------------------------------------------------------------------------------ run & stop

RUN_FILE = STATE / "qdrant-real.json"  # the nodes `up` / `cluster-up` started: pids, ports, storage


@dataclass
class Node:
    """One Qdrant process on loopback: REST, gRPC and (in a cluster) p2p ports, its own storage."""

    http_port: int
    grpc_port: int
    storage: Path
    p2p_port: int | None = None
    api_key: str | None = None
    jwt_rbac: bool = False  # service.jwt_rbac: tokens signed with api_key are taken (CollectionAccessKey)
    alt_api_key: str | None = None  # service.alt_api_key (1.17+): a second key, e.g. the old one during rotation
    bootstrap: str | None = None  # the first node's p2p URL, for nodes 2..N
    # storage.snapshots_config.s3_config (bucket, region, access_key, secret_key, endpoint_url): Qdrant's own S3
    # mode, snapshots written to that bucket instead of snapshots_path. Not in repr: it holds the secret key.
    snapshots_s3: dict[str, str] | None = field(default=None, repr=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def p2p_url(self) -> str:
        return f"http://{HOST}:{self.p2p_port}"

    @property
    def log(self) -> Path:
        return self.storage.parent / f"{self.storage.name}.log"

    def command(self, exe: Path) -> tuple[list[str], dict[str, str]]:
        env = {
            **os.environ,
            "QDRANT__SERVICE__HOST": HOST,
            "QDRANT__SERVICE__HTTP_PORT": str(self.http_port),
            "QDRANT__SERVICE__GRPC_PORT": str(self.grpc_port),
            "QDRANT__SERVICE__ENABLE_STATIC_CONTENT": "false",  # the web UI is not in the source archive
            "QDRANT__STORAGE__STORAGE_PATH": str(self.storage / "storage"),
            "QDRANT__STORAGE__SNAPSHOTS_PATH": str(self.storage / "snapshots"),
            "QDRANT__TELEMETRY_DISABLED": "true",
            "QDRANT__LOG_LEVEL": os.environ.get("QDRANT__LOG_LEVEL", "WARN"),
        }
        if self.api_key:
            env["QDRANT__SERVICE__API_KEY"] = self.api_key
        if self.jwt_rbac:
            env["QDRANT__SERVICE__JWT_RBAC"] = "true"
        if self.alt_api_key:
            env["QDRANT__SERVICE__ALT_API_KEY"] = self.alt_api_key
        if self.snapshots_s3:
            env["QDRANT__STORAGE__SNAPSHOTS_CONFIG__SNAPSHOTS_STORAGE"] = "s3"
            for key, value in self.snapshots_s3.items():
                env[f"QDRANT__STORAGE__SNAPSHOTS_CONFIG__S3_CONFIG__{key.upper()}"] = value
        args = [str(exe)]
        if self.p2p_port:
            env["QDRANT__CLUSTER__ENABLED"] = "true"
            env["QDRANT__CLUSTER__P2P__PORT"] = str(self.p2p_port)
            args += ["--uri", self.p2p_url]
            if self.bootstrap:
                args += ["--bootstrap", self.bootstrap]
        return args, env

    def start(self, exe: Path) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        args, env = self.command(exe)
        with self.log.open("ab") as out:
            # cwd is the storage: no ./config/config.yaml there, so Qdrant's built-in defaults apply.
            self.proc = subprocess.Popen(
                args,
                env=env,
                cwd=self.storage,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def get(self, path: str) -> dict | None:  # type: ignore[type-arg]
        req = urllib.request.Request(self.url + path, headers={"api-key": self.api_key} if self.api_key else {})
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait(self, ready: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():  # type: ignore[operator]
                return
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace").splitlines()[-25:]
                raise RuntimeError(
                    f"qdrant on port {self.http_port} exited ({self.proc.returncode}):\n" + "\n".join(tail)
                )
            time.sleep(0.1)
        raise RuntimeError(f"{what} not ready after {timeout:.0f}s; see {self.log}")

    def wait_ready(self, timeout: float = 60) -> None:
        self.wait(self.ready, timeout, f"qdrant {self.url}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def peers(self) -> int:
        info = self.get("/cluster") or {}
        result = info.get("result") or {}
        return len(result.get("peers") or {}) if (result.get("raft_info") or {}).get("leader") else 0

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)


def start_cluster(
    exe: Path, root: Path, nodes: int, first_port: int | None = None, api_key: str | None = None, timeout: float = 120
) -> list[Node]:
    """N nodes on loopback, each with REST, gRPC and p2p ports; node 1 starts the cluster, the others
    bootstrap from it one at a time; returns when every node's /cluster lists all N peers."""
    chosen = ports.free_ports(3 * nodes, first_port)
    started: list[Node] = []
    try:
        for i in range(nodes):
            node = Node(
                chosen[3 * i],
                chosen[3 * i + 1],
                root / f"node{i + 1}",
                p2p_port=chosen[3 * i + 2],
                api_key=api_key,
                bootstrap=started[0].p2p_url if started else None,
            )
            node.start(exe)
            started.append(node)
            node.wait_ready(timeout)
            node.wait(lambda n=node, k=i + 1: n.peers() >= k, timeout, f"node {i + 1} joining the cluster")
        for node in started:
            node.wait(lambda n=node: n.peers() == nodes, timeout, f"{node.url} seeing all {nodes} peers")
    except BaseException:
        for node in started:
            node.stop()
        raise
    return started


def _require_binary() -> Path:
    if binary() is None:
        build()
    exe = binary()
    assert exe is not None
    return exe


def _record(nodes: list[Node], root: Path) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    RUN_FILE.write_text(
        json.dumps(
            {
                "root": str(root),
                "nodes": [
                    {"pid": n.pid, "url": n.url, "grpc_port": n.grpc_port, "p2p_port": n.p2p_port} for n in nodes
                ],
            },
            indent=2,
        )
        + "\n"
    )
    for i, node in enumerate(nodes):
        (STATE / f"qdrant-real-node{i + 1}.pid").write_text(str(node.pid or ""))


def up(port: int, api_key: str | None) -> None:
    exe = _require_binary()
    down(quiet=True)
    root = Path(tempfile.mkdtemp(prefix="qdrant-real-"))
    http, grpc = ports.free_ports(2, port)
    if http != port:
        log(f"port {port} is taken; using {http}")
    node = Node(http, grpc, root / "node1", api_key=api_key)
    node.start(exe)
    _record([node], root)
    try:
        node.wait_ready()
    except RuntimeError as exc:
        down(quiet=True)
        raise SystemExit(str(exc)) from None
    version = (node.get("/") or {}).get("version", "?")
    log(f"Qdrant {version} (pid {node.pid}) at {node.url}, gRPC {HOST}:{grpc}, storage {root}, log {node.log}")
    print(node.url)


def cluster_up(nodes: int, port: int, api_key: str | None) -> None:
    exe = _require_binary()
    down(quiet=True)
    root = Path(tempfile.mkdtemp(prefix="qdrant-cluster-"))
    try:
        started = start_cluster(exe, root, nodes, port, api_key)
    except RuntimeError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise SystemExit(str(exc)) from None
    _record(started, root)
    for i, node in enumerate(started, 1):
        log(f"node {i}: {node.url} (gRPC {node.grpc_port}, p2p {node.p2p_port}, pid {node.pid})")
        print(node.url)
    log(f"{nodes}-node cluster ready; storage and logs under {root}")


def down(quiet: bool = False) -> None:
    if not RUN_FILE.exists():
        if not quiet:
            log("nothing running")
        return
    state = json.loads(RUN_FILE.read_text())
    for node in state["nodes"]:
        pid = node["pid"]
        if not pid or not processes.stop(pid, 15):
            continue
        log(f"stopped qdrant {node['url']} (pid {pid})")
    shutil.rmtree(state["root"], ignore_errors=True)
    for pid_file in STATE.glob("qdrant-real-node*.pid"):
        pid_file.unlink()
    RUN_FILE.unlink()


def status() -> None:
    if not RUN_FILE.exists():
        print("stopped")
        return
    for node in json.loads(RUN_FILE.read_text())["nodes"]:
        running = node["pid"] and processes.alive(node["pid"])
        print(f"{node['url']}: " + (f"running, pid {node['pid']}" if running else "stopped"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build Qdrant into the user cache (once per version)")
    single = sub.add_parser("up", help="one node on loopback with fresh storage")
    single.add_argument("--port", type=int, default=6333, help="REST port (gRPC is the next); a free one if taken")
    single.add_argument("--api-key")
    cluster = sub.add_parser("cluster-up", help="an N-node cluster on loopback with fresh storage")
    cluster.add_argument("--nodes", type=int, default=3)
    cluster.add_argument(
        "--port", type=int, default=6333, help="node 1's REST port; each node takes three ports (REST, gRPC, p2p)"
    )
    cluster.add_argument("--api-key")
    sub.add_parser("down", help="stop what up / cluster-up started, by PID, and remove its storage")
    sub.add_parser("status")
    args = parser.parse_args()
    if args.command == "build":
        build()
    elif args.command == "up":
        up(args.port, args.api_key)
    elif args.command == "cluster-up":
        cluster_up(args.nodes, args.port, args.api_key)
    elif args.command == "down":
        down()
    else:
        status()


if __name__ == "__main__":
    main()
