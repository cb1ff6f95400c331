"""Lose nothing, say everything: re-runs write nothing and say so, the same TensorBoard logs from two mount
points are one copy (and the verifier notices a second copy), an empty source is an error, destinations
without a registry do not fail verification, progress reaches a piped stderr and a killed migration leaves a
readable partial report. Real components: TensorBoard event files written by tensorboardX, MLflow's SQL store
on SQLite, wandb SDK offline runs, neptune-exporter parquet files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tensorboardX import SummaryWriter

from ferryman.migrate.copy import Migration, migrate
from ferryman.migrate.plan import MigrationRequest
from ferryman.trackers.model import Experiment, Run, RunStatus
from ferryman.trackers.neptune.writer import NeptuneExportWriter
from ferryman.trackers.registry import Credentials, open_writer
from ferryman_dev.wandb_runs import quiet_offline_env
from tests.migrate.sources import populate_rich
from tests.trackers.contract import DESTINATIONS, Destination

T0 = 1_748_779_200.0  # s


@pytest.fixture(autouse=True)
def quiet_wandb() -> Iterator[None]:
    with quiet_offline_env():
        yield


def write_logs(root: Path, runs: int = 3, steps: int = 50) -> Path:
    """`runs` run directories of scalars written by tensorboardX's SummaryWriter."""
    for index in range(runs):
        with SummaryWriter(str(root / f"run-{index}"), flush_secs=600) as writer:
            for step in range(steps):
                writer.add_scalar("loss", 1 / (step + 1 + index), step, walltime=T0 + step)
                writer.add_scalar("lr", 0.1 * index, step, walltime=T0 + step)
    return root


@pytest.mark.parametrize("destination", DESTINATIONS, ids=lambda destination: destination.name)
def test_a_second_run_writes_nothing_and_says_so(destination: Destination, tmp_path: Path) -> None:
    logs = write_logs(tmp_path / "logs")
    request = MigrationRequest(f"tensorboard:{logs}", destination.uri(tmp_path / "out"), workers=2)
    first = migrate(request)
    assert first.ok, first.summary()
    assert first.to_dict()["summary"]["created"] == 3

    again = migrate(request)
    assert again.ok, again.summary()
    summary = again.to_dict()["summary"]
    assert (summary["created"], summary["resumed"], summary["skipped"]) == (0, 0, 3)
    assert (summary["pointsWritten"], summary["artifactsWritten"]) == (0, 0)
    assert "nothing to write" in again.summary()


def test_the_same_logs_from_two_mount_points_are_one_copy(tmp_path: Path) -> None:
    laptop = write_logs(tmp_path / "laptop" / "logs")
    pod = tmp_path / "pod" / "mnt" / "logs"
    shutil.copytree(laptop, pod)
    destination = f"neptune-export:{tmp_path / 'out'}"
    assert migrate(MigrationRequest(f"tensorboard:{laptop}", destination)).ok

    from_pod = migrate(MigrationRequest(f"tensorboard:{pod}", destination))
    assert from_pod.ok, from_pod.summary()
    assert from_pod.to_dict()["summary"]["skipped"] == 3  # recognised, not copied again

    named = migrate(MigrationRequest(f"tensorboard:{pod}?root=logs", destination))  # the same name, given
    assert named.ok and named.to_dict()["summary"]["skipped"] == 3


def test_verification_notices_a_second_copy_of_a_source_run(tmp_path: Path) -> None:
    logs = write_logs(tmp_path / "logs", runs=1)
    destination = f"neptune-export:{tmp_path / 'out'}"
    assert migrate(MigrationRequest(f"tensorboard:{logs}", destination)).ok
    writer = open_writer(destination, Credentials())  # an older copy, keyed by the logs' absolute path
    experiment_key = writer.ensure_experiment(Experiment("logs", "logs"))
    old = writer.create_run(experiment_key, Run("run-0", "logs"), f"tensorboard:{logs}/run-0")
    writer.finish_run(old, Run("run-0", "logs", status=RunStatus.FINISHED))
    writer.close()

    report = migrate(MigrationRequest(f"tensorboard:{logs}", destination, verify_only=True))
    assert not report.ok
    (result,) = report.runs
    assert any("2 copies of this source run" in mismatch for mismatch in result.mismatches), result


