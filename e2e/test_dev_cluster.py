"""`ferryman dev cluster up|env|down`, and no control plane process outlives whoever started it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: list[int], timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def logs(state_dir: Path) -> str:
    """The end of every component log, for failure messages."""
    return "".join(
        f"\n--- {log.name}\n{log.read_text(errors='replace')[-2000:]}" for log in state_dir.glob("*.log")
    )


def ferryman(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferryman", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_cli_starts_a_background_cluster_that_kubectl_can_use_and_stops_it(tmp_path: Path) -> None:
    env = {**os.environ, "FERRYMAN_DEV_CLUSTER_DIR": str(tmp_path / "dev-cluster")}
    env.pop("KUBECONFIG", None)
    up = ferryman("dev", "cluster", "up", "--no-controllers", "--trainer-api", "v2.1", env=env)
    try:
        assert up.returncode == 0, up.stderr + logs(tmp_path / "dev-cluster")
        assert "cluster ready at https://127.0.0.1:" in up.stderr
        state = json.loads((tmp_path / "dev-cluster" / "state.json").read_text())
        pids = [p["pid"] for p in state["processes"]]
        assert [p["name"] for p in state["processes"]] == ["etcd", "kube-apiserver"]
        etcd_dir = Path(state["etcd_dir"])
        assert etcd_dir.is_dir()

        shown = ferryman("dev", "cluster", "env", env=env)
        assert shown.returncode == 0, shown.stderr
        exported = subprocess.run(
            [
                "sh",
                "-c",
                f'eval "{shown.stdout.strip()}" && kubectl get crd trainjobs.trainer.kubeflow.org '
                "-o jsonpath='{.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties}'",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert exported.returncode == 0, exported.stderr
        assert "podTemplateOverrides" in exported.stdout  # the v2.1 flavour asked for

        again = ferryman("dev", "cluster", "up", env=env)
        assert "already running" in again.stderr, again.stderr + logs(tmp_path / "dev-cluster")
    finally:
        down = ferryman("dev", "cluster", "down", env=env)
    assert down.returncode == 0, down.stderr + logs(tmp_path / "dev-cluster")
    assert wait_gone(pids) == []
    assert not etcd_dir.exists()
    after = ferryman("dev", "cluster", "env", env=env)
    assert after.returncode != 0
    assert "no dev cluster is running" in after.stderr


def test_killing_the_python_process_leaves_no_control_plane_behind(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from ferryman_dev.cluster import ClusterSpec, ControlPlane
        spec = ClusterSpec(controllers=False, kwok=False, trainer_api=None)
        plane = ControlPlane(Path({str(tmp_path)!r}), spec)
        plane.start()
        print(json.dumps([p.pid for p in plane.processes]), flush=True)
        time.sleep(600)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        pids = json.loads(holder.stdout.readline())
        assert len(pids) == 2
        assert all(alive(pid) for pid in pids)
    finally:
        holder.send_signal(signal.SIGKILL)  # no atexit, no fixture finalizer: only PDEATHSIG is left
        holder.wait()
    assert wait_gone(pids) == []
