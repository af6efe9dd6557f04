"""The README's first command, `make demo`, and its `make down`, run as written: in a state directory of their
own (DEVENV_STATE_DIR), so the demo's control plane, dev Qdrant and operator start beside this test session's and
beside a developer's own `make demo`, on free ports where the documented ones are taken."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
from pathlib import Path

from devenv import processes

REPO = Path(__file__).resolve().parents[2]


def test_make_demo_reconciles_the_examples_and_make_down_stops_everything(tmp_path: Path) -> None:
    state = tmp_path / "devenv"
    # Not this session's control plane, nor the MAKEFLAGS of a `make test` around us.
    ignored = ("KUBECONFIG", "DEVENV_API_PORT", "DEVENV_ETCD_PORT", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    env = {k: v for k, v in os.environ.items() if k not in ignored}
    env["DEVENV_STATE_DIR"] = str(state)
    pids: list[int] = []
    # The documented Qdrant port held (as another checkout's demo would): the demo must move to free ports.
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a connection in TIME_WAIT does not hold it
        with contextlib.suppress(OSError):  # already taken by someone else: the same situation
            holder.bind(("127.0.0.1", 6333))
            holder.listen()
        try:
            demo = subprocess.run(["make", "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
            out = demo.stdout
            assert demo.returncode == 0, out[-4000:] + demo.stderr[-4000:]
            assert "are not all free: using" in out and "qdrantconnection-minimal.yaml with the dev Qdrant's URL" in out
            assert "all Ready" in out
            # `kubectl wait` for the restored collection passed (the demo fails otherwise); it is in the last
            # table, and the demo showed what Qdrant itself reports for the complete example.
            last_table = out.rsplit("$ kubectl get qdrant -n demo", 1)[1]
            assert re.search(r"vectorcollection\.\S+/minimal-restored\s.*\bTrue\b", last_table), last_table
            assert re.search(r'"status": "(green|grey|yellow)"', out), out[-2000:]
            pid_files = sorted(state.rglob("*.pid"))
            assert {p.name for p in pid_files} >= {"operator.pid", "qdrant.pid"}, pid_files
            pids = [pid for p in pid_files if (pid := processes.running(p)) is not None]
            assert len(pids) >= 3, pid_files  # operator, dev Qdrant, and the control plane's servers
        finally:
            down = subprocess.run(["make", "down"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
    assert [pid for pid in pids if processes.alive(pid)] == []
