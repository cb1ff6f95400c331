"""The control plane's lifecycle: one component restarted alone, and no failed start leaves a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ferryman_dev.cluster import ClusterError, ClusterSpec, ControlPlane, Process

pytestmark = pytest.mark.cluster

SMALL = ClusterSpec(controllers=False, kwok=False, trainer_api=None)


def alive(pid: int) -> bool:
    return Process.start_time(pid) is not None


def wait_gone(pids: list[int], timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture
def small_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path, SMALL)
    try:
        yield plane.start()
    finally:
        plane.stop()


def config_map(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"kept": "yes"}}


def test_the_apiserver_and_etcd_restart_alone_and_keep_the_data(small_plane: ControlPlane) -> None:
    small_plane.apply(config_map("before"))
    etcd = small_plane.process("etcd")
    with pytest.raises(ClusterError, match="kube-apiserver is running"):
        small_plane.start_component("kube-apiserver")

    small_plane.stop_component("kube-apiserver")
    assert not small_plane.process("kube-apiserver").alive()
    small_plane.start_component("kube-apiserver")
    assert small_plane.process("etcd") == etcd  # untouched
    assert small_plane.apply(config_map("before"))["data"] == {"kept": "yes"}

    small_plane.restart_component("etcd")
    deadline = time.monotonic() + 30  # the apiserver reconnects to etcd on its own
    while True:
        try:
            got = small_plane.apply(config_map("after"))
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert got["metadata"]["name"] == "after"
    assert small_plane.running()
    saved = json.loads(small_plane.state_file.read_text())
    assert [p["pid"] for p in saved["processes"]] == [p.pid for p in small_plane.processes]


def test_a_plane_started_again_trusts_its_new_ca(tmp_path: Path) -> None:
    """`start` retries on new ports when a port was taken meanwhile, with a new PKI; the harness's own
    requests must trust the new CA (they kept the first one's: "certificate signature failure" in CI)."""
    plane = ControlPlane(tmp_path, SMALL)
    try:
        plane.start()
        plane.apply(config_map("first"))
        plane.stop()
        plane.start()
        assert plane.apply(config_map("second"))["data"] == {"kept": "yes"}
    finally:
        plane.stop()


def test_a_detached_start_that_fails_leaves_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned: list[int] = []
    spawn = ControlPlane.spawn

    def recording_spawn(self: ControlPlane, *args: Any, **kwargs: Any) -> Process:
        process = spawn(self, *args, **kwargs)
        spawned.append(process.pid)
        return process

    def broken(*_: Any, **__: Any) -> None:
        raise TypeError("'NoneType' object is not iterable")

    monkeypatch.setattr(ControlPlane, "spawn", recording_spawn)
    monkeypatch.setattr(ControlPlane, "install_crds", broken)
    plane = ControlPlane(tmp_path, ClusterSpec(controllers=False, kwok=False), detach=True)
    with pytest.raises(TypeError):
        plane.start()
    assert len(spawned) == 2
    assert wait_gone(spawned) == []
    assert not plane.state_file.exists()


def dev_cluster_up(state_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "FERRYMAN_DEV_CLUSTER_DIR": str(state_dir)}
    return subprocess.Popen(
        [sys.executable, "-m", "ferryman", "dev", "cluster", "up", "--no-controllers"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_apiserver_spawned(state_dir: Path, up: subprocess.Popen[str]) -> list[int]:
    """The pids recorded once kube-apiserver has been started (the cluster is not set up yet)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and up.poll() is None:
        try:
            state = json.loads((state_dir / "state.json").read_text())
        except (OSError, ValueError):
            state = {"processes": []}
        if any(p["name"] == "kube-apiserver" for p in state["processes"]):
            assert state["complete"] is False
            return [p["pid"] for p in state["processes"]]
        time.sleep(0.05)
    raise AssertionError(f"kube-apiserver was never started: {up.stderr.read() if up.stderr else ''}")


def test_a_sigterm_during_a_detached_start_stops_what_it_started(tmp_path: Path) -> None:
    """(SIGHUP is handled the same way.)"""
    up = dev_cluster_up(tmp_path)
    try:
        pids = wait_for_apiserver_spawned(tmp_path, up)
        up.send_signal(signal.SIGTERM)
        _, err = up.communicate(timeout=60)
    finally:
        up.kill()
    assert up.returncode != 0
    assert "while the control plane was starting" in err
    assert wait_gone(pids) == []
    assert not (tmp_path / "state.json").exists()


def test_a_killed_start_is_cleared_by_the_next_up_not_taken_for_a_cluster(tmp_path: Path) -> None:
    up = dev_cluster_up(tmp_path)
    try:
        orphans = wait_for_apiserver_spawned(tmp_path, up)
    finally:
        up.kill()  # no handler runs: the detached etcd and apiserver live on, recorded as incomplete
        up.wait()
    again = dev_cluster_up(tmp_path)
    try:
        _, err = again.communicate(timeout=300)
        assert again.returncode == 0, err
        assert "already running" not in err
        assert wait_gone(orphans) == []
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "ferryman", "dev", "cluster", "down"],
            env={**os.environ, "FERRYMAN_DEV_CLUSTER_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert down.returncode == 0, down.stderr
