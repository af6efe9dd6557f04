"""The local environment's background servers, by PID: start one detached with its log and PID file, tell
whether it still runs, stop it. One place, so every launcher counts a zombie and a stale PID file alike."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def alive(pid: int) -> bool:
    """The process exists and is no zombie. A server this process started and that died lingers as a zombie
    until reaped (a test session starts the control plane itself): reap it, and count it as gone. A PID of
    another user's process is a recycled one: not ours, so not running."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    with contextlib.suppress(ChildProcessError):  # not our child: its parent reaps it
        os.waitpid(pid, os.WNOHANG)
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def running(pid_file: Path) -> int | None:
    """The PID `pid_file` records, while that process runs."""
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None


def spawn(args: list[str], log: Path, pid_file: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """Start `args` in a session of its own (a Ctrl-C in the terminal does not reach it), its output appended
    to `log`, its PID written to `pid_file`."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, **popen
        )
    pid_file.write_text(str(proc.pid))
    return proc


def stop(pid: int, timeout: float) -> bool:
    """SIGTERM, then SIGKILL if it still runs after `timeout` seconds, each waited for up to `timeout`; False
    when it was not running."""
    if not alive(pid):
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):  # it may exit between the look and the signal
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not alive(pid):
            break
    return True


def wait_started(what: str, ready: Callable[[], object], timeout: float, log: Path, pid_file: Path) -> None:
    """Until ready() says so; SystemExit with the end of its log when the process dies first, or at timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if running(pid_file) is None:
            tail = log.read_text(errors="replace").splitlines()[-25:]
            raise SystemExit(f"{pid_file.stem} exited while starting:\n" + "\n".join(tail))
        time.sleep(0.2)
    raise SystemExit(f"{what} not ready after {timeout:.0f}s; see {log}")
