"""Crash and resume: SIGKILL `ferryman migrate` at random points, run it again, and prove that no point
was lost and none duplicated (the engine's own verification, plus an independent comparison through the
mlflow client)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest

from ferryman_dev.mlflow import MlflowServer
from tests.migrate.sources import client, populate_bulk

pytestmark = pytest.mark.mlflow

TRIALS = 10


def ferryman_migrate(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "FERRYMAN_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "ferryman", "migrate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_until_copying(destination: MlflowServer, name: str, process: subprocess.Popen[str]) -> None:
    mlflow = client(destination.url)
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
            wait_until_copying(mlflow_destination, name, process)
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
