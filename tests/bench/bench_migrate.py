"""MLflow -> MLflow migration throughput: 20 runs x 5 keys x 1,000 steps (100,000 points) between two real
MLflow servers on loopback (SQLite backends, so one worker process each: SQLite serialises writers anyway and
several workers only add "database is locked" retries).

Measured in the same run, on the same destination server:
  (a) the destination's ingest ceiling: a tight writer that only sends pre-built points,
      `MlflowClient.log_batch` with 1,000 metrics per request from a pool of 4 threads (one run each),
      nothing read from a source;
  (b) the per-point copy migration guides show: `get_metric_history` then `log_metric` once per point. It is
      timed on a subset (one run, one key, 200 points) and extrapolated to the 100,000 points, because run in
      full it would take many minutes;
and ferryman's migration itself (copy only; the verification pass that reads both ends back is timed apart).
Goals: at least 0.8x the ceiling, at least 30x the per-point copy.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mlflow.entities import Metric

from ferryman.migrate.copy import migrate
from ferryman.migrate.plan import MigrationRequest
from ferryman_dev.mlflow import start_mlflow_server
from tests.migrate.sources import client, populate_bulk

RUNS, KEYS, STEPS = 20, 5, 1000
POINTS = RUNS * KEYS * STEPS
SUBSET = 200


def ceiling(url: str) -> float:
    """Points/s of a tight log_batch writer with a thread pool: the destination's ingest ceiling."""
    mlflow = client(url)
    experiment = mlflow.create_experiment(f"ceiling-{uuid.uuid4().hex[:6]}")
    start = int(time.time() * 1000)
    batches = {}
    for index in range(RUNS):
        run_id = mlflow.create_run(experiment, start_time=start, run_name=f"ceiling-{index}").info.run_id
        points = [Metric(f"metric_{k}", float(s), start + s, s) for k in range(KEYS) for s in range(STEPS)]
        batches[run_id] = [points[i : i + 1000] for i in range(0, len(points), 1000)]

    def write(run_id: str) -> None:
        for chunk in batches[run_id]:
            mlflow.log_batch(run_id, metrics=chunk)

    began = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, batches))
    return POINTS / (time.perf_counter() - began)


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
        destination_server = start_mlflow_server(Path(tmp) / "destination")
        try:
            for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                os.environ.pop(name, None)
            name = f"bench-{uuid.uuid4().hex[:6]}"
            source = populate_bulk(source_server.url, name, runs=RUNS, keys=KEYS, steps=STEPS)
            assert source.points == POINTS
            ceiling_before = ceiling(destination_server.url)
            began = time.perf_counter()
            report = migrate(
                MigrationRequest(
                    source_server.url,
                    destination_server.url,
                    experiments=[name],
                    workers=4,
                    verify=False,
                    artifacts=False,
                )
            )
            copy_seconds = time.perf_counter() - began
            assert report.ok and report.points_written == POINTS, report.summary()
            ceiling_after = ceiling(destination_server.url)
            began = time.perf_counter()
            verified = migrate(
                MigrationRequest(
                    source_server.url,
                    destination_server.url,
                    experiments=[name],
                    workers=4,
                    verify_only=True,
                    artifacts=False,
                )
            )
            verify_seconds = time.perf_counter() - began
            assert verified.ok, verified.summary()
            slow = per_point(source_server.url, destination_server.url, source.run_ids[0])
        finally:
            source_server.stop()
            destination_server.stop()
    rate = POINTS / copy_seconds
    ceiling_rate = (ceiling_before + ceiling_after) / 2
    print(
        f"   points: {POINTS:,} ({RUNS} runs x {KEYS} keys x {STEPS} steps), MLflow server -> MLflow server"
    )
    print(f"   ferryman migrate (copy):        {rate:9,.0f} points/s  ({copy_seconds:.1f} s)")
    print(
        f"   ingest ceiling (log_batch x4):  {ceiling_rate:9,.0f} points/s  "
        f"(before {ceiling_before:,.0f}, after {ceiling_after:,.0f})"
    )
    print(
        f"   per-point log_metric copy:      {slow:9,.0f} points/s  "
        f"(timed on {SUBSET} points, extrapolated: {POINTS / slow:,.0f} s for all)"
    )
    print(f"   verify-only pass (both ends read back, point by point): {verify_seconds:.1f} s")
    print(f"   ratio to ceiling:   {rate / ceiling_rate:5.2f}x  (goal >= 0.8x)")
    print(f"   ratio to per-point: {rate / slow:5.1f}x  (goal >= 30x)")
