"""The fixture servers (MLflow, PostgreSQL, MariaDB) stop with the process that started them, even when it
is SIGTERMed and runs no teardown (ferryman_dev.lifetime): no server, worker or backend is left behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ferryman_dev.waiting import wait_for

pytestmark = pytest.mark.mlflow

STARTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from ferryman_dev.mariadb import start_mariadb
    from ferryman_dev.mlflow import start_mlflow_server
    from ferryman_dev.postgres import start_postgres

    servers = [start_postgres(), start_mariadb(), start_mlflow_server(Path(sys.argv[1]))]
    print("started", *(server.root for server in servers[:2]), flush=True)
    time.sleep(600)
    """
)


def descendants(root: int) -> set[int]:
    """Every living process below `root`, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_servers_stop_when_the_process_that_started_them_is_killed(tmp_path: Path) -> None:
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(tmp_path / "mlflow")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert starter.stdout is not None
        started, *roots = starter.stdout.readline().split()
        assert started == "started"
        servers = descendants(starter.pid)
        commands = {Path(f"/proc/{pid}/cmdline").read_bytes() for pid in servers}
        for name in (b"postgres", b"mariadbd", b"mlflow", b"uvicorn"):
            assert any(name in command for command in commands), name
        starter.send_signal(signal.SIGTERM)
        starter.wait(30)
        wait_for(lambda: not any(map(alive, servers)), "every server process to stop", timeout=60)
        for root in roots:  # the database servers' temporary directories, left as a killed run leaves them
            shutil.rmtree(root)
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
