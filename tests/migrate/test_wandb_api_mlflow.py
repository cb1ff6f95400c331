"""W&B API -> MLflow through the migration engine, verified point by point.

The source is `tests/trackers/wandb_api_server.py`, a MOCK of the W&B cloud API on loopback (the real cloud
cannot be reached from the build machines) that answers wandb 0.31's real GraphQL operations from a recorded
project; the client side (`wandb.Api`, wandb-core, ferryman's reader and engine) and the MLflow server are
real. The mock rate-limits some calls with 429 + Retry-After, so the migration also exercises the retries."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from ferryman.migrate.copy import migrate
from ferryman.migrate.plan import MigrationRequest
from ferryman.trackers.registry import Credentials
from ferryman_dev.mlflow import MlflowServer
from tests.migrate.sources import client

pytestmark = pytest.mark.mlflow

_SERVER = Path(__file__).parents[1] / "trackers" / "wandb_api_server.py"
_spec = importlib.util.spec_from_file_location("wandb_api_server", _SERVER)
assert _spec is not None and _spec.loader is not None
wandb_api_server = sys.modules.setdefault("wandb_api_server", importlib.util.module_from_spec(_spec))
if not hasattr(wandb_api_server, "WandbApiFixtureServer"):
    _spec.loader.exec_module(wandb_api_server)


def test_wandb_api_to_mlflow_verifies(
    mlflow_destination: MlflowServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    limits = {"Runs": 1, "HistoryPage": 1, "download": 1}
    with wandb_api_server.WandbApiFixtureServer(rate_limits=limits, retry_after=0.2) as server:
        recorded = {run["id"]: run for run in server.data["runs"]}
        source = f"wandb://acme/vision?base_url={quote(server.url)}&filters=" + quote(
            json.dumps({"state": {"$in": ["finished", "crashed"]}})
        )
        request = MigrationRequest(
            source=source,
            destination=mlflow_destination.url,
            workers=2,
            source_credentials=Credentials(token=server.data["api_key"]),
        )
        report = migrate(request)
        assert report.ok, report.to_dict()
        assert len(report.runs) == 3 and report.source_totals == report.destination_totals
        assert {o.item for o in report.outcomes} >= {"run base-1/history key samples"}  # an image, counted
        assert any(call.status == 429 for call in server.ops("Runs"))

        mlflow = client(mlflow_destination.url)
        experiment = mlflow.get_experiment_by_name("vision")
        assert experiment is not None
        runs = {r.info.run_name: r for r in mlflow.search_runs([experiment.experiment_id])}
        base = runs["baseline"]
        assert base.data.params == {"lr": "0.001", "model.depth": "50", "model.act": "relu"}
        assert base.data.tags["wandb.job_type"] == "train"
        history = sorted(mlflow.get_metric_history(base.info.run_id, "loss"), key=lambda m: m.step)
        rows = recorded["base-1"]["history"]
        assert [(m.step, m.timestamp, m.value) for m in history] == [
            (row["_step"], round(row["_timestamp"] * 1000), row["loss"]) for row in rows
        ]
        assert len(mlflow.get_metric_history(base.info.run_id, "system.cpu")) == 12
        files = {a.path for a in mlflow.list_artifacts(base.info.run_id)}
        assert {"config.yaml", "output.log", "artifacts"} <= files
        assert runs["tuned"].info.status == "FAILED"

        again = migrate(request)  # idempotent
        assert again.ok and again.points_written == 0
