"""Source data written by the real mlflow client, for the migration tests and the benchmark."""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

LONG_PARAM = "x" * 7000  # longer than MLflow's 6,000-character param limit


@dataclass
class SourceExperiment:
    name: str
    experiment_id: str
    run_ids: list[str]
    points: int


def client(url: str) -> MlflowClient:
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        os.environ.pop(name, None)
    return MlflowClient(tracking_uri=url, registry_uri=url)


def write_metrics(mlflow: MlflowClient, run_id: str, keys: int, steps: int, start: int) -> int:
    """`keys` series of `steps` points each, timestamps one second apart, through log_batch."""
    metrics = [
        Metric(f"metric_{k}" if k else "loss", math.sin(step / 7 + k) * 10 + k, start + step * 1000, step)
        for k in range(keys)
        for step in range(steps)
    ]
    for offset in range(0, len(metrics), 1000):
        mlflow.log_batch(run_id, metrics=metrics[offset : offset + 1000])
    return len(metrics)


def populate_rich(url: str, name: str, *, steps: int = 300) -> SourceExperiment:
    """An experiment with everything a migration must carry: nested runs, params (one too long for MLflow),
    tags, notes, statuses and times, metrics with NaN and system metrics, artifacts, a registered model with
    stage and alias, and an MLflow 3 logged model."""
    mlflow = client(url)
    experiment_id = mlflow.create_experiment(name, tags={"team": "vision"})
    start = int(time.time() * 1000) - 86_400_000
    parent = mlflow.create_run(experiment_id, start_time=start, run_name="sweep", tags={"mlflow.user": "ana"})
    parent_id = parent.info.run_id
    mlflow.log_batch(
        parent_id, params=[Param("sweep", "lr")], tags=[RunTag("mlflow.note.content", "notes\nhere")]
    )
    mlflow.set_terminated(parent_id, "FINISHED", end_time=start + 3_600_000)
    run_ids = [parent_id]
    points = 0
    for index, status in enumerate(["FINISHED", "FAILED", "RUNNING"]):
        child = mlflow.create_run(
            experiment_id,
            start_time=start + index * 1000,
            run_name=f"trial-{index}",
            tags={"mlflow.parentRunId": parent_id, "mlflow.user": "ben", "lr": str(index)},
        )
        run_id = child.info.run_id
        run_ids.append(run_id)
        params = [Param("lr", str(0.1 * (index + 1))), Param("optimizer", "adam")]
        if index == 0:
            params.append(Param("prompt", LONG_PARAM[:6000]))
        mlflow.log_batch(run_id, params=params)
        points += write_metrics(mlflow, run_id, keys=3, steps=steps, start=start)
        mlflow.log_batch(
            run_id,
            metrics=[
                Metric("system/gpu_utilization", 87.5, start + 5, 0),
                Metric("val_nan", math.nan, start + 6, 0),
                Metric("val_nan", math.inf, start + 7, 1),
            ],
        )
        points += 3
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "model").mkdir()
            (Path(tmp) / "model" / "weights.bin").write_bytes(os.urandom(50_000 + index))
            (Path(tmp) / "model" / "MLmodel").write_text(f"run_id: {run_id}\nflavors: {{}}\n")
            (Path(tmp) / "confusion.txt").write_text("tp fp\nfn tn\n")
            mlflow.log_artifacts(run_id, tmp)
        if status == "RUNNING":
            continue
        mlflow.set_terminated(run_id, status, end_time=start + 600_000 + index)
    model = f"{name}-model"
    mlflow.create_registered_model(model, tags={"owner": "ana"}, description="a model")
    first = run_ids[1]
    version = mlflow.create_model_version(model, f"runs:/{first}/model", run_id=first, tags={"k": "v"})
    mlflow.transition_model_version_stage(model, version.version, "Staging")
    mlflow.set_registered_model_alias(model, "champion", version.version)
    logged = mlflow.create_logged_model(experiment_id, name="clf", source_run_id=first, params={"depth": "3"})
    mlflow.finalize_logged_model(logged.model_id, "READY")
    return SourceExperiment(name, experiment_id, run_ids, points)


def populate_bulk(url: str, name: str, *, runs: int, keys: int, steps: int) -> SourceExperiment:
    """`runs` runs of `keys` series with `steps` points each (the benchmark's shape)."""
    mlflow = client(url)
    experiment_id = mlflow.create_experiment(name)
    start = int(time.time() * 1000) - 86_400_000
    run_ids, points = [], 0
    for index in range(runs):
        run = mlflow.create_run(experiment_id, start_time=start + index, run_name=f"run-{index}")
        mlflow.log_batch(run.info.run_id, params=[Param("index", str(index))])
        points += write_metrics(mlflow, run.info.run_id, keys=keys, steps=steps, start=start)
        mlflow.set_terminated(run.info.run_id, "FINISHED", end_time=start + steps * 1000)
        run_ids.append(run.info.run_id)
    return SourceExperiment(name, experiment_id, run_ids, points)
