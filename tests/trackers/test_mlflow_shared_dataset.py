"""Runs of one experiment that log the same dataset at the same moment all keep it.

MLflow's store looks for a dataset, then inserts it; two workers finishing runs of one experiment that used
the same dataset race on the insert, and the later one fails on the unique key (CI saw it on a corpus store
behind a real server on SQLite). Many runs finish at once here, behind a real server and in real PostgreSQL
and MariaDB databases, and each keeps its input.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ferryman.trackers.model import DatasetInput, Experiment, Run, RunStatus
from ferryman.trackers.registry import Credentials, open_reader, open_writer
from ferryman_dev.pytest_mlflow import MlflowServerFactory
from tests.trackers.contract import T0

EXPERIMENTS = 10  # the race is on a dataset's first insert into an experiment
RUNS = 8
DATASET = DatasetInput("train", "5ca1ab1e", "local", '{"uri": "/data/train"}', None, None, ())


@pytest.fixture(params=["server", "postgres", "mariadb"])
def destination(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "server":
        factory: MlflowServerFactory = request.getfixturevalue("mlflow_server_factory")
        return factory("shared-dataset", workers=4).url
    monkeypatch.chdir(tmp_path)  # a server database's artifacts go below the working directory
    return str(request.getfixturevalue(f"{request.param}_database"))


def test_runs_finishing_together_each_keep_the_dataset_they_share(destination: str) -> None:
    writer = open_writer(destination, Credentials())
    together = threading.Barrier(RUNS)  # a barrier is used again once every party passed it

    def finish(key: str, run: Run) -> None:
        together.wait()
        writer.finish_run(key, run)

    for e in range(EXPERIMENTS):
        experiment = writer.ensure_experiment(Experiment(f"exp-{e}", f"shared dataset {e}", {}, None))
        runs = [
            Run(f"r{i}", f"exp-{e}", name=f"trial {i}", status=RunStatus.FINISHED, start_time=T0,
                end_time=T0 + 1, inputs=[DATASET])
            for i in range(RUNS)
        ]
        keys = [writer.create_run(experiment, run, f"test:{e}/{run.key}") for run in runs]
        with ThreadPoolExecutor(RUNS) as pool:
            list(pool.map(finish, keys, runs))
    reader = open_reader(destination, Credentials())
    shared = [e for e in reader.experiments() if e.name.startswith("shared dataset")]
    assert len(shared) == EXPERIMENTS
    for experiment in shared:
        copies = list(reader.runs(experiment))
        assert len(copies) == RUNS
        assert all([i.name for i in run.inputs] == [DATASET.name] for run in copies), experiment.name
