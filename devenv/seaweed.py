"""SeaweedFS as a real S3 server on loopback: for the object-store tests, the benchmark and `make s3-up`.

Standard library only, so it runs before any virtual environment exists:

    python3 devenv/seaweed.py up [--port P] | down | status

One `weed mini` process (master, volume server, filer, S3 gateway, and the admin server with its maintenance
worker), the binary from devenv/gotools.py. Every listener is on 127.0.0.1 on a port chosen here (HTTP and
gRPC of each part); WebDAV, the Iceberg and Lance catalogs, the metrics listeners and the legacy admin port are
off, and so is telemetry (`-master.telemetry=false`: weed/server/master_server.go starts its collector only
when that is true). S3 requests must be signed (SigV4) by the one identity of an identities file written
beside the data; a missing bucket is an error, not created on upload. `up` keeps its data and credentials
in .devenv/seaweed/ (the credentials as an env file there), the tests in a temporary directory each.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devenv import gotools, ports, processes

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("DEVENV_STATE_DIR", REPO / ".devenv"))
HOST = ports.HOST
REGION = "us-east-1"
S3_PORT = 8333  # SeaweedFS's own default, for `up`
START_TIMEOUT_S = 60.0
# The parts of `weed mini` that listen, each on HTTP and gRPC.
PARTS = ("master", "volume", "filer", "s3", "admin")


def log(msg: str) -> None:
    print(f"[seaweed] {msg}", file=sys.stderr, flush=True)


def binary() -> Path | None:
    """The cached weed binary, or None until `python3 devenv/gotools.py build weed` has run."""
    path = gotools.path("weed")
    return path if path.exists() else None


@dataclass
class Seaweed:
    """One `weed mini` on loopback with its data in `data_dir`; stop() and start() keep the data and ports."""

    data_dir: Path
    access_key_id: str = field(default_factory=lambda: "qco" + secrets.token_hex(8))
    secret_access_key: str = field(default_factory=lambda: secrets.token_urlsafe(30), repr=False)
    region: str = REGION
    s3_port: int | None = None  # preferred S3 port; any free one if taken or unset
    ports: dict[str, int] = field(default_factory=dict)
    pid: int | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.ports['s3']}"

    @property
    def filer_url(self) -> str:
        """The filer's HTTP API (no S3 auth): lists what the S3 gateway keeps, e.g. `/buckets/<b>/.uploads/`."""
        return f"http://{HOST}:{self.ports['filer']}"

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.pid"

    def _choose_ports(self) -> None:
        # 2 per part, HTTP then gRPC; S3 first so a preferred S3 port is kept when free.
        free = ports.free_ports(2, self.s3_port)
        self.ports["s3"], self.ports["s3.grpc"] = free
        for part in PARTS:
            if part != "s3":
                self.ports[part], self.ports[f"{part}.grpc"] = ports.free_ports(2)

    def command(self, exe: Path) -> list[str]:
        p = self.ports
        return [
            str(exe),
            "mini",
            f"-dir={self.data_dir / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.telemetry=false",
            "-master.telemetry.url=",
            *(f"-{part}.port={p[part]}" for part in PARTS),
            *(f"-{part}.port.grpc={p[f'{part}.grpc']}" for part in PARTS),
            "-admin.port.legacy=0",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.data_dir / 'identities.json'}",
            "-s3.autoCreateBucket=false",
            "-s3.allowDeleteBucketNotEmpty=true",
        ]

    def start(self, exe: Path | None = None, timeout: float = START_TIMEOUT_S) -> None:
        """Start it (a no-op while it runs) and wait until S3 answers signed requests."""
        if self.pid is not None and processes.alive(self.pid):
            return
        exe = exe or binary()
        if exe is None:
            raise RuntimeError("no weed binary: run `python3 devenv/gotools.py build weed` (or `make go-tools`)")
        if not self.ports:
            self._choose_ports()
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "collection-operator",
                    "credentials": [{"accessKey": self.access_key_id, "secretKey": self.secret_access_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self.data_dir / "identities.json"
        config.write_text(json.dumps(identities))
        config.chmod(0o600)
        # A clean environment: weed adds an admin identity for AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and reads
        # security.toml and the like from $HOME/.seaweedfs and the working directory.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.data_dir)}
        proc = processes.spawn(self.command(exe), self.log_file, self.pid_file, env=env, cwd=self.data_dir)
        self.pid = proc.pid
        try:
            processes.wait_started(
                f"SeaweedFS S3 at {self.endpoint}", self.ready, timeout, self.log_file, self.pid_file
            )
        except SystemExit as exc:
            self.stop()
            raise RuntimeError(str(exc)) from None
        except BaseException:  # never leave a server behind that nobody knows of
            self.stop()
            raise

    def ready(self) -> bool:
        """Every part listens (the admin server starts last) and S3 refuses an unsigned ListBuckets with 403, so
        its identities are loaded (without them it would serve anyone)."""
        if any(ports.bindable(port) for port in self.ports.values()):
            return False
        try:
            urllib.request.urlopen(self.endpoint + "/", timeout=5).close()
        except urllib.error.HTTPError as exc:
            return exc.code == 403
        except (urllib.error.URLError, OSError):
            return False
        return False

    def stop(self, timeout: float = 15) -> None:
        if self.pid is not None:
            processes.stop(self.pid, timeout)
            self.pid = None
        self.pid_file.unlink(missing_ok=True)
        remove_sockets(self.ports.values())

    # ------------------------------------------------------------ S3 calls obstore does not make

    def s3(self, method: str, path: str) -> bytes:
        """A SigV4-signed S3 request without a body (bucket calls; `path` may carry a query, e.g.
        `/b/k?uploads=`); httpx.HTTPStatusError on a refusal. For the tests and the benchmark, which run in the
        virtual environment: httpx and httpx-auth (the operator's own) are imported here, not at the top, so
        `up` and `down` still need nothing but the standard library."""
        import httpx
        from httpx_auth import AWS4Auth

        auth = AWS4Auth(
            access_id=self.access_key_id, secret_key=self.secret_access_key, region=self.region, service="s3"
        )
        reply = httpx.request(method, self.endpoint + path, auth=auth, timeout=10)
        reply.raise_for_status()
        return reply.content

    def qdrant_s3_config(self, bucket: str) -> dict[str, str]:
        """Qdrant's storage.snapshots_config.s3_config for keeping its snapshots in `bucket` here (its own S3
        mode; `qdrant_real.Node(snapshots_s3=...)`)."""
        return {
            "bucket": bucket,
            "region": self.region,
            "access_key": self.access_key_id,
            "secret_key": self.secret_access_key,
            "endpoint_url": self.endpoint,
        }

    def create_bucket(self, name: str | None = None) -> str:
        """A new bucket (a random name unless given); its name."""
        name = name or f"test-{secrets.token_hex(6)}"
        self.s3("PUT", f"/{name}")
        return name

    def delete_bucket(self, name: str) -> None:
        """The bucket and everything in it (the server allows deleting a non-empty bucket)."""
        self.s3("DELETE", f"/{name}")

    def uploads(self, bucket: str) -> list[str]:
        """The multipart uploads begun in `bucket` and neither completed nor aborted: the gateway keeps them in
        the filer's `/buckets/<bucket>/.uploads/`."""
        request = urllib.request.Request(
            f"{self.filer_url}/buckets/{bucket}/.uploads/?limit=1000", headers={"Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                entries = json.loads(resp.read()).get("Entries") or []
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise
        return [entry["FullPath"] for entry in entries]


def remove_sockets(ports: Iterable[int]) -> None:
    """weed mini's local sockets in /tmp, named by the ports of a stopped server (it leaves some behind)."""
    for port in ports:
        for socket_file in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            socket_file.unlink(missing_ok=True)


# ------------------------------------------------------------------------------- make s3-up / s3-down

RUN_FILE = STATE / "seaweed.json"  # what `up` started: pid, ports
CREDENTIALS = STATE / "seaweed" / "credentials.env"


def _saved_credentials() -> dict[str, str]:
    if not CREDENTIALS.exists():
        return {}
    pairs = (line.split("=", 1) for line in CREDENTIALS.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def up(port: int) -> None:
    exe = binary() or gotools.build("weed")
    down(quiet=True)
    saved = _saved_credentials()
    server = Seaweed(STATE / "seaweed", s3_port=port)
    if saved.get("AWS_ACCESS_KEY_ID") and saved.get("AWS_SECRET_ACCESS_KEY"):
        server.access_key_id, server.secret_access_key = saved["AWS_ACCESS_KEY_ID"], saved["AWS_SECRET_ACCESS_KEY"]
    try:
        server.start(exe)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    if server.ports["s3"] != port:
        log(f"port {port} is taken; S3 on {server.ports['s3']}")
    CREDENTIALS.write_text(
        f"AWS_ENDPOINT_URL={server.endpoint}\nAWS_REGION={server.region}\n"
        f"AWS_ACCESS_KEY_ID={server.access_key_id}\nAWS_SECRET_ACCESS_KEY={server.secret_access_key}\n"
    )
    CREDENTIALS.chmod(0o600)
    RUN_FILE.write_text(json.dumps({"pid": server.pid, "ports": server.ports, "endpoint": server.endpoint}) + "\n")
    log(f"SeaweedFS S3 (pid {server.pid}) at {server.endpoint}, filer {server.filer_url}, data {server.data_dir}")
    log(f"credentials: {CREDENTIALS} (`set -a; . {CREDENTIALS}; set +a`); log {server.log_file}")
    print(server.endpoint)


def down(quiet: bool = False) -> None:
    if not RUN_FILE.exists():
        if not quiet:
            log("nothing running")
        return
    state = json.loads(RUN_FILE.read_text())
    if processes.stop(state["pid"], 15):
        log(f"stopped SeaweedFS {state['endpoint']} (pid {state['pid']}); data kept in {STATE / 'seaweed'}")
    remove_sockets(state["ports"].values())
    (STATE / "seaweed.pid").unlink(missing_ok=True)
    RUN_FILE.unlink()


def status() -> None:
    state = json.loads(RUN_FILE.read_text()) if RUN_FILE.exists() else None
    running = state is not None and processes.alive(state["pid"])
    print(f"{state['endpoint']}: running, pid {state['pid']}" if running and state else "stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start SeaweedFS on loopback (builds weed first if needed)")
    start.add_argument("--port", type=int, default=S3_PORT, help="S3 port; a free one if taken")
    sub.add_parser("down", help="stop it by PID, keeping its data")
    sub.add_parser("status")
    args = parser.parse_args()
    if args.command == "up":
        up(args.port)
    elif args.command == "down":
        down()
    else:
        status()


if __name__ == "__main__":
    main()
