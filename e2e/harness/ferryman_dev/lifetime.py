"""Servers that die with the process that started them, even when it is killed (a SIGTERMed pytest runs no
fixture teardown), and the free ports they listen on.

The kernel's parent-death signal (PR_SET_PDEATHSIG) reaches only the direct child, is cleared when that child
changes user (PostgreSQL and MariaDB run as their system users), and never reaches the workers a server forks
(MLflow's uvicorn). So a fixture server runs under `python -m ferryman_dev.lifetime COMMAND...`: a small
supervisor that gets the parent-death signal, is the child subreaper of everything below it (orphans become
its children, never init's), passes SIGTERM on to its command, and when the command ends, or a grace period
after a signal, kills every process left below it.

    subprocess.Popen(supervised(command), preexec_fn=die_with_parent(signal.SIGTERM))
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE_SECONDS = 10  # how long a signalled command may take to stop before everything below is killed


def _prctl(option: int, value: int) -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(option, value) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def free_port() -> int:
    """A port of 127.0.0.1 no one listens on now (another process may take it before the server binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent(signum: int = signal.SIGKILL) -> Callable[[], None]:
    """preexec_fn: start a new session and get `signum` when the calling process goes away (exits at once
    if it already has)."""
    parent = os.getpid()

    def preexec() -> None:
        os.setsid()
        _prctl(PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def supervised(command: list[str]) -> list[str]:
    """`command` run under the supervisor; start it with `preexec_fn=die_with_parent(signal.SIGTERM)`."""
    return [sys.executable, "-m", "ferryman_dev.lifetime", *command]


def _children() -> list[int]:
    """This process's children (with the subreaper bit: every orphan of the tree below it)."""
    me = str(os.getpid())
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        if stat.rpartition(")")[2].split()[1] == me:
            found.append(int(entry.name))
    return found


def _kill_everything_below() -> None:
    while children := _children():
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


class _Stop(Exception):
    pass


def _stop(signum: int, _frame: object) -> None:
    raise _Stop(signum)


def main(command: list[str]) -> int:
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    child = subprocess.Popen(command)
    try:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, _stop)
        code = child.wait()
    except _Stop:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        child.terminate()
        try:
            code = child.wait(GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            code = -signal.SIGKILL
    _kill_everything_below()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
