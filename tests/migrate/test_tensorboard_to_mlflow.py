"""TensorBoard -> MLflow: event files written by tensorboardX's SummaryWriter, verified point by point."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from tensorboardX import SummaryWriter

from ferryman.migrate.copy import migrate
from ferryman.migrate.plan import MigrationRequest
from ferryman.trackers.model import OutcomeKind
from ferryman_dev.mlflow import MlflowServer
from tests.migrate.sources import client

pytestmark = pytest.mark.mlflow
STEPS = 2000


def write_logdir(root: Path) -> None:
    for run in ("lr-0.1", "lr-0.01"):
        with SummaryWriter(str(root / run)) as writer:
            for step in range(STEPS):
                writer.add_scalar("train/loss", 1.0 / (step + 1), step)
                if step % 10 == 0:
                    writer.add_scalar("val/accuracy", step / STEPS, step)
            writer.add_text("notes", f"run {run}", 0)
            writer.add_histogram("weights", np.arange(100, dtype=np.float32), 0)
            writer.add_image("sample", np.zeros((3, 8, 8), dtype=np.uint8), 0)
            writer.add_hparams({"lr": float(run.split("-")[1]), "optimizer": "sgd"}, {"hparam/final": 0.9})
    broken = root / "crashed"
    with SummaryWriter(str(broken)) as writer:
        for step in range(100):
            writer.add_scalar("loss", float(step), step)
    event_file = next(broken.glob("*tfevents*"))
    event_file.write_bytes(event_file.read_bytes()[:-7])  # the writer died mid-record


def test_tensorboard_round_trip(mlflow_destination: MlflowServer, tmp_path: Path) -> None:
    root = tmp_path / f"tb-{uuid.uuid4().hex[:6]}"
    write_logdir(root)
    report = migrate(MigrationRequest(f"tensorboard:{root}", mlflow_destination.url, workers=2))
    assert report.ok, report.summary()
    assert report.verified and report.source_totals == report.destination_totals
    assert report.source_totals["runs"] == 3
    assert report.source_totals["points"] == 2 * (STEPS + STEPS // 10 + 1) + 99
    truncated = [o for o in report.outcomes if o.kind is OutcomeKind.TRUNCATED]
    assert len(truncated) == 1 and "crashed" in truncated[0].item

    mlflow = client(mlflow_destination.url)
    experiment = mlflow.get_experiment_by_name(root.name)
    runs = {r.info.run_name: r for r in mlflow.search_runs([experiment.experiment_id])}
    assert set(runs) == {"lr-0.1", "lr-0.01", "crashed"}
    fast = runs["lr-0.1"]
    assert fast.data.params["lr"] == "0.1" and fast.data.params["optimizer"] == "sgd"
    history = mlflow.get_metric_history(fast.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(STEPS))
    assert fast.info.start_time <= min(m.timestamp for m in history)
    files = {a.path for a in mlflow.list_artifacts(fast.info.run_id, "tensorboard")}
    assert {"tensorboard/histograms", "tensorboard/images", "tensorboard/text"} <= files

    again = migrate(MigrationRequest(f"tensorboard:{root}", mlflow_destination.url))
    assert again.ok and again.points_written == 0
