"""The bulk path into MLflow databases: 20 runs x 5 keys x 1,000 steps (100,000 points) from an SQLite MLflow
store into a new SQLite file and into a new database of a real PostgreSQL server (Debian's, on loopback).

Measured in the same run, against the same kind of destination:
  (a) the raw bulk-insert limit: the same 100,000 rows into `metrics` and one `latest_metrics` row per series,
      `sqlite3` `executemany` in one transaction / PostgreSQL `COPY ... FROM STDIN`, nothing read or checked;
  (b) MLflow's own `SqlAlchemyStore.log_batch`, in-process, 1,000 points per call;
and ferryman's migration with its verification (every point compared: per series digests the database
computes, against the source's). Goal: copy + verify at least 0.5x the raw limit. Then a one-run
TensorBoard log of 54 points (written by tensorboardX) into a new SQLite file, end to end as a `ferryman
migrate` process (goal: under 2 s on an idle machine), next to MLflow's own creation of an empty store; a new
PostgreSQL database's schema given by ferryman (MLflow's recorded statements replayed) against MLflow's own
migrations, each a process of its own; and the peak RSS of migrating 5,000,000 generated points (no source
store to fill first) against 500,000 (goal: within 1.5x).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ferryman.migrate.copy import migrate
from ferryman.migrate.plan import MigrationRequest
from ferryman.trackers.mlflow.bulk import BulkWriter, copy_rows
from ferryman.trackers.mlflow.schema import MLFLOW_CREATES
from ferryman.trackers.model import (
    Artifact,
    Experiment,
    LoggedModel,
    MetricBatch,
    Outcome,
    RegisteredModel,
    Run,
)
from ferryman.trackers.registry import Credentials, open_writer
from ferryman_dev.postgres import PostgresServer, start_postgres

RUNS, KEYS, STEPS = 20, 5, 1000
TRIALS = 3  # the raw limit and ferryman alternately, best of each: the machine is shared
POINTS = RUNS * KEYS * STEPS
T0 = 1_748_779_200_000
_MEMORY = """
import resource, sys
sys.path[:0] = sys.argv[3:]
from bench_bulk import GeneratedSource
from ferryman.migrate.copy import Migration
from ferryman.migrate.plan import MigrationRequest
request = MigrationRequest("tensorboard:generated", f"sqlite:///{sys.argv[1]}/copy.db", workers=1,
                           artifacts=False, models=False)
report = Migration(request, reader=GeneratedSource(int(sys.argv[2]))).run()
assert report.ok and report.verified, report.summary()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


class GeneratedSource:
    """A source reader holding nothing: one run whose 5 series are generated 10,000 points at a time."""

    def __init__(self, points: int) -> None:
        self.steps = points // KEYS
        self.run = Run("generated", "generated", name="generated", start_time=T0, end_time=T0 + 1)

    def experiments(self, names: list[str] | None = None) -> Iterator[Experiment]:
        yield Experiment("generated", "generated")

    def runs(self, experiment: Experiment, since: int | None = None) -> Iterator[Run]:
        yield self.run

    def metrics(self, run: Run) -> Iterator[MetricBatch]:
        for k in range(KEYS):
            for start in range(0, self.steps, 10_000):
                steps = list(range(start, min(start + 10_000, self.steps)))
                yield MetricBatch(f"metric_{k}", steps, [T0 + s for s in steps], [s / (k + 3) for s in steps])

    def artifacts(self, run: Run) -> Iterator[Artifact]:
        return iter(())

    def registered_models(self) -> Iterator[RegisteredModel]:
        return iter(())

    def logged_models(self, experiment: Experiment) -> Iterator[LoggedModel]:
        return iter(())

    def outcomes(self) -> list[Outcome]:
        return []

    def close(self) -> None:
        pass


def series(run: int, keys: int, steps: int) -> list[MetricBatch]:
    return [
        MetricBatch(f"metric_{k}", list(range(steps)), [T0 + s * 1000 + run for s in range(steps)],
                    [(s * 7 + k) / 13 for s in range(steps)])
        for k in range(keys)
    ]


