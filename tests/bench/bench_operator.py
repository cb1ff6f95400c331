"""The operator at cluster scale: time for a CutoverPolicy Plan over 1,000 PyTorchJobs, and operator memory.

Two times: the operator's cold start (it lists and indexes every PyTorchJob before handling anything) and a
Plan on the running operator (policy created -> Ready with all 1,000 jobs planned and reported).

Runs on the local control plane (etcd + kube-apiserver, `make cluster-bins`), the operator as a subprocess
with the RBAC from deploy/. Baselines, measured in the same run against the same apiserver:
- time: a plain paginated list of the 1,000 PyTorchJobs (lightkube), the floor of any full re-list;
- memory: a fresh Python process that imports lightkube and holds that list in memory.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from lightkube import codecs

from ferryman.api.trainer import TrainerAPI
from ferryman.kube.resources import CutoverPolicy, PyTorchJob
from ferryman_dev.cluster import ClusterSpec, ControlPlane, repo_root
from ferryman_dev.operator import OperatorProcess, install_ferryman, operator_kubeconfig

JOBS = 1000
NAMESPACE = "bench"

_HOLD_LIST = """
import sys, time
from lightkube import Client, KubeConfig
import ferryman.kube.resources as r
client = Client(KubeConfig.from_file(sys.argv[1]))
jobs = [j.to_dict() for j in client.list(r.PyTorchJob, namespace="*", chunk_size=500)]
assert len(jobs) >= int(sys.argv[2])
for line in open("/proc/self/status"):
    if line.startswith("VmRSS:"):
        print(int(line.split()[1]) * 1024)
"""


def _jobs() -> list[dict[str, Any]]:
    path = repo_root() / "examples" / "pytorchjobs" / "multi-node-nccl.yaml"
    base = next(d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "PyTorchJob")
    jobs = []
    for index in range(JOBS):
        job = copy.deepcopy(base)
        job["metadata"] = {
            "name": f"job-{index:04d}",
            "namespace": NAMESPACE,
            "labels": {"batch": str(index % 7)},
        }
        jobs.append(job)
    return jobs


def _policy(name: str, namespace_selector: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "CutoverPolicy",
        "metadata": {"name": name},
        "spec": {"mode": "Plan", "namespaceSelector": namespace_selector},
    }


def _ready(client: Any, name: str, jobs: int) -> bool:
    status = client.get(CutoverPolicy, name).to_dict().get("status") or {}
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
    return ready and status.get("jobs") == jobs


def _wait(check: Any, started: float, operator: OperatorProcess, what: str) -> None:
    while not check():
        if time.perf_counter() - started > 300:
            raise RuntimeError(f"timed out waiting for {what}:\n" + operator.output()[-3000:])
        time.sleep(0.05)


def main() -> None:
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import Namespace

    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as scratch:
        plane = ControlPlane(
            Path(scratch), ClusterSpec(controllers=False, kwok=False, trainer_api=TrainerAPI.V2_2)
        )
        plane.start()
        try:
            install_ferryman(plane)
            client = plane.client()
            client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
            for job in _jobs():
                client.create(codecs.from_dict(job))

            started = time.perf_counter()
            listed = list(client.list(PyTorchJob, namespace="*", chunk_size=500))
            list_seconds = time.perf_counter() - started
            assert len(listed) == JOBS
            baseline_rss = int(
                subprocess.run(
                    [sys.executable, "-c", _HOLD_LIST, str(plane.kubeconfig), str(JOBS)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.strip()
            )

            kubeconfig = operator_kubeconfig(plane, Path(scratch) / "operator.kubeconfig")
            operator = OperatorProcess(kubeconfig, Path(scratch) / "operator.log", resync_seconds=1).start()
            try:
                deadline = time.monotonic() + 60
                while not operator.healthy():
                    if time.monotonic() > deadline:
                        raise RuntimeError("operator did not come up:\n" + operator.output()[-3000:])
                    time.sleep(0.1)
                # Cold start: the operator lists and indexes every PyTorchJob before handling anything; a
                # policy selecting no namespace turns Ready once that is done.
                started = time.perf_counter()
                client.create(codecs.from_dict(_policy("warm-up", {"matchLabels": {"no": "such"}})))
                _wait(lambda: _ready(client, "warm-up", 0), started, operator, "the warm-up policy")
                start_seconds = time.perf_counter() - started
                started = time.perf_counter()
                client.create(codecs.from_dict(_policy("bench", {})))
                _wait(lambda: _ready(client, "bench", JOBS), started, operator, "the plan")
                plan_seconds = time.perf_counter() - started
                operator_rss = operator.rss_bytes()
                forbidden = operator.forbidden()
            finally:
                operator.stop()
        finally:
            plane.stop()

    print(f"operator cold start, {JOBS} jobs: {start_seconds:7.2f} s (lists and indexes every PyTorchJob)")
    print(f"plan over {JOBS} PyTorchJobs:   {plan_seconds:7.2f} s ({JOBS / plan_seconds:,.0f} jobs/s)")
    print(f"baseline: list {JOBS} jobs:      {list_seconds:7.2f} s")
    print(f"ratio plan / list:              {plan_seconds / list_seconds:7.1f}x")
    print(f"operator memory (RSS):          {operator_rss / 2**20:7.1f} MiB")
    print(f"baseline: process holding list: {baseline_rss / 2**20:7.1f} MiB")
    print(f"ratio operator / baseline:      {operator_rss / baseline_rss:7.2f}x")
    if forbidden:
        print(f"RBAC refusals: {len(forbidden)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