def test_an_empty_or_mistyped_source_is_an_error_unless_allowed(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    source, destination = f"tensorboard:{tmp_path / 'empty'}", f"neptune-export:{tmp_path / 'out'}"
    report = migrate(MigrationRequest(source, destination))
    assert not report.ok
    assert any("no runs found" in error and str(tmp_path / "empty") in error for error in report.errors)
    assert migrate(MigrationRequest(source, destination, allow_empty=True)).ok


@pytest.mark.parametrize("destination", ["tensorboard", "wandb-offline"])
def test_models_sent_to_a_destination_without_a_registry_are_outcomes(
    destination: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the source's artifacts go to MLflow's default ./mlruns
    source = f"sqlite:///{tmp_path / 'source.db'}"
    populate_rich(source, "rich", steps=5)
    (target,) = [d for d in DESTINATIONS if d.name == destination]
    report = migrate(MigrationRequest(source, target.uri(tmp_path / "out")))
    assert report.ok, report.summary()
    assert report.models == {}  # what the destination stored: nothing
    unsupported = {o.item for o in report.outcomes if o.kind.value == "unsupported"}
    assert unsupported == {"registered model rich-model", "logged model clf"}


def ferryman_migrate(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FERRYMAN_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "ferryman", "migrate", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
    )


def test_progress_reaches_a_piped_stderr(tmp_path: Path) -> None:
    logs = write_logs(tmp_path / "logs", runs=2)
    process = ferryman_migrate(
        tmp_path, "--from", f"tensorboard:{logs}", "--to", f"neptune-export:{tmp_path / 'out'}"
    )
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    lines = [line for line in err.splitlines() if line.startswith("ferryman migrate: ")]
    phases = [line.split()[2] for line in lines]
    assert {"copying", "verifying", "done"} <= set(phases), err
    assert "runs 2/2, points 200" in lines[-1], lines[-1]


def test_a_killed_migration_leaves_a_readable_partial_report(tmp_path: Path) -> None:
    logs = write_logs(tmp_path / "logs", runs=40, steps=400)
    report_file = tmp_path / "report.json"
    process = ferryman_migrate(
        tmp_path, "--from", f"tensorboard:{logs}", "--to", f"neptune-export:{tmp_path / 'out'}",
        "--workers", "1", "--report", str(report_file), "-q",
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if report_file.exists():
            seen = json.loads(report_file.read_text())
            if seen["partial"] and seen["runs"]:  # not the final report of a process still exiting
                break
        time.sleep(0.05)
    assert process.poll() is None, "the migration ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)

    report = json.loads(report_file.read_text())
    assert report["partial"] and not report["ok"]
    assert 1 <= report["summary"]["runs"] < 40
    assert all(run["action"] == "create" and run["pointsWritten"] == 800 for run in report["runs"])


def test_a_sqlite_source_from_another_machine_finds_its_artifacts_beside_the_database(tmp_path: Path) -> None:
    import sqlite3

    from mlflow import MlflowClient

    database = tmp_path / "mlflow.db"
    mlflow = MlflowClient(f"sqlite:///{database}")
    experiment_id = mlflow.create_experiment("moved", artifact_location=(tmp_path / "mlruns" / "7").as_uri())
    with_files = mlflow.create_run(experiment_id).info.run_id
    (tmp_path / "notes.txt").write_text("kept\n")
    mlflow.log_artifact(with_files, str(tmp_path / "notes.txt"))
    mlflow.set_terminated(with_files)
    without_files = mlflow.create_run(experiment_id).info.run_id  # MLflow never creates its directory
    mlflow.set_terminated(without_files)
    with sqlite3.connect(database) as connection:  # as recorded on the laptop the database came from
        connection.execute(
            "UPDATE runs SET artifact_uri = 'file:C:/Users/ada/mlruns/7/' || run_uuid || '/artifacts'"
        )

    report = migrate(MigrationRequest(f"sqlite:///{database}", f"neptune-export:{tmp_path / 'out'}"))
    assert report.ok, report.summary()
    assert [o for o in report.outcomes if o.kind.value == "unreadable"] == []
    assert report.source_totals["artifacts"] == 1 == report.destination_totals["artifacts"]


class FailingWriter(NeptuneExportWriter):
    """A destination that fails to finish any run, as a full disk would after the run's files were copied."""

    def finish_run(self, run_key: str, run: Run) -> None:
        raise OSError("No space left on device")


def test_a_failed_run_is_named_and_what_its_source_lacks_is_said_once(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    database = tmp_path / "mlflow.db"
    mlflow = MlflowClient(f"sqlite:///{database}")
    experiment_id = mlflow.create_experiment("elsewhere", artifact_location="file:///D:/nowhere/mlruns/3")
    run_id = mlflow.create_run(experiment_id).info.run_id
    mlflow.log_metric(run_id, "loss", 0.5, step=1)
    mlflow.set_terminated(run_id)

    request = MigrationRequest(f"sqlite:///{database}", f"neptune-export:{tmp_path / 'out'}")
    report = Migration(request, writer=FailingWriter(tmp_path / "out")).run()
    assert not report.ok
    assert [(r.source, r.error) for r in report.failed_runs] == [
        (f"mlflow:{experiment_id}/{run_id}", "OSError: No space left on device")
    ]
    # the copy read the run's artifacts, and verifying the failed run read them again: one fact, said once
    assert [(o.kind.value, o.item) for o in report.outcomes] == [("unreadable", f"run {run_id}/artifacts")]


def test_deleted_runs_are_skipped_and_counted_or_copied_as_deleted(tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    source = f"sqlite:///{tmp_path / 'source.db'}"
    mlflow = MlflowClient(source)
    experiment_id = mlflow.create_experiment("lifecycle", artifact_location=(tmp_path / "art").as_uri())
    kept, gone = (mlflow.create_run(experiment_id, run_name=name).info.run_id for name in ("kept", "gone"))
    for run_id in (kept, gone):
        mlflow.log_metric(run_id, "loss", 0.5, step=1)
        mlflow.set_terminated(run_id)
    mlflow.delete_run(gone)

    destination = f"sqlite:///{tmp_path / 'destination.db'}"
    default = migrate(MigrationRequest(source, destination))
    assert default.ok, default.summary()
    skipped = [(o.kind.value, o.item) for o in default.outcomes]
    assert skipped == [("skipped", f"run mlflow:{experiment_id}/{gone}")]
    assert [r.name for r in default.runs] == ["kept"]

    included = migrate(MigrationRequest(source, destination, include_deleted=True))
    assert included.ok, included.summary()
    assert included.to_dict()["summary"]["created"] == 1 and included.outcomes == []
    copy = MlflowClient(destination)
    copies = copy.search_runs(
        [copy.get_experiment_by_name("lifecycle").experiment_id], run_view_type=ViewType.ALL
    )
    assert {(run.info.run_name, run.info.lifecycle_stage) for run in copies} == {
        ("kept", "active"), ("gone", "deleted")
    }
    again = migrate(MigrationRequest(source, destination, include_deleted=True))
    assert again.ok and again.to_dict()["summary"]["skipped"] == 2

    elsewhere = migrate(MigrationRequest(source, f"tensorboard:{tmp_path / 'tb'}", include_deleted=True))
    assert elsewhere.ok, elsewhere.summary()
    assert [(o.kind.value, o.item) for o in elsewhere.outcomes] == [
        ("unsupported", f"run mlflow:{experiment_id}/{gone}/deleted")
    ]


def test_an_artifact_the_tensorboard_writer_renames_verifies_under_its_new_name(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    source = f"sqlite:///{tmp_path / 'source.db'}"
    mlflow = MlflowClient(source)
    experiment_id = mlflow.create_experiment("logs", artifact_location=(tmp_path / "art").as_uri())
    run_id = mlflow.create_run(experiment_id).info.run_id
    (tmp_path / "events.out.tfevents.1.laptop").write_bytes(b"not read as events")
    mlflow.log_artifact(run_id, str(tmp_path / "events.out.tfevents.1.laptop"), "tb")
    mlflow.set_terminated(run_id)

    request = MigrationRequest(source, f"tensorboard:{tmp_path / 'out'}")
    first = migrate(request)
    assert first.ok, first.summary()
    (renamed,) = first.outcomes
    assert renamed.kind.value == "renamed"
    assert renamed.item.endswith("/artifact tb/events.out.tfevents.1.laptop")
    again = migrate(request)
    assert again.ok, again.summary()
    assert again.to_dict()["summary"]["artifactsWritten"] == 0


def test_steps_a_destination_cannot_hold_are_counted_points_not_a_failed_run(tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    source = f"sqlite:///{tmp_path / 'source.db'}"
    mlflow = MlflowClient(source)
    experiment_id = mlflow.create_experiment("tokens", artifact_location=(tmp_path / "art").as_uri())
    parent = mlflow.create_run(experiment_id, run_name="parent").info.run_id
    nested = {"mlflow.parentRunId": parent}
    child = mlflow.create_run(experiment_id, run_name="child", tags=nested).info.run_id
    steps = [0, 999_999_999_999, 10**12, 3 * 10**12]  # tokens seen, as some LLM runs log their step
    mlflow.log_batch(child, metrics=[Metric("loss", 1 / (i + 1), 1_000 + i, s) for i, s in enumerate(steps)])
    for run_id in (parent, child):
        mlflow.set_terminated(run_id)

    request = MigrationRequest(source, f"neptune-export:{tmp_path / 'out'}")
    report = migrate(request)
    assert report.ok, report.summary()
    assert [(o.kind.value, o.item) for o in report.outcomes] == [("truncated", f"run {child}/metric loss")]
    assert "2 point(s)" in report.outcomes[0].reason
    assert report.destination_totals["points"] == 2 and report.destination_totals["runs"] == 2
    again = migrate(request)
    assert again.ok and again.to_dict()["summary"]["skipped"] == 2
    assert [o.kind.value for o in again.outcomes] == ["truncated"]  # still said when only verified


def test_a_logged_models_metrics_params_and_tags_are_carried_and_verified(tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    source = f"sqlite:///{tmp_path / 'source.db'}"
    mlflow = MlflowClient(source)
    experiment_id = mlflow.create_experiment("models", artifact_location=(tmp_path / "art").as_uri())
    run_id = mlflow.create_run(experiment_id, run_name="train").info.run_id
    model = mlflow.create_logged_model(experiment_id, name="clf", source_run_id=run_id,
                                       params={"depth": "3"}, tags={"stage": "dev"})
    mlflow.log_batch(run_id, metrics=[
        Metric("accuracy", 0.5 + step / 10, 1_000 + step, step, model_id=model.model_id,
               dataset_name="eval", dataset_digest="abc123", run_id=run_id)
        for step in range(3)
    ])
    mlflow.finalize_logged_model(model.model_id, "READY")
    mlflow.set_terminated(run_id)

    destination = f"sqlite:///{tmp_path / 'destination.db'}"
    report = migrate(MigrationRequest(source, destination))
    assert report.ok, report.summary()
    assert report.models == {"loggedModels": 1}
    copy = MlflowClient(destination)
    (twin,) = copy.search_logged_models([copy.get_experiment_by_name("models").experiment_id])
    assert (twin.name, twin.params, twin.tags["stage"]) == ("clf", {"depth": "3"}, "dev")
    assert sorted((m.step, m.value, m.dataset_name) for m in twin.metrics) == [
        (0, 0.5, "eval"), (1, 0.6, "eval"), (2, 0.7, "eval")
    ]
    assert report.source_totals["points"] == 3 == report.destination_totals["points"]  # none twice


def log_dataset_input(tracking_uri: str, root: Path) -> str:
    """A finished run that used one dataset (with the context tag `mlflow.log_input` sets); its id."""
    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput, InputTag

    mlflow = MlflowClient(tracking_uri)
    experiment_id = mlflow.create_experiment("inputs", artifact_location=(root / "art").as_uri())
    run_id = mlflow.create_run(experiment_id, run_name="train").info.run_id
    dataset = Dataset("mnist", "d1g35t", "local", '{"uri": "/data/mnist"}', '{"cols": 785}', '{"rows": 7}')
    mlflow.log_inputs(run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])])
    mlflow.set_terminated(run_id)
    return run_id


@pytest.mark.parametrize("store", ["sqlite", "file store"])
def test_dataset_inputs_are_carried_and_verified(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import warnings

    from mlflow import MlflowClient

    source = f"sqlite:///{tmp_path / 'source.db'}" if store == "sqlite" else str(tmp_path / "mlruns")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow writes file stores only when asked
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MLflow's file store is deprecated, still found
        log_dataset_input(source if store == "sqlite" else (tmp_path / "mlruns").as_uri(), tmp_path)
    destination = f"sqlite:///{tmp_path / 'destination.db'}"
    request = MigrationRequest(source, destination)
    report = migrate(request)
    assert report.ok, report.summary()
    copy = MlflowClient(destination)
    (run,) = copy.search_runs([copy.get_experiment_by_name("inputs").experiment_id])
    (used,) = run.inputs.dataset_inputs
    assert (used.dataset.name, used.dataset.digest) == ("mnist", "d1g35t")
    assert (used.dataset.schema, used.dataset.profile) == ('{"cols": 785}', '{"rows": 7}')
    assert [(tag.key, tag.value) for tag in used.tags] == [("mlflow.data.context", "training")]
    again = migrate(request)
    assert again.ok and again.to_dict()["summary"]["skipped"] == 1

    elsewhere = migrate(MigrationRequest(source, f"tensorboard:{tmp_path / 'tb'}"))
    assert elsewhere.ok, elsewhere.summary()
    assert [(o.kind.value, o.item.rsplit("/", 1)[-1]) for o in elsewhere.outcomes] == [
        ("unsupported", "dataset inputs")
    ]


def test_quiet_silences_mlflows_own_info_lines(tmp_path: Path) -> None:
    logs = write_logs(tmp_path / "logs", runs=1, steps=3)
    process = ferryman_migrate(
        tmp_path, "--from", f"tensorboard:{logs}", "--to", f"sqlite:///{tmp_path / 'new.db'}", "-q"
    )
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert (out, err) == ("", "")  # no progress, no summary, no 'INFO mlflow.store.db.utils' lines
    import sqlite3

    with sqlite3.connect(tmp_path / "new.db") as connection:  # artifacts go beside it, named after it
        (location,) = connection.execute("SELECT artifact_location FROM experiments WHERE name = 'logs'")
    connection.close()
    assert location[0].startswith(str(tmp_path / "new-artifacts"))