def populate(path: str, *, runs: int = RUNS, keys: int = KEYS, steps: int = STEPS) -> str:
    """An SQLite MLflow store of `runs` finished runs with `keys` series of `steps` points (the source)."""
    writer = open_writer(f"sqlite:///{path}", Credentials())
    experiment = writer.ensure_experiment(Experiment("bench", "bench"))
    for index in range(runs):
        run = Run(f"run-{index}", "bench", name=f"run-{index}", start_time=T0, end_time=T0 + steps * 1000)
        key = writer.create_run(experiment, run, f"bench:{index}")
        for offset in range(0, steps, 20_000):
            writer.write_metrics(key, [MetricBatch(b.key, b.steps[offset:offset + 20_000],
                                                   b.timestamps[offset:offset + 20_000],
                                                   b.values[offset:offset + 20_000])
                                       for b in series(index, keys, steps)])
        writer.finish_run(key, run)
    writer.close()
    return path


def raw_rows(run_id: str) -> list[tuple[str, float, int, int, bool, str]]:
    return [
        (b.key, v, t, s, False, run_id)
        for index in range(RUNS)
        for b in series(index, KEYS, STEPS)
        for s, t, v in zip(b.steps, b.timestamps, b.values, strict=True)
    ]


def raw_limit(uri: str) -> float:
    """Points/s of the raw bulk insert into a new store's `metrics` and `latest_metrics`."""
    writer = open_writer(uri, Credentials())
    assert isinstance(writer, BulkWriter)
    run_id = writer.create_run(writer.ensure_experiment(Experiment("raw", "raw")), Run("raw", "raw",
                                                                                       start_time=T0), "raw")
    rows = raw_rows(run_id)
    latest = {row[0]: row for row in rows}
    connection = writer.engine.raw_connection()
    began = time.perf_counter()
    cursor = connection.cursor()
    if writer.sql.dialect == "postgresql":
        copy_rows(cursor, writer.sql.copy_points, rows)
    else:
        cursor.executemany(writer.sql.insert_points.replace("OR IGNORE ", ""), rows)
    cursor.executemany(writer.sql.insert_latest, list(latest.values()))
    connection.commit()
    seconds = time.perf_counter() - began
    connection.close()
    writer.close()
    return POINTS / seconds


def mlflow_log_batch(uri: str) -> float:
    """Points/s of MLflow's own SqlAlchemyStore.log_batch, in-process, 1,000 points per call."""
    from mlflow.entities import Metric

    writer = open_writer(uri, Credentials())
    experiment = writer.ensure_experiment(Experiment("mlflow", "mlflow"))
    store = writer.backend.tracking
    calls = []
    for index in range(RUNS):
        run_id = writer.create_run(experiment, Run(f"m{index}", "mlflow", start_time=T0), f"mlflow:{index}")
        points = [Metric(b.key, v, t, s) for b in series(index, KEYS, STEPS)
                  for s, t, v in zip(b.steps, b.timestamps, b.values, strict=True)]
        calls += [(run_id, points[i:i + 1000]) for i in range(0, len(points), 1000)]
    began = time.perf_counter()
    for run_id, chunk in calls:
        store.log_batch(run_id, chunk, [], [])
    seconds = time.perf_counter() - began
    writer.close()
    return POINTS / seconds


def ferryman(source: str, destination: str) -> tuple[float, float]:
    """(points/s of copy + verification, seconds of it) of a whole migration."""
    began = time.perf_counter()
    report = migrate(MigrationRequest(f"sqlite:///{source}", destination, workers=2, artifacts=False))
    seconds = time.perf_counter() - began
    assert report.ok and report.verified and report.points_written == POINTS, report.summary()
    assert report.source_totals == report.destination_totals
    return POINTS / seconds, seconds


def tensorboard_log(directory: Path) -> str:
    """A TensorBoard log directory of one run, 2 scalars x 27 steps, written by tensorboardX."""
    from tensorboardX import SummaryWriter

    with SummaryWriter(str(directory / "run")) as writer:
        for step in range(27):
            writer.add_scalar("loss", 1 / (step + 1), step)
            writer.add_scalar("accuracy", step / 27, step)
    return f"tensorboard:{directory}"


def seconds_of(*argv: str, cwd: Path) -> float:
    began = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, cwd=cwd)
    return time.perf_counter() - began


_FAST_START = (
    "import sys\n"
    "from ferryman.trackers.mlflow.server_schema import prepare_server\n"
    "prepare_server(sys.argv[1])\n"
)


