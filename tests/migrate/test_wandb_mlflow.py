"""W&B offline run directories <-> MLflow through the migration engine, against real MLflow servers and runs
written by the real wandb SDK; each direction verified point by point by the engine and re-checked here."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ferryman.migrate.copy import migrate
from ferryman.migrate.plan import MigrationRequest
from ferryman.trackers.model import RunStatus
from ferryman.trackers.wandb.offline import WandbDirReader
from ferryman_dev.mlflow import MlflowServer
from ferryman_dev.wandb_runs import LoggedRun, quiet_offline_env, write_sdk_run
from tests.trackers.contract import point_lists

pytestmark = pytest.mark.mlflow


@pytest.fixture(scope="module")
def wandb_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[LoggedRun]]:
    root = tmp_path_factory.mktemp("wandb-source")
    project = f"wandb-to-mlflow-{uuid.uuid4().hex[:8]}"
    runs = [
        write_sdk_run(root, "wtm00001", project=project),
        write_sdk_run(root, "wtm00002", project=project, rows=7, media=False, artifact=False),
    ]
    return root, project, runs


def test_wandb_offline_to_mlflow_verifies(
    wandb_source: tuple[Path, str, list[LoggedRun]], mlflow_destination: MlflowServer
) -> None:
    import mlflow

    root, project, logged = wandb_source
    request = MigrationRequest(source=f"wandb:{root}", destination=mlflow_destination.url, workers=2)
    report = migrate(request)
    assert report.ok, report.to_dict()
    assert sorted(r.source.rsplit("/", 1)[-1] for r in report.runs) == ["wtm00001", "wtm00002"]
    assert report.source_totals == report.destination_totals

    client = mlflow.MlflowClient(mlflow_destination.url)
    experiment = client.get_experiment_by_name(project)
    assert experiment is not None
    by_name = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    for run in logged:
        destination = by_name[run.name]
        assert destination.info.status == RunStatus.FINISHED.value
        assert destination.data.params["optimizer.name"] == "adam"
        assert destination.data.tags["wandb.group"] == "group-a"
        run.assert_in_mlflow(client, destination.info.run_id)
    artifacts = {a.path for a in client.list_artifacts(by_name["name-wtm00001"].info.run_id)}
    assert {"media", "wandb-summary.json", "wandb-history-objects.jsonl", "wandb-artifacts"} <= artifacts

    again = migrate(request)  # idempotent: everything is already there
    assert again.ok and again.points_written == 0


def write_mlflow_source(server: MlflowServer, experiment_name: str, tmp_path: Path) -> dict[str, object]:
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow.MlflowClient(server.url)
    experiment_id = client.create_experiment(experiment_name)
    start = 1_760_000_000_000
    created = client.create_run(
        experiment_id,
        start_time=start,
        run_name="mlflow-run",
        tags={"team": "nlp", "mlflow.note.content": "from mlflow"},
    )
    run_id = created.info.run_id
    metrics = [Metric("loss", 1.0 / (i + 1), start + i * 10, i) for i in range(30)]
    metrics += [Metric("loss", 5.0, start + 500, 3)]  # a second value at step 3
    metrics += [
        Metric("val_loss", 0.5, start + 999, 20),
        Metric("val_loss", 0.6, start + 900, 10),
    ]  # backwards
    metrics += [Metric("val_loss", 0.7, start + 901, 10)]
    client.log_batch(
        run_id,
        metrics=metrics,
        params=[Param("lr", "0.01"), Param("arch", "bert")],
        tags=[RunTag("stage", "dev")],
    )
    (tmp_path / "config.json").write_text('{"a": 1}')
    client.log_artifact(run_id, str(tmp_path / "config.json"), "configs")
    client.set_terminated(run_id, "FINISHED", end_time=start + 60_000)
    return {"run_id": run_id, "metrics": metrics}


def test_mlflow_to_wandb_offline_reads_back(mlflow_source: MlflowServer, tmp_path: Path) -> None:
    name = f"mlflow-to-wandb-{uuid.uuid4().hex[:8]}"
    source = write_mlflow_source(mlflow_source, name, tmp_path)
    destination = tmp_path / "wandb-dest"
    request = MigrationRequest(
        source=mlflow_source.url, destination=f"wandb:{destination}", experiments=[name], workers=2
    )
    with quiet_offline_env():
        report = migrate(request)
    assert report.ok, report.to_dict()

    reader = WandbDirReader(destination)
    [experiment] = list(reader.experiments())
    [run] = list(reader.runs(experiment))
    assert (experiment.name, run.name, run.status, run.start_time, run.end_time) == (
        name,
        "mlflow-run",
        RunStatus.FINISHED,
        1_760_000_000_000,
        1_760_000_060_000,
    )
    assert run.params == {"lr": "0.01", "arch": "bert"} and run.tags["stage"] == "dev"
    got = point_lists(reader.metrics(run))
    want: dict[str, list[tuple[int, int, float]]] = {}
    for metric in source["metrics"]:  # type: ignore[attr-defined]
        want.setdefault(metric.key, []).append((metric.step, metric.timestamp, metric.value))
    for key, points in want.items():
        assert sorted(got[key]) == sorted(points), key
    assert {a.path for a in reader.artifacts(run)} == {"configs/config.json"}

    with quiet_offline_env():
        again = migrate(request)
    assert again.ok and again.points_written == 0
    assert len(list((destination / "wandb").glob("offline-run-*"))) == 1
