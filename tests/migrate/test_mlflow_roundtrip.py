"""MLflow -> MLflow between two real servers (SQLite backends, proxied artifacts), verified point by point."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ferryman.migrate.copy import Progress, migrate
from ferryman.migrate.plan import MigrationRequest
from ferryman.trackers.mlflow import backend as backend_module
from ferryman.trackers.mlflow.backend import Backend
from ferryman.trackers.model import OutcomeKind
from ferryman.trackers.registry import Credentials, endpoint
from ferryman_dev.mlflow import MlflowServer
from tests.migrate.sources import SourceExperiment, client, populate_bulk, populate_rich

pytestmark = pytest.mark.mlflow


@pytest.fixture(scope="module")
def rich_source(mlflow_source: MlflowServer) -> SourceExperiment:
    return populate_rich(mlflow_source.url, f"rich-{uuid.uuid4().hex[:8]}")


def test_round_trip_preserves_everything_and_verifies(
    mlflow_source: MlflowServer, mlflow_destination: MlflowServer, rich_source: SourceExperiment
) -> None:
    snapshots: list[Progress] = []
    request = MigrationRequest(
        mlflow_source.url, mlflow_destination.url, experiments=[rich_source.name], workers=3
    )
    report = migrate(request, snapshots.append)
    assert report.ok, report.summary()
    assert report.verified
    assert report.source_totals == report.destination_totals
    assert report.source_totals["runs"] == 4 and report.source_totals["points"] == rich_source.points
    assert snapshots[-1].phase == "done" and max(s.points_written for s in snapshots) == rich_source.points

    source, destination = client(mlflow_source.url), client(mlflow_destination.url)
    experiment = destination.get_experiment_by_name(rich_source.name)
    assert experiment.tags["team"] == "vision"
    copied = {r.data.tags["ferryman.source"]: r for r in destination.search_runs([experiment.experiment_id])}
    for run_id in rich_source.run_ids:
        original = source.get_run(run_id)
        twin = copied[f"mlflow:{rich_source.experiment_id}/{run_id}"]
        assert (twin.info.run_name, twin.info.status, twin.info.start_time, twin.info.end_time) == (
            original.info.run_name,
            original.info.status,
            original.info.start_time,
            original.info.end_time,
        )
        assert twin.info.user_id == original.info.user_id
        assert twin.data.params == original.data.params
        for key in original.data.metrics:
            before = [(m.step, m.timestamp, m.value) for m in source.get_metric_history(run_id, key)]
            after = [
                (m.step, m.timestamp, m.value) for m in destination.get_metric_history(twin.info.run_id, key)
            ]
            assert sorted(map(repr, before)) == sorted(map(repr, after))
    parent = copied[f"mlflow:{rich_source.experiment_id}/{rich_source.run_ids[0]}"]
    assert parent.data.tags["mlflow.note.content"] == "notes\nhere"
    children = [r for r in copied.values() if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 3
    running = [r for r in copied.values() if r.info.status == "RUNNING"]
    assert len(running) == 1 and "ferryman.complete" in running[0].data.tags

    model = destination.get_registered_model(f"{rich_source.name}-model")
    assert model.aliases == {"champion": "1"}
    version = destination.get_model_version(model.name, "1")
    first_copy = copied[f"mlflow:{rich_source.experiment_id}/{rich_source.run_ids[1]}"].info.run_id
    assert version.run_id == first_copy and version.current_stage == "Staging"
    assert first_copy in version.source
    logged = destination.search_logged_models([experiment.experiment_id])
    assert [(m.name, m.source_run_id, m.params) for m in logged] == [("clf", first_copy, {"depth": "3"})]

    again = migrate(request)
    assert again.ok, again.summary()
    assert {r.action for r in again.runs} == {"skip", "resume"}  # the RUNNING run is re-checked
    assert again.points_written == 0
    assert len(destination.search_runs([experiment.experiment_id])) == 4


def test_verify_only_and_dry_run_write_nothing(
    mlflow_source: MlflowServer,
    mlflow_destination: MlflowServer,
    rich_source: SourceExperiment,
    tmp_path: Path,
) -> None:
    report_file = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferryman",
            "migrate",
            "--from",
            mlflow_source.url,
            "--to",
            mlflow_destination.url,
            "--experiment",
            rich_source.name,
            "--verify-only",
            "--report",
            str(report_file),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(report_file.read_text())
    assert report["verified"] and report["ok"] and report["summary"]["pointsWritten"] == 0

    name = f"dry-{uuid.uuid4().hex[:8]}"
    populate_rich(mlflow_source.url, name, steps=10)
    dry = migrate(
        MigrationRequest(mlflow_source.url, mlflow_destination.url, experiments=[name], dry_run=True)
    )
    assert dry.ok and {r.action for r in dry.runs} == {"create"}
    assert dry.source_totals["points"] > 0
    assert client(mlflow_destination.url).get_experiment_by_name(name) is None


def test_long_params_are_kept_whole_as_artifacts(mlflow_destination: MlflowServer, tmp_path: Path) -> None:
    """A file store written by an older MLflow (no param limit) holds a 7,000-character param."""
    store = tmp_path / "mlruns"
    run = store / "1" / "abc123"
    (store / "1").mkdir(parents=True)
    (store / "1" / "meta.yaml").write_text(
        f"experiment_id: '1'\nname: long-{uuid.uuid4().hex[:6]}\n"
        "artifact_location: ./mlruns/1\nlifecycle_stage: active\n"
    )
    for sub in ("params", "tags", "metrics", "artifacts"):
        (run / sub).mkdir(parents=True)
    (run / "meta.yaml").write_text(
        "run_uuid: abc123\nexperiment_id: '1'\nname: old\nstatus: 3\n"
        "start_time: 1600000000000\nend_time: 1600000100000\nuser_id: carl\n"
        "lifecycle_stage: active\nartifact_uri: /elsewhere/artifacts\n"
    )
    (run / "params" / "prompt").write_text("p" * 7000)
    (run / "params" / "nested").mkdir()
    (run / "params" / "nested" / "key").write_text("v")
    (run / "metrics" / "acc").write_text("1600000000000 0.5\n1600000001000 0.6 1\nnot a line\n")
    (run / "metrics" / "Total Loss (L1 + G) * 0.4").write_text("1600000000000 1.5 0\n")  # TensorBoard-like
    (run / "artifacts" / "notes.txt").write_text("hello")
    report = migrate(MigrationRequest(str(store), mlflow_destination.url))
    assert report.ok, report.summary()
    kinds = sorted(o.kind for o in report.outcomes)
    assert kinds == [OutcomeKind.RENAMED, OutcomeKind.STORED_AS_ARTIFACT, OutcomeKind.UNREADABLE]
    again = migrate(MigrationRequest(str(store), mlflow_destination.url, verify=False))
    assert again.ok and again.points_written == 0  # the renamed key resumes under its new name
    assert any("malformed line" in o.reason for o in report.outcomes)
    destination = client(mlflow_destination.url)
    copy = destination.get_run(report.runs[0].destination)
    assert copy.data.params["prompt"] == "p" * 6000 and copy.data.params["nested/key"] == "v"
    whole = destination.download_artifacts(copy.info.run_id, "ferryman/long-values.json", str(tmp_path))
    assert json.loads(Path(whole).read_text())["params"]["prompt"] == "p" * 7000
    assert [m.step for m in destination.get_metric_history(copy.info.run_id, "acc")] == [0, 1]
    renamed = destination.get_metric_history(copy.info.run_id, "Total Loss _L1 _ G_ _ 0.4")
    assert [(m.step, m.value) for m in renamed] == [(0, 1.5)]


def test_shards_split_the_runs_and_together_cover_them(
    mlflow_source: MlflowServer, mlflow_destination: MlflowServer
) -> None:
    name = f"shards-{uuid.uuid4().hex[:6]}"
    source = populate_bulk(mlflow_source.url, name, runs=6, keys=1, steps=20)
    shards = [
        migrate(
            MigrationRequest(
                mlflow_source.url,
                mlflow_destination.url,
                experiments=[name],
                shard_index=index,
                shard_count=2,
            )
        )
        for index in range(2)
    ]
    assert all(report.ok for report in shards)
    first, second = ({run.source for run in report.runs} for report in shards)
    assert not first & second and len(first | second) == len(source.run_ids)
    whole = migrate(
        MigrationRequest(mlflow_source.url, mlflow_destination.url, experiments=[name], verify_only=True)
    )
    assert whole.ok and whole.destination_totals["points"] == source.points


def test_series_read_whole_through_either_history_endpoint(
    mlflow_source: MlflowServer, rich_source: SourceExperiment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A series comes in one get-history-bulk answer; one that may be longer than an answer, and every series
    of a server without that route, through get-history's pages: the same points each way, NaN included."""
    backend = Backend.connect(endpoint(mlflow_source.url), Credentials(), "source")
    run_id = rich_source.run_ids[1]

    def read() -> list[str]:
        return [
            repr(point)
            for key in ("loss", "val_nan")
            for batch in backend.metric_history(run_id, key)
            for point in zip(batch.steps, batch.timestamps, batch.values, strict=True)
        ]

    try:
        whole = read()
        assert len(whole) == 302 and "nan" in whole[-2] and backend.bulk_history
        monkeypatch.setattr(backend_module, "HISTORY_PAGE", 100)  # "loss" fills an answer: read in 3 pages
        assert read() == whole
        monkeypatch.setattr(backend_module, "HISTORY_BULK_PATH", "/ajax-api/2.0/mlflow/metrics/no-such-route")
        assert read() == whole and not backend.bulk_history
    finally:
        backend.close()