def schema_start(postgres: PostgresServer, root: Path) -> None:
    """A new PostgreSQL database's schema: ferryman's fast start (its recording made beforehand) against
    MLflow's own migrations, each a whole process, best of three."""
    fresh = iter(postgres.create_database(f"schema{trial}") for trial in range(7))
    subprocess.run([sys.executable, "-c", _FAST_START, next(fresh)], check=True)  # recorded if not yet
    ours = min(seconds_of(sys.executable, "-c", _FAST_START, next(fresh), cwd=root) for _ in range(3))
    mlflows = [sys.executable, "-c", MLFLOW_CREATES]
    theirs = min(seconds_of(*mlflows, next(fresh), str(root / "artifacts"), cwd=root) for _ in range(3))
    print(f"   a new PostgreSQL database's schema: ferryman's fast start {ours:.2f} s, MLflow's migrations "
          f"{theirs:.2f} s: {theirs / ours:.0f}x faster", flush=True)


def peak_rss(directory: Path, points: int) -> int:
    """Peak RSS (KiB) of a fresh process migrating one run of `points` points between SQLite stores."""
    directory.mkdir()
    here = str(Path(__file__).parent)
    done = subprocess.run([sys.executable, "-c", _MEMORY, str(directory), str(points), here, *sys.path],
                          check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as tmp, start_postgres() as postgres:
        root = Path(tmp)
        os.chdir(root)  # a server database's artifacts go below the working directory
        source = populate(str(root / "source.db"))
        print(f"   points: {POINTS:,} ({RUNS} runs x {KEYS} keys x {STEPS} steps), SQLite store -> new "
              f"SQLite file / new PostgreSQL database (its schema made beforehand); best of {TRIALS}, the "
              f"raw limit and ferryman alternately; load average {os.getloadavg()[0]:.1f}", flush=True)
        for name, fresh in (
            ("SQLite", lambda label: f"sqlite:///{root / label}.db"),
            ("PostgreSQL", lambda label: postgres.create_database(label)),
        ):
            theirs = mlflow_log_batch(fresh("mlflow"))
            destinations = [fresh(f"ferryman{trial}") for trial in range(TRIALS)]
            if name == "PostgreSQL":  # the schema (replayed from a recording) is not the copy's time
                for destination in destinations:
                    open_writer(destination, Credentials()).close()
            limits, rates = [], []
            for trial, destination in enumerate(destinations):  # alternating: both see the same load
                limits.append(raw_limit(fresh(f"raw{trial}")))
                rates.append(ferryman(source, destination))
            limit = max(limits)
            rate, seconds = max(rates)
            print(
                f"   {name:<10} ferryman copy + verify {rate:9,.0f} points/s ({seconds:.1f} s) | MLflow "
                f"log_batch {theirs:8,.0f} | raw limit {limit:9,.0f} | {rate / limit:4.2f}x the raw limit "
                f"(goal >= 0.5x), {rate / theirs:4.1f}x MLflow's log_batch",
                flush=True,
            )
        ferryman_cli = [sys.executable, "-m", "ferryman", "migrate", "--from", tensorboard_log(root / "tb")]
        seconds_of(*ferryman_cli, "--to", f"sqlite:///{root / 'warm.db'}", cwd=root)  # the schema template
        small = min(seconds_of(*ferryman_cli, "--to", f"sqlite:///{root / f'small{trial}.db'}", cwd=root)
                    for trial in range(TRIALS))
        schema = seconds_of(sys.executable, "-c", MLFLOW_CREATES, f"sqlite:///{root / 'empty.db'}",
                            str(root / "artifacts"), cwd=root)
        print(f"   one TensorBoard run of 54 points into a new SQLite file, `ferryman migrate` end to end: "
              f"{small:.2f} s, best of {TRIALS} (goal < 2 s on an idle machine); MLflow creating an empty "
              f"store: {schema:.2f} s; load average {os.getloadavg()[0]:.1f}", flush=True)
        schema_start(postgres, root)
        small_rss = peak_rss(root / "rss-small", 500_000)
        large_rss = peak_rss(root / "rss-large", 5_000_000)
    print(f"   peak RSS copying + verifying one generated run into SQLite: {small_rss / 1024:.0f} MiB for "
          f"500,000 points, {large_rss / 1024:.0f} MiB for 5,000,000: {large_rss / small_rss:.2f}x "
          "(goal <= 1.5x)")
