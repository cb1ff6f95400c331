"""W&B run directories: `.wandb` reading throughput (goal: at least 100,000 history rows/s) and W&B offline ->
MLflow migration against the destination's ingest ceiling (the same `ceiling` as bench_migrate).

Reading: one 0.31-shaped log of 200,000 rows x 5 metrics (per row a summary record and a history record in
the `nested_key` form, as SDK 0.31 writes them), framed by ferryman's `LogWriter` with wandb's own
protobufs; `wandb.log` writes about 2,000 rows/s, which would make the set-up dominate. Baseline, measured in
the same run on the same file: the leanest full decode in Python, the framing with every checksum checked plus
`Record.ParseFromString` of every record, values left undecoded. The reader does that and more (two passes:
metadata, then points; values to floats, per-key columns, timestamps to ms).

Migration: 20 runs x 5 keys x 1,000 rows of W&B offline logs -> a real MLflow server (SQLite, 2 workers),
copy only, against `ceiling()` measured on the same server before and after.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

from ferryman.migrate.copy import migrate
from ferryman.migrate.plan import MigrationRequest
from ferryman.trackers.wandb.datastore import read_payloads
from ferryman.trackers.wandb.offline import WandbDirReader
from ferryman_dev.mlflow import start_mlflow_server
from ferryman_dev.wandb_runs import write_synthetic_log
from tests.bench.bench_migrate import KEYS, POINTS, RUNS, STEPS, ceiling

ROWS, ROW_KEYS = 200_000, 5
GOAL = 100_000.0  # history rows/s
REPEATS = 3


Timing = tuple[float, float]  # (wall seconds, CPU seconds of this process)


def _now() -> Timing:
    return time.perf_counter(), time.process_time()


def _since(start: Timing) -> Timing:
    wall, cpu = _now()
    return wall - start[0], cpu - start[1]


def baseline(log: Path) -> Timing:
    """Time to frame and parse every record of the log."""
    from wandb.proto import wandb_internal_pb2 as pb

    began = _now()
    record = pb.Record()  # type: ignore[attr-defined]
    parse = record.ParseFromString
    for payload in read_payloads(log, []):
        parse(payload)
    return _since(began)


def read(root: Path) -> tuple[int, Timing]:
    """Points read through the reader (experiments, runs, metrics) and the time it took."""
    began = _now()
    reader = WandbDirReader(root)
    points = 0
    for experiment in reader.experiments():
        for run in reader.runs(experiment):
            points += sum(len(batch) for batch in reader.metrics(run))
    return points, _since(began)


def reading(tmp: Path) -> None:
    root = tmp / "read"
    log = root / "wandb" / "offline-run-20260101_000000-bench01" / "run-bench01.wandb"
    expected = write_synthetic_log(log, ROWS, ROW_KEYS, run_id="bench01")
    bases = [baseline(log) for _ in range(REPEATS)]
    runs = [read(root) for _ in range(REPEATS)]
    assert {points for points, _ in runs} == {expected}, (runs, expected)
    base = min(wall for wall, _ in bases), min(cpu for _, cpu in bases)
    seconds = min(t[0] for _, t in runs), min(t[1] for _, t in runs)
    rate, base_rate = ROWS / seconds[0], ROWS / base[0]
    size = log.stat().st_size / 1e6
    print(f"   .wandb log: {ROWS:,} rows x {ROW_KEYS} keys, {size:.0f} MB, best of {REPEATS}")
    print(
        f"   ferryman reader:          {rate:9,.0f} rows/s  ({seconds[0]:.2f} s; "
        f"{ROWS / seconds[1]:,.0f} rows per CPU second)"
    )
    print(
        f"   baseline (frame + parse): {base_rate:9,.0f} rows/s  ({base[0]:.2f} s; "
        f"{ROWS / base[1]:,.0f} rows per CPU second)"
    )
    print(f"   ratio to baseline: {rate / base_rate:5.2f}x   goal {GOAL:,.0f} rows/s: {rate / GOAL:5.2f}x")
    if rate < GOAL:
        print(f"   goal by CPU time (if the machine is busy): {ROWS / seconds[1] / GOAL:5.2f}x")


def migrating(tmp: Path) -> None:
    root = tmp / "migrate"
    project = f"bench-{uuid.uuid4().hex[:6]}"
    for index in range(RUNS):
        run_id = f"bench{index:03d}"
        write_synthetic_log(
            root / "wandb" / f"run-20260101_000000-{run_id}" / f"run-{run_id}.wandb",
            STEPS,
            KEYS,
            run_id=run_id,
            project=project,
        )
    server = start_mlflow_server(tmp / "mlflow", workers=2)
    try:
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(name, None)
        before = ceiling(server.url)
        began = time.perf_counter()
        report = migrate(
            MigrationRequest(f"wandb:{root}", server.url, workers=4, verify=False, artifacts=False)
        )
        seconds = time.perf_counter() - began
        assert report.ok and report.points_written == POINTS, report.summary()
        after = ceiling(server.url)
    finally:
        server.stop()
    rate, limit = POINTS / seconds, (before + after) / 2
    print(f"   W&B offline -> MLflow: {RUNS} runs x {KEYS} keys x {STEPS} rows = {POINTS:,} points")
    print(f"   ferryman migrate (copy):        {rate:9,.0f} points/s  ({seconds:.1f} s)")
    print(f"   ingest ceiling (log_batch x4):  {limit:9,.0f} points/s  ({before:,.0f}, then {after:,.0f})")
    print(f"   ratio to ceiling: {rate / limit:5.2f}x  (goal >= 0.8x)")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-wandb-") as tmp:
        reading(Path(tmp))
        migrating(Path(tmp))
