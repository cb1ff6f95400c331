"""The MLflow file-store reader on 1.x and 3.x layouts, and the database writer read back by the reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.trackers.mlflow.fields import MlflowError
from ferryman.trackers.mlflow.filestore import FileStoreReader
from ferryman.trackers.model import Experiment, MetricBatch, OutcomeKind, Run, RunStatus
from ferryman.trackers.registry import Credentials, open_reader, open_writer


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "project" / "mlruns"
    write(root / "0" / "meta.yaml", "experiment_id: '0'\nname: Default\nlifecycle_stage: active\n")
    write(root / "0" / "tags" / "mlflow.note.content", "about")
    # MLflow 1.x: `name` instead of run_name, numeric status 1 (RUNNING, never ended), metrics without steps
    old = root / "0" / "aaa"
    write(
        old / "meta.yaml",
        "run_uuid: aaa\nexperiment_id: '0'\nname: ''\nstatus: 1\nstart_time: 100\n"
        "end_time: null\nuser_id: dana\nlifecycle_stage: active\n",
    )
    write(old / "tags" / "mlflow.runName", "old-run")
    write(old / "params" / "model" / "depth", "3")
    write(old / "metrics" / "rmse", "100 2.5\n200 2.0\n")
    # MLflow 3: run_name, string status, logged model outputs, system metrics
    new = root / "0" / "bbb"
    write(
        new / "meta.yaml",
        "run_id: bbb\nrun_name: new-run\nexperiment_id: '0'\nstatus: 3\nstart_time: 50\n"
        "end_time: 900\nuser_id: eve\nlifecycle_stage: active\n",
    )
    write(new / "tags" / "mlflow.parentRunId", "aaa")
    write(new / "metrics" / "system" / "cpu_utilization_percentage", "60 12.5 0\n70 13.5 1\n")
    write(new / "artifacts" / "model" / "MLmodel", "flavors: {}\n")
    (new / "artifacts" / "dangling").symlink_to(new / "artifacts" / "nowhere")
    deleted = root / "0" / "ccc"
    write(deleted / "meta.yaml", "run_id: ccc\nlifecycle_stage: deleted\n")
    write(
        root / "0" / "models" / "m-1" / "meta.yaml",
        "model_id: m-1\nname: clf\nsource_run_id: bbb\nexperiment_id: '0'\ncreation_timestamp: 5\n",
    )
    write(root / "0" / "models" / "m-1" / "params" / "depth", "3")
    write(root / "0" / "models" / "m-1" / "artifacts" / "model.pkl", "pickle")
    write(root / "models" / "clf" / "meta.yaml", "name: clf\ndescription: the classifier\n")
    write(root / "models" / "clf" / "aliases" / "champion", "2")
    for version, stage in ((1, "Archived"), (2, "Production")):
        write(
            root / "models" / "clf" / f"version-{version}" / "meta.yaml",
            f"version: {version}\nrun_id: bbb\nsource: mlruns/0/bbb/artifacts/model\n"
            f"current_stage: {stage}\n",
        )
    return root


def test_reads_old_and_new_layouts(store: Path) -> None:
    reader = FileStoreReader(store.parent)  # the project directory holding mlruns/ works too
    (experiment,) = reader.experiments()
    assert (experiment.name, experiment.description) == ("Default", "about")
    runs = {run.key: run for run in reader.runs(experiment)}
    assert set(runs) == {"aaa", "bbb", "ccc"}  # the deleted run too, flagged: the engine decides
    assert [key for key, run in runs.items() if run.deleted] == ["ccc"]
    old, new = runs["aaa"], runs["bbb"]
    assert (old.name, old.status, old.end_time, old.user, old.params) == (
        "old-run",
        RunStatus.RUNNING,
        None,
        "dana",
        {"model/depth": "3"},
    )
    assert (new.name, new.status, new.start_time, new.end_time, new.parent_key) == (
        "new-run",
        RunStatus.FINISHED,
        50,
        900,
        "aaa",
    )
    assert [(b.key, b.steps, b.timestamps, b.values) for b in reader.metrics(old)] == [
        ("rmse", [0, 0], [100, 200], [2.5, 2.0])
    ]
    (system,) = reader.metrics(new)
    assert system.system and system.key == "system/cpu_utilization_percentage"
    assert [a.path for a in reader.artifacts(new)] == ["model/MLmodel"]
    assert [(o.kind, o.reason) for o in reader.outcomes()] == [(OutcomeKind.UNREADABLE, "dangling symlink")]
    (model,) = reader.registered_models()
    assert [(v.version, v.stage, v.aliases, v.run_key) for v in model.versions] == [
        ("1", "Archived", [], "bbb"),
        ("2", "Production", ["champion"], "bbb"),
    ]
    (logged,) = reader.logged_models(experiment)
    assert (logged.name, logged.run_key, logged.params, [a.path for a in logged.artifacts]) == (
        "clf",
        "bbb",
        {"depth": "3"},
        ["model.pkl"],
    )


def test_missing_store_is_named(tmp_path: Path) -> None:
    with pytest.raises(MlflowError, match="does not exist"):
        open_reader(str(tmp_path / "nowhere"), Credentials())
    with pytest.raises(MlflowError, match=r"database .* does not exist"):
        open_reader(f"sqlite:///{tmp_path / 'nowhere.db'}", Credentials())


def test_database_writer_round_trip(tmp_path: Path) -> None:
    writer = open_writer(f"sqlite:///{tmp_path / 'mlflow.db'}", Credentials())
    experiment = writer.ensure_experiment(Experiment("x", "exp", {"t": "1"}, "described"))
    assert writer.ensure_experiment(Experiment("x", "exp")) == experiment
    run = Run(
        "src",
        "x",
        name="r",
        status=RunStatus.KILLED,
        start_time=10,
        end_time=20,
        user="u",
        tags={"k": "v" * 9000},
        notes="n",
        params={"p": "1", "long": "z" * 6500},
    )
    key = writer.create_run(experiment, run, "test:x/src")
    outcomes = writer.write_params(key, run.params) + writer.write_tags(key, run.tags, run.notes)
    assert sorted(o.kind for o in outcomes) == [OutcomeKind.STORED_AS_ARTIFACT] * 2
    assert writer.write_params(key, run.params) == []  # idempotent: nothing left to write
    writer.write_metrics(key, [MetricBatch("loss", list(range(2500)), list(range(2500)), [0.5] * 2500)])
    assert writer.high_water_marks(key) == {"loss": 2500}
    writer.finish_run(key, run)
    assert writer.migrated_runs(experiment)["test:x/src"].complete
    reader = writer.reader()
    (copy,) = reader.runs(next(reader.experiments(["exp"])))
    assert (copy.name, copy.status, copy.start_time, copy.end_time, copy.user, copy.notes) == (
        "r",
        RunStatus.KILLED,
        10,
        20,
        "u",
        "n",
    )
    assert copy.params["long"] == "z" * 6000 and copy.tags["k"] == "v" * 8000
    assert sum(len(b) for b in reader.metrics(copy)) == 2500
    assert {a.path for a in reader.artifacts(copy)} == {"ferryman/long-values.json"}
