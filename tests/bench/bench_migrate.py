"""MLflow -> MLflow through the REST API: 20 runs x 5 keys x 5,000 steps (500,000 points) between two real
MLflow servers on loopback (SQLite backends, so one worker process each: SQLite serialises writers anyway and
several workers only add "database is locked" retries).

Measured in the same run, on the same destination server:
  (a) the destination's ingest ceiling: a tight writer posting pre-built 1,000-point `log-batch` bodies from
      2 client threads, nothing read from a source (before and after ferryman, averaged);
  (b) ferryman's migration with its default full verification: the copy alone (its copying phase) and copy
      plus verification (the whole migration), each as a ratio to (a);
  (c) the verification's read-back alone through each exact history API of the server, with the server's
      CPU seconds per point for writing (a) and for each read: when the server is the wall, copy plus
      verification cannot beat write / (write + read) of the ceiling;
  (d) the per-point copy migration guides show: `get_metric_history` then `log_metric` once per point, timed
      on a subset (one run, one key, 200 points) and extrapolated.
Goals: copy plus verification at least 0.9x the ceiling, at least 30x the per-point copy.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from ferryman.migrate.copy import migrate
from ferryman.migrate.plan import MigrationRequest
from ferryman.trackers.mlflow.backend import HISTORY_BULK_PATH
from ferryman.trackers.mlflow.fields import HISTORY_PAGE
from ferryman_dev.mlflow import MlflowServer, start_mlflow_server
from tests.migrate.sources import client, populate_bulk

RUNS, KEYS, STEPS = 20, 5, 5000
POINTS = RUNS * KEYS * STEPS
SUBSET = 200
CLIENT_THREADS = 2


def server_cpu(server: MlflowServer) -> float:
    """CPU seconds used so far by the server's processes (its own process group)."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == server.process.pid:
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def timed(server: MlflowServer, work: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, the server's CPU seconds) of `work`."""
    cpu, began = server_cpu(server), time.perf_counter()
    work()
    return time.perf_counter() - began, server_cpu(server) - cpu


def ceiling(server: MlflowServer) -> tuple[float, float]:
    """(points/s, server CPU seconds) of a tight writer posting pre-built 1,000-point log-batch bodies."""
    mlflow = client(server.url)
    experiment = mlflow.create_experiment(f"ceiling-{uuid.uuid4().hex[:6]}")
    start = int(time.time() * 1000)
    bodies = []
    for index in range(RUNS):
        run_id = mlflow.create_run(experiment, start_time=start, run_name=f"ceiling-{index}").info.run_id
        points = [
            {"key": f"metric_{k}", "value": s / 7 + k, "timestamp": start + s, "step": s}
            for k in range(KEYS)
            for s in range(STEPS)
        ]
        for at in range(0, len(points), 1000):
            bodies.append(json.dumps({"run_id": run_id, "metrics": points[at : at + 1000]}))
    pending, lock = iter(bodies), threading.Lock()

    def post() -> None:
        with requests.Session() as session:
            while True:
                with lock:
                    body = next(pending, None)
                if body is None:
                    return
                response = session.post(
                    f"{server.url}/api/2.0/mlflow/runs/log-batch",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=120,
                )
                assert response.status_code == 200, response.text

    def write() -> None:
        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            for future in [pool.submit(post) for _ in range(CLIENT_THREADS)]:
                future.result()

    seconds, cpu = timed(server, write)
    return POINTS / seconds, cpu


def read_back(server: MlflowServer, name: str, path: str) -> tuple[float, float]:
    """(points/s, server CPU seconds) of reading every series of the experiment once, one request per
    series (they all fit one answer), from CLIENT_THREADS threads as the verification does."""
    mlflow = client(server.url)
    experiment = mlflow.get_experiment_by_name(name).experiment_id
    series = [(run.info.run_id, key) for run in mlflow.search_runs([experiment]) for key in run.data.metrics]
    local = threading.local()

    def read(item: tuple[str, str]) -> int:
        session = local.__dict__.setdefault("session", requests.Session())
        run_id, key = item
        response = session.get(
            f"{server.url}{path}",
            params={"run_id": run_id, "metric_key": key, "max_results": HISTORY_PAGE},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        return len(response.json()["metrics"])

    counted: list[int] = []

    def read_all() -> None:
        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            counted.extend(pool.map(read, series))

    seconds, cpu = timed(server, read_all)
    assert sum(counted) == POINTS
    return POINTS / seconds, cpu


def per_point(source_url: str, destination_url: str, run_id: str) -> float:
    """Points/s of the per-point copy (read the history, log_metric each point), on a subset."""
    source, destination = client(source_url), client(destination_url)
    experiment = destination.create_experiment(f"per-point-{uuid.uuid4().hex[:6]}")
    target = destination.create_run(experiment).info.run_id
    began = time.perf_counter()
    history = source.get_metric_history(run_id, "loss")[:SUBSET]
    for point in history:
        destination.log_metric(target, point.key, point.value, point.timestamp, point.step)
    return len(history) / (time.perf_counter() - began)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as tmp:
        source_server = start_mlflow_server(Path(tmp) / "source")
        destination = start_mlflow_server(Path(tmp) / "destination")
        try:
            for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                os.environ.pop(variable, None)
            name = f"bench-{uuid.uuid4().hex[:6]}"
            source = populate_bulk(source_server.url, name, runs=RUNS, keys=KEYS, steps=STEPS)
            assert source.points == POINTS
            ceiling_before, write_cpu_before = ceiling(destination)
            reports = []
            request = MigrationRequest(
                source_server.url, destination.url, [name], workers=4, artifacts=False, models=False
            )
            seconds, migration_cpu = timed(destination, lambda: reports.append(migrate(request)))
            report = reports[0]
            assert report.ok and report.verified and report.points_written == POINTS, report.summary()
            ceiling_after, write_cpu_after = ceiling(destination)
            reads = {
                "get-history": read_back(destination, name, "/api/2.0/mlflow/metrics/get-history"),
                "get-history-bulk": read_back(destination, name, HISTORY_BULK_PATH),
            }
            slow = per_point(source_server.url, destination.url, source.run_ids[0])
        finally:
            source_server.stop()
            destination.stop()
    ceiling_rate = (ceiling_before + ceiling_after) / 2
    write_cpu = (write_cpu_before + write_cpu_after) / 2
    copy_rate, total_rate = POINTS / report.copy_seconds, POINTS / seconds
    micro = 1e6 / POINTS
    print(f"   points: {POINTS:,} ({RUNS} runs x {KEYS} keys x {STEPS} steps), MLflow server -> server")
    print(
        f"   ingest ceiling (log-batch, {CLIENT_THREADS} threads): {ceiling_rate:9,.0f} points/s  "
        f"(before {ceiling_before:,.0f}, after {ceiling_after:,.0f}; server busy "
        f"{write_cpu / POINTS * ceiling_rate:.0%})"
    )
    print(f"   ferryman copy alone:               {copy_rate:9,.0f} points/s  ({report.copy_seconds:.1f} s)")
    print(
        f"   ferryman copy + full verification: {total_rate:9,.0f} points/s  ({seconds:.1f} s; server busy "
        f"{migration_cpu / seconds:.0%})"
    )
    print(
        f"   per-point log_metric copy:           {slow:9,.0f} points/s  "
        f"(timed on {SUBSET} points, extrapolated: {POINTS / slow:,.0f} s for all)"
    )
    print(
        f"   destination server CPU per point: write (ceiling) {write_cpu * micro:.0f} us, "
        f"ferryman's migration {migration_cpu * micro:.0f} us"
    )
    for api, (rate, cpu) in reads.items():
        bound = write_cpu / (write_cpu + cpu)
        print(
            f"   read-back alone via {api + ':':17s} {rate:9,.0f} points/s, server CPU {cpu * micro:.0f} us "
            f"per point = {cpu / write_cpu:.2f}x a write; bound on copy + verify: {bound:.2f}x the ceiling"
        )
    print(f"   ratio to ceiling, copy alone:          {copy_rate / ceiling_rate:5.2f}x")
    print(f"   ratio to ceiling, copy + verification: {total_rate / ceiling_rate:5.2f}x  (goal >= 0.9x)")
    print(f"   ratio to per-point: {total_rate / slow:5.1f}x  (goal >= 30x)")
