"""devenv/processes.py with real child processes: what the launchers of the control plane, the Qdrant servers
and the demo operator rely on to tell a running server from a dead one and to stop it by PID."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from devenv import processes
from tests.fixtures.operator import wait_for

pytestmark = pytest.mark.integration


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]


def test_a_server_that_died_is_gone_though_its_zombie_was_not_reaped(tmp_path: Path) -> None:
    proc = processes.spawn([sys.executable, "-c", "pass"], tmp_path / "log", tmp_path / "pid")
    wait_for(lambda: state(proc.pid) == "Z", 30, "the child to exit, unreaped")
    assert processes.running(tmp_path / "pid") is None
    assert not Path(f"/proc/{proc.pid}").exists(), "alive() reaps its own dead children"


def test_stop_terminates_then_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    log, pid_file = tmp_path / "log", tmp_path / "pid"
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
    proc = processes.spawn([sys.executable, "-c", stubborn + "time.sleep(60)"], log, pid_file)
    wait_for(lambda: "ready" in log.read_text(), 30, "the child to ignore SIGTERM")
    assert processes.running(pid_file) == proc.pid
    assert processes.stop(proc.pid, 0.5)
    assert not processes.alive(proc.pid) and processes.running(pid_file) is None
    assert not processes.stop(proc.pid, 0.5), "stopping what is not running is a no-op"


def test_a_pid_file_without_a_pid_names_nothing(tmp_path: Path) -> None:
    (tmp_path / "pid").write_text("not a pid")
    assert processes.running(tmp_path / "pid") is None and processes.running(tmp_path / "missing") is None
