"""The operator at cluster scale (issue #17): 5,000 PyTorchJobs in 20 namespaces beside 5,000 TrainJobs.

Measured on the local control plane (etcd + kube-apiserver, `make cluster-bins`), the operator as a subprocess
with the RBAC from deploy/, its resident memory sampled throughout:
- cold start: operator process started -> first reconcile (a policy selecting nothing turns Ready);
- Plan: a policy selecting every PyTorchJob created -> Ready with all of them planned;
- Mirror at 600/min, then at 3,600/min: TrainJobs created per second against the configured rate (each stops
  with a fifth of the jobs left unmirrored, for the restart);
- restart with the mirrors present: the operator stopped, the rate lowered to 600/min meanwhile, started
  again: process start -> first reconcile, and TrainJobs created in the first seconds after against the
  limit the saved token bucket allows (its burst, no fresh one, plus the new rate);
- peak RSS while starting, planning, mirroring and restarting.
Baselines, measured in the same run against the same apiserver: a plain paginated list of the same objects
(lightkube), the floor of any full re-list; a fresh Python process holding that list in memory; and a bare
client creating TrainJobs with as many under way as the Mirror keeps (batches.IN_FLIGHT), the most the
apiserver allows such a window here (it runs before the operator starts, so without its watch of TrainJobs).

    python tests/bench/bench_operator.py [--jobs N]     # N PyTorchJobs and N TrainJobs (default 5,000)
        [--rates 3600]                                  # only these Mirror rates (per minute)
        [--profile FILE]                                # py-spy's samples of the operator while mirroring

Every run starts a new control plane and creates the objects anew (concurrently); nothing is cached.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import yaml
from lightkube import ApiError, Client, KubeConfig, codecs
from lightkube.types import PatchType

from ferryman.api.trainer import TrainerAPI
from ferryman.controller.batches import IN_FLIGHT
from ferryman.convert.registry import convert_job
from ferryman.kube.resources import CutoverPolicy, PyTorchJob, TrainJob
from ferryman_dev.cluster import ClusterSpec, ControlPlane, repo_root
from ferryman_dev.operator import OperatorProcess, install_ferryman, operator_kubeconfig

JOBS = 5000
NAMESPACES = 20
CREATORS = 48  # concurrent creations while filling the cluster
BARE_NAMESPACE = "bench-bare"  # where the bare client's creations go
RATES = (600, 3600)  # creations per minute the Mirror is measured at
WINDOW = {600: 30.0, 3600: 120.0}  # seconds each rate is measured over at most
BURST = 10
RESTART_RATE = 600  # per minute: the rate lowered while the operator is stopped
RESTART_SECONDS = 10.0  # creations counted over this long after the restarted operator's first creation
TIMEOUT = httpx2.Timeout(120)  # the machine running this may be loaded: pages of 500 objects can be slow

_HOLD_LIST = """
import sys
import time
import httpx2
from lightkube import Client, KubeConfig
import ferryman.kube.resources as r
client = Client(KubeConfig.from_file(sys.argv[1]), timeout=httpx2.Timeout(120))
kinds = (r.PyTorchJob, r.TrainJob)
for attempt in range(10):  # a starved apiserver's watch cache can lag: 504 Too large resource version
    try:
        held = [o.to_dict() for kind in kinds for o in client.list(kind, namespace="*", chunk_size=500)]
        break
    except Exception:
        time.sleep(3)
assert len(held) >= int(sys.argv[2])
for line in open("/proc/self/status"):
    if line.startswith("VmRSS:"):
        print(int(line.split()[1]) * 1024)
