"""Neptune export throughput: 4 runs x 5 keys x 50,000 steps (1,000,000 float-series points).

Writing: ferryman's `NeptuneExportWriter` (journal file per `write_metrics` call of 10,000 points, then the
compaction into `_part_0` at `finish_run`) against a baseline measured in the same run: one `pq.write_table`
per run of the finished table, the least any writer of this layout must do.

Reading: ferryman's `NeptuneExportReader.metrics` (schema checks, grouping per key, integral steps, batches of
Python lists as the engine consumes them) against the straightforward way of handing the same points to
Python: reading each part's four columns with pyarrow and `to_pylist()` (Decimal steps, datetime stamps).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from ferryman.trackers.model import Experiment, MetricBatch, Run
from ferryman.trackers.neptune.reader import NeptuneExportReader
from ferryman.trackers.neptune.writer import NeptuneExportWriter

RUNS, KEYS, STEPS, CHUNK = 4, 5, 50_000, 10_000
T0 = 1_700_000_000_000


def write(root: Path) -> float:
    started = time.perf_counter()
    writer = NeptuneExportWriter(root)
    experiment_key = writer.ensure_experiment(Experiment("bench", "bench/project"))
    for index in range(RUNS):
        run = Run(f"run-{index}", "bench", start_time=T0)
        run_key = writer.create_run(experiment_key, run, f"bench/run-{index}")
        for key in range(KEYS):
            for low in range(0, STEPS, CHUNK):
                steps = list(range(low, low + CHUNK))
                batch = MetricBatch(f"metric_{key}", steps, [T0 + s for s in steps], [s * 0.5 for s in steps])
                writer.write_metrics(run_key, [batch])
        writer.finish_run(run_key, run)
    return time.perf_counter() - started


def write_baseline(root: Path, parts: list[Path]) -> float:
    tables = [pq.read_table(part) for part in parts]
    started = time.perf_counter()
    for index, table in enumerate(tables):
        pq.write_table(table, root / f"baseline-{index}.parquet", compression="snappy")
    return time.perf_counter() - started


def read(root: Path) -> tuple[int, float]:
    started = time.perf_counter()
    reader = NeptuneExportReader(root)
    points = sum(
        len(batch) for e in reader.experiments() for r in reader.runs(e) for batch in reader.metrics(r)
    )
    return points, time.perf_counter() - started


def read_baseline(parts: list[Path]) -> tuple[int, float]:
    started = time.perf_counter()
    points = 0
    for part in parts:
        table = pq.read_table(part, columns=["attribute_path", "step", "timestamp", "float_value"])
        columns = [table.column(name).to_pylist() for name in table.column_names]
        points += sum(value is not None for value in columns[3])
    return points, time.perf_counter() - started


def main() -> None:
    total = RUNS * KEYS * STEPS
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "export"
        wrote = write(root)
        parts = sorted((root / "data").rglob("*_part_*.parquet"))
        baseline_write = write_baseline(Path(tmp), parts)
        print(
            f"write: {total / wrote:,.0f} points/s (baseline one write_table per run: "
            f"{total / baseline_write:,.0f} points/s, ratio {baseline_write / wrote:.2f})"
        )
        base_points, base_seconds = read_baseline(parts)
        best = float("inf")
        for _ in range(2):
            points, seconds = read(root)
            assert points == base_points == total
            best = min(best, seconds)
        print(
            f"read:  {total / best:,.0f} points/s (baseline pyarrow columns to Python lists: "
            f"{total / base_seconds:,.0f} points/s, ratio {base_seconds / best:.2f})"
        )


if __name__ == "__main__":
    main()
