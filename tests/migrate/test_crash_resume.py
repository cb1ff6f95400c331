"""Crash and resume: SIGKILL `ferryman migrate` at random points, run it again, and prove that no point
was lost and none duplicated (the engine's own verification, plus an independent comparison through the
mlflow client); into a tracking server (REST) and, in bulk, into a PostgreSQL database."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from ferryman.trackers.model import Experiment, MetricBatch, Run
from ferryman.trackers.registry import open_writer
from ferryman_dev.mlflow import MlflowServer
from tests.migrate.sources import client, populate_bulk

pytestmark = pytest.mark.mlflow

TRIALS = 6


def ferryman_migrate(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "FERRYMAN_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "ferryman", "migrate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )


def wait_until_copying(destination: str, name: str, process: subprocess.Popen[str]) -> None:
    mlflow = client(destination)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if mlflow.get_experiment_by_name(name) is not None:
            return
        time.sleep(0.1)


@pytest.mark.timeout(2400)
def test_sigkill_at_random_points_then_resume(
    mlflow_source: MlflowServer, mlflow_destination: MlflowServer
) -> None:
    rng = random.Random(20260323)
    crashed_trials = trial = 0
    while crashed_trials < TRIALS:  # a trial whose copy finished before its kill does not count
        assert trial < 3 * TRIALS, f"only {crashed_trials} of {trial} trials were killed mid-copy"
        name = f"crash-{trial}-{uuid.uuid4().hex[:6]}"
        source = populate_bulk(mlflow_source.url, name, runs=3, keys=2, steps=1000)
        args = [
            "--from",
            mlflow_source.url,
            "--to",
            mlflow_destination.url,
            "--experiment",
            name,
            "--workers",
            str(rng.choice([1, 2, 4])),
            "--no-verify",
        ]
        kills = 0
        for _ in range(rng.choice([1, 1, 2])):  # some trials crash twice before completing
            process = ferryman_migrate(*args)
            wait_until_copying(mlflow_destination.url, name, process)
            time.sleep(rng.uniform(0.0, 1.5))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.communicate(timeout=60)
        crashed_trials += kills > 0
        final = ferryman_migrate(*args[:-1])  # this time with verification
        _, err = final.communicate(timeout=600)
        assert final.returncode == 0, f"trial {trial}: {err}"

        mlflow, original = client(mlflow_destination.url), client(mlflow_source.url)
        experiment = mlflow.get_experiment_by_name(name)
        runs = mlflow.search_runs([experiment.experiment_id])
        identities = Counter(r.data.tags["ferryman.source"] for r in runs)
        assert len(identities) == len(source.run_ids) and set(identities.values()) == {1}, identities
        for run in runs:
            source_run_id = run.data.tags["ferryman.source"].rsplit("/", 1)[1]
            for key in ("loss", "metric_1"):
                copied = [
                    (m.step, m.timestamp, m.value) for m in mlflow.get_metric_history(run.info.run_id, key)
                ]
                expected = [
                    (m.step, m.timestamp, m.value) for m in original.get_metric_history(source_run_id, key)
                ]
                assert sorted(copied) == sorted(expected), f"trial {trial}: run {source_run_id} key {key}"
        trial += 1


BULK_TRIALS = 2
BULK_STEPS = 15_000  # 3 runs x 2 keys: 90,000 points, a few seconds of bulk copying


def add_bulk_experiment(uri: str, name: str) -> None:
    """An experiment of 3 finished runs with 2 keys of BULK_STEPS points each, in an SQLite store."""
    writer = open_writer(uri)
    experiment = writer.ensure_experiment(Experiment(name, name))
    steps = list(range(BULK_STEPS))
    for index in range(3):
        run = Run(f"{name}-{index}", name, name=f"run-{index}", start_time=1000, end_time=2000)
        key = writer.create_run(experiment, run, run.key)
        writer.write_metrics(key, [
            MetricBatch(metric, steps, [1000 + s for s in steps], [s / (k + 7) for s in steps])
            for k, metric in enumerate(("loss", "metric_1"))
        ])
        writer.finish_run(key, run)
    writer.close()


@pytest.mark.timeout(1200)
def test_sigkill_during_a_bulk_copy_into_postgresql_then_resume(
    postgres_database: str, tmp_path: Path
) -> None:
    source_uri = f"sqlite:///{tmp_path / 'source.db'}"
    open_writer(postgres_database).close()  # MLflow's schema, made once before the trials
    rng = random.Random(20261206)
    crashed_trials = trial = 0
    while crashed_trials < BULK_TRIALS:  # a trial whose copy finished before its kill does not count
        assert trial < 3 * BULK_TRIALS, f"only {crashed_trials} of {trial} trials were killed mid-copy"
        name = f"crash-bulk-{trial}"
        add_bulk_experiment(source_uri, name)
        args = ["--from", source_uri, "--to", postgres_database, "--experiment", name,
                "--workers", str(rng.choice([1, 2, 3])), "--no-verify"]
        process = ferryman_migrate(*args, cwd=tmp_path)
        wait_until_copying(postgres_database, name, process)
        time.sleep(rng.uniform(0.0, 1.5))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            crashed_trials += 1
        process.communicate(timeout=60)
        final = ferryman_migrate(*args[:-1], cwd=tmp_path)  # this time with verification
        _, err = final.communicate(timeout=600)
        assert final.returncode == 0, f"trial {trial}: {err}"

        mlflow, original = client(postgres_database), client(source_uri)
        runs = mlflow.search_runs([mlflow.get_experiment_by_name(name).experiment_id])
        identities = Counter(r.data.tags["ferryman.source"] for r in runs)
        assert len(identities) == 3 and set(identities.values()) == {1}, identities
        expected_runs = {
            r.info.run_name: r.info.run_id
            for r in original.search_runs([original.get_experiment_by_name(name).experiment_id])
        }
        for run in runs:
            for key in ("loss", "metric_1"):
                copied = sorted(
                    (m.step, m.timestamp, m.value) for m in mlflow.get_metric_history(run.info.run_id, key)
                )
                expected = sorted(
                    (m.step, m.timestamp, m.value)
                    for m in original.get_metric_history(expected_runs[run.info.run_name], key)
                )
                assert copied == expected, f"trial {trial}: run {run.info.run_name} key {key}"
            assert run.data.metrics == {"loss": (BULK_STEPS - 1) / 7, "metric_1": (BULK_STEPS - 1) / 8}
        trial += 1