"""


def _objects(jobs: int) -> list[dict[str, Any]]:
    """`jobs` PyTorchJobs and as many TrainJobs (not ferryman's: users' own), spread over the namespaces."""
    path = repo_root() / "examples" / "pytorchjobs" / "multi-node-nccl.yaml"
    base = next(d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "PyTorchJob")
    trainjob = convert_job(base).trainjob
    assert trainjob is not None
    objects = []
    for index in range(jobs):
        namespace = f"bench-{index % NAMESPACES:02d}"
        for template, name in ((base, f"job-{index:05d}"), (trainjob, f"native-{index:05d}")):
            obj = copy.deepcopy(template)
            obj["metadata"] = {"name": name, "namespace": namespace, "labels": {"batch": str(index % 7)}}
            objects.append(obj)
    return objects


async def _create_all(plane: ControlPlane, objects: list[dict[str, Any]], at_once: int = CREATORS) -> None:
    from lightkube import AsyncClient, KubeConfig

    client = AsyncClient(KubeConfig.from_file(plane.kubeconfig), field_manager="bench", timeout=TIMEOUT)
    gate = asyncio.Semaphore(at_once)

    async def create(obj: dict[str, Any]) -> None:
        async with gate:
            await client.create(codecs.from_dict(obj))

    try:
        await asyncio.gather(*(create(obj) for obj in objects))
    finally:
        await client.close()


def _bare_creations(plane: ControlPlane, client: Client, count: int) -> float:
    """TrainJobs per second a bare client creates with IN_FLIGHT creations under way, as the operator's
    Mirror keeps them: what the apiserver allows such a window here. They go in a namespace of their own,
    deleted at once afterwards."""
    trainjobs = [obj for obj in _objects(count) if obj["kind"] == "TrainJob"]
    for obj in trainjobs:
        obj["metadata"]["namespace"] = BARE_NAMESPACE
    started = time.perf_counter()
    asyncio.run(_create_all(plane, trainjobs, at_once=IN_FLIGHT))
    seconds = time.perf_counter() - started
    client.deletecollection(TrainJob, namespace=BARE_NAMESPACE)
    return count / seconds


def _list_all(client: Client) -> tuple[int, float]:
    """Objects in a paginated list of every PyTorchJob and TrainJob, and its seconds. A loaded apiserver's
    watch cache may lag behind etcd (504, too large resource version): such a try is repeated."""
    for _ in range(10):
        started = time.perf_counter()
        try:
            listed = sum(
                1 for kind in (PyTorchJob, TrainJob) for _ in client.list(kind, namespace="*", chunk_size=500)
            )
        except ApiError as error:
            if error.status.code != 504:
                raise
            time.sleep(3)
            continue
        return listed, time.perf_counter() - started
    raise RuntimeError("the apiserver answered no list in 10 tries")


def _policy(name: str, namespace_selector: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "CutoverPolicy",
        "metadata": {"name": name},
        "spec": {"mode": "Plan", "namespaceSelector": namespace_selector},
    }


def _status(client: Any, name: str) -> dict[str, Any]:
    return client.get(CutoverPolicy, name).to_dict().get("status") or {}


def _ready(status: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


class Memory:
    """The operator's RSS, sampled every 0.1 s in a thread (and the host's load); peaks by phase."""

    def __init__(self, operator: OperatorProcess) -> None:
        self.operator, self.phase = operator, "start"
        self.peaks: dict[str, int] = {}
        self.loads: dict[str, float] = {}  # the host's 1-minute load average, highest by phase
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            try:
                rss = self.operator.rss_bytes()
            except (OSError, AssertionError):
                continue
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)
            self.loads[self.phase] = max(self.loads.get(self.phase, 0.0), os.getloadavg()[0])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _wait(check: Callable[[], bool], operator: OperatorProcess, what: str, timeout: float = 900) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"timed out waiting for {what}:\n" + operator.output()[-3000:])
        if not operator.alive():
            raise RuntimeError(f"the operator died waiting for {what}:\n" + operator.output()[-3000:])
        time.sleep(0.1)
    return time.perf_counter() - started


def _set_rate(client: Any, per_minute: int) -> None:
    spec = {"mode": "Mirror", "rateLimit": {"creationsPerMinute": per_minute, "burst": BURST}}
    client.patch(CutoverPolicy, "bench", {"spec": spec}, patch_type=PatchType.MERGE)


def _mirror_rate(client: Any, operator: OperatorProcess, per_minute: int, until: int) -> tuple[float, int]:
    """Set the policy's Mirror rate; TrainJobs created per second from the first creation seen on, over at
    most WINDOW[per_minute] seconds or until `until` jobs are mirrored. Returns (rate, mirrored so far)."""
    _set_rate(client, per_minute)
    begin = _status(client, "bench").get("trainJobs", {}).get("present", 0)
    present = begin

    def moved() -> bool:
        nonlocal present
        present = _status(client, "bench").get("trainJobs", {}).get("present", 0)
        return present > begin or present >= until

    _wait(moved, operator, f"the first creation at {per_minute}/min")
    first, started = present, time.perf_counter()
    _wait(lambda: moved() and (present >= until or time.perf_counter() - started > WINDOW[per_minute]),
          operator, f"the Mirror at {per_minute}/min")
    return (present - first) / (time.perf_counter() - started), present


def _created(operator: OperatorProcess) -> float | None:
    """TrainJobs the operator process created for the bench policy (None before /metrics answers)."""
    try:
        return operator.metric("ferryman_trainjob_creations_total", policy="bench") or 0.0
    except OSError:
        return None


def _restart(client: Any, operator: OperatorProcess, memory: Memory) -> tuple[float, int, float]:
    """Stop the operator mid-Mirror, lower the rate to RESTART_RATE and create a policy selecting nothing (its
    first reconcile turns it Ready), start the operator again. Returns (seconds from the process start to that
    first reconcile, TrainJobs created over RESTART_SECONDS from the first creation seen on, and the limit
    over that time: the bucket's burst, no fresh one, plus the new rate)."""
    operator.stop()
    _set_rate(client, RESTART_RATE)
    client.create(codecs.from_dict(_policy("restarted", {"matchLabels": {"no": "such"}})))
    memory.phase = "restart"
    operator.start()
    start_seconds = _wait(lambda: _ready(_status(client, "restarted")), operator, "the first reconcile")
    seen = 0.0

    def creating() -> bool:
        nonlocal seen
        seen = _created(operator) or 0.0
        return seen > 0

    _wait(creating, operator, "a creation after the restart")
    first = time.perf_counter()
    time.sleep(RESTART_SECONDS)
    created = _created(operator)
    if created is None or not operator.alive():
        raise RuntimeError("the restarted operator died:\n" + operator.output()[-3000:])
    limit = BURST + RESTART_RATE / 60 * (time.perf_counter() - first)
    return start_seconds, int(created - seen), limit


def _profiler(operator: OperatorProcess, path: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the operator process from now until SIGINT, writing collapsed stacks to `path`."""
    assert operator.process is not None
    py_spy = Path(sys.executable).parent / "py-spy"
    pid = str(operator.process.pid)
    command = [str(py_spy), "record", "--pid", pid, "--output", str(path), "--format", "raw", "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=JOBS, help="PyTorchJobs, and as many TrainJobs")
    parser.add_argument("--rates", type=int, nargs="+", default=RATES, help="Mirror rates, per minute")
    parser.add_argument("--profile", type=Path, help="py-spy's samples of the Mirror (raw)")
    args = parser.parse_args(argv if argv is not None else [])
    jobs = args.jobs

    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import Namespace

    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as scratch:
        plane = ControlPlane(
            Path(scratch), ClusterSpec(controllers=False, kwok=False, trainer_api=TrainerAPI.V2_2)
        )
        plane.start()
        try:
            install_ferryman(plane)
            client = Client(KubeConfig.from_file(plane.kubeconfig), field_manager="bench", timeout=TIMEOUT)
            for name in [*(f"bench-{index:02d}" for index in range(NAMESPACES)), BARE_NAMESPACE]:
                client.create(Namespace(metadata=ObjectMeta(name=name)))
            started = time.perf_counter()
            asyncio.run(_create_all(plane, _objects(jobs)))
            fill_seconds = time.perf_counter() - started
            print(f"created {2 * jobs:,} objects in {fill_seconds:.1f} s", file=sys.stderr, flush=True)

            listed, list_seconds = _list_all(client)
            assert listed == 2 * jobs, listed
            hold = [sys.executable, "-c", _HOLD_LIST, str(plane.kubeconfig), str(2 * jobs)]
            baseline_rss = int(subprocess.run(hold, check=True, capture_output=True, text=True).stdout)
            bare_rate = _bare_creations(plane, client, jobs // 5)

            # Cold start: a policy selecting nothing is Ready at the operator's first reconcile.
            client.create(codecs.from_dict(_policy("warm-up", {"matchLabels": {"no": "such"}})))
            kubeconfig = operator_kubeconfig(plane, Path(scratch) / "operator.kubeconfig")
            operator = OperatorProcess(kubeconfig, Path(scratch) / "operator.log", resync_seconds=1).start()
            memory = Memory(operator)
            try:
                start_seconds = _wait(
                    lambda: _ready(_status(client, "warm-up")), operator, "the first reconcile"
                )
                memory.phase = "plan"
                client.create(codecs.from_dict(_policy("bench", {})))
                plan_seconds = _wait(
                    lambda: _ready(status := _status(client, "bench")) and status.get("jobs") == jobs,
                    operator,
                    "the plan",
                )
                rates = {}
                profiler = _profiler(operator, args.profile) if args.profile else None
                for per_minute in sorted(args.rates):  # the slower first: it mirrors fewer
                    memory.phase = f"mirror at {per_minute}/min"
                    rates[per_minute] = _mirror_rate(client, operator, per_minute, jobs - jobs // 5)
                if profiler is not None:
                    profiler.send_signal(signal.SIGINT)  # py-spy writes its samples on SIGINT
                    profiler.wait()
                restart_seconds, restart_created, restart_limit = _restart(client, operator, memory)
                forbidden = operator.forbidden()
            finally:
                memory.stop()
                operator.stop()
        finally:
            plane.stop()

    print(f"cluster: {jobs:,} PyTorchJobs in {NAMESPACES} namespaces and {jobs:,} TrainJobs "
          f"(created in {fill_seconds:.1f} s, {CREATORS} at once)")
    print(f"{'baseline: paginated list of all:':<38} {list_seconds:7.2f} s")
    timed = (("cold start to first reconcile", start_seconds), (f"plan over {jobs:,} jobs", plan_seconds))
    for what, seconds in timed:
        print(f"{what + ':':<38} {seconds:7.2f} s  ({seconds / list_seconds:6.1f}x the list)")
    what = f"baseline: bare client, {IN_FLIGHT} at once:"
    print(f"{what:<38} {bare_rate:7.1f} /s ({jobs // 5:,} TrainJobs created)")
    for per_minute, (rate, mirrored) in rates.items():
        what = f"mirror at {per_minute:,}/min (burst {BURST}):"
        print(f"{what:<38} {rate:7.1f} /s ({rate / (per_minute / 60):6.2f}x the rate, "
              f"{rate / bare_rate:4.2f}x the bare client; {mirrored:,} mirrored)")
    what = "restart (mirrors present) to reconcile:"
    print(f"{what:<38} {restart_seconds:7.2f} s  ({restart_seconds / list_seconds:6.1f}x the list)")
    what = f"created in {RESTART_SECONDS:.0f} s, at {RESTART_RATE}/min:"
    print(f"{what:<38} {restart_created:7d}    ({restart_created / restart_limit:6.2f}x the limit: burst "
          f"{BURST} + the rate over that time = {restart_limit:.0f}; {max(rates):,}/min before)")
    print(f"{'baseline: process holding the list:':<38} {baseline_rss / 2**20:7.1f} MiB")
    for phase, peak in memory.peaks.items():
        what = f"operator peak RSS, {phase}:"
        print(f"{what:<38} {peak / 2**20:7.1f} MiB ({peak / baseline_rss:5.2f}x)")
    loads = ", ".join(f"{phase} {load:.1f}" for phase, load in memory.loads.items())
    print(f"host load average (1 min), highest while: {loads}")
    if forbidden:
        print(f"RBAC refusals: {len(forbidden)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
