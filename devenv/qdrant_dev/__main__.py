"""Command line: `serve` (foreground), `up` (background, waits for /readyz) and `down` (stop by PID)."""

from __future__ import annotations

import argparse
import importlib.metadata
import ipaddress
import logging
import os
import socket
import ssl
import sys
import time
import urllib.request
from pathlib import Path

import uvicorn
from uvicorn.protocols.http import h11_impl

from devenv import processes
from devenv.qdrant_dev import REPO_ROOT
from devenv.qdrant_dev.app import DevState, Faults, QdrantDevApp
from devenv.qdrant_dev.engine import MAX_SHARDS
from devenv.qdrant_dev.routes_service import QDRANT_VERSION

# The checkout's local-environment state, or DEVENV_STATE_DIR's (as the control plane's: a second demo beside it).
DEVENV = Path(os.environ.get("DEVENV_STATE_DIR", REPO_ROOT / ".devenv"))
DEFAULT_DATA = DEVENV / "qdrant-data"
PID_FILE = DEVENV / "qdrant.pid"
LOG_FILE = DEVENV / "qdrant.log"


def _loopback(host: str) -> str:
    if host == "localhost" or ipaddress.ip_address(host).is_loopback:
        return host
    raise SystemExit(f"refusing to listen on {host}: the dev server binds loopback addresses (127.0.0.0/8) only")


class FaultPhrases(dict[int, bytes]):
    """The reason phrases uvicorn's h11 protocol sends (it looks each response's up in h11_impl.STATUS_PHRASES;
    ASGI has no way to set one): the reason_phrase fault replaces that of every error answer."""

    def __init__(self, state: DevState) -> None:
        super().__init__(h11_impl.STATUS_PHRASES)
        self.state = state

    def __getitem__(self, status: int) -> bytes:
        phrase = self.state.faults.reason_phrase
        return phrase.encode("latin-1") if phrase and status >= 400 else super().__getitem__(status)


def serve(args: argparse.Namespace) -> None:
    host = _loopback(args.host)
    data_dir = Path(args.data_dir).resolve()
    state = DevState(api_key=args.api_key, read_only_api_key=args.read_only_api_key)
    state.faults = Faults(latency_ms=args.latency_ms, error_rate=args.error_rate)
    app = QdrantDevApp(data_dir, state, max_shards=args.max_shards).build()
    h11_impl.STATUS_PHRASES = FaultPhrases(state)  # this process serves this one app
    config = uvicorn.Config(
        app,
        http="h11",
        host=host,
        port=args.port,
        log_level="warning",
        access_log=False,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)

    def stop() -> None:
        server.should_exit = True

    state.stop = stop
    scheme = "https" if args.tls_cert else "http"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    print(
        f"qdrant dev server: Qdrant {QDRANT_VERSION} REST API on the qdrant-edge "
        f"{importlib.metadata.version('qdrant-edge-py')} engine -- a DEVELOPMENT AND "
        f"TEST engine, not Qdrant; point production at a real Qdrant. Listening on {scheme}://{host}:{args.port}, "
        f"data in {data_dir}, api key {'on' if args.api_key else 'off'}",
        flush=True,
    )
    server.run()


def _ready(url: str, deadline: float) -> bool:
    ctx = ssl._create_unverified_context()  # readiness probe only; TLS is verified by real clients
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1, context=ctx) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False


def up(args: argparse.Namespace) -> None:
    DEVENV.mkdir(exist_ok=True)
    url = f"http://{_loopback(args.host)}:{args.port}"
    if (pid := processes.running(PID_FILE)) is not None:
        print(f"dev Qdrant already running (pid {pid}) at {url}")
        return
    with socket.socket() as probe:
        if probe.connect_ex((args.host, args.port)) == 0:
            raise SystemExit(f"port {args.port} on {args.host} is taken by another process")
    cmd = [
        sys.executable,
        "-m",
        "devenv.qdrant_dev",
        "serve",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--data-dir",
        str(args.data_dir),
    ]
    if args.api_key:
        cmd += ["--api-key", args.api_key]
    proc = processes.spawn(cmd, LOG_FILE, PID_FILE, cwd=REPO_ROOT)
    if not _ready(url, time.monotonic() + 30):
        proc.terminate()
        PID_FILE.unlink(missing_ok=True)
        raise SystemExit(f"dev Qdrant did not become ready; see {LOG_FILE}")
    print(f"dev Qdrant (development/test engine) ready at {url} (pid {proc.pid}, data {args.data_dir}, log {LOG_FILE})")


def down(args: argparse.Namespace) -> None:
    if not PID_FILE.exists():
        print("dev Qdrant is not running (no PID file)")
        return
    pid = int(PID_FILE.read_text())
    processes.stop(pid, 10)
    PID_FILE.unlink(missing_ok=True)
    print(f"dev Qdrant stopped (pid {pid})")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devenv.qdrant_dev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "up"):
        p = sub.add_parser(name)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=6333)
        p.add_argument("--data-dir", default=str(DEFAULT_DATA))
        p.add_argument("--api-key", default=os.environ.get("QDRANT__SERVICE__API_KEY"))
        if name == "serve":
            p.add_argument("--read-only-api-key", default=None)
            p.add_argument("--tls-cert", default=None)
            p.add_argument("--tls-key", default=None)
            p.add_argument("--latency-ms", type=int, default=0)
            p.add_argument("--error-rate", type=float, default=0.0)
            p.add_argument(
                "--max-shards",
                type=int,
                default=MAX_SHARDS,
                help="refuse (400) collections with more shards than this; each is a local engine",
            )
    sub.add_parser("down")
    args = parser.parse_args()
    {"serve": serve, "up": up, "down": down}[args.command](args)


if __name__ == "__main__":
    main()
