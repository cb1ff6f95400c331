"""Neptune exports <-> MLflow through the migration engine, against real MLflow servers: the hand-built export
(written without ferryman, `tests/trackers/data/neptune_export`) and one written by ferryman's writer go to
MLflow; MLflow goes to a Neptune export and is read back. Each direction is verified point by point by the
engine's validator and re-checked here against the source."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ferryman.migrate.copy import Migration, migrate
from ferryman.migrate.plan import MigrationRequest
from ferryman.trackers.model import MetricBatch
from ferryman.trackers.neptune.reader import NeptuneExportReader
from ferryman.trackers.neptune.writer import NeptuneExportWriter
from ferryman_dev.mlflow import MlflowServer
from tests.migrate.sources import client, populate_bulk, populate_rich
from tests.trackers.contract import point_lists, same_points

pytestmark = pytest.mark.mlflow

HAND_BUILT = Path(__file__).parents[1] / "trackers" / "data" / "neptune_export"
T0 = 1748779200000


def test_hand_built_export_to_mlflow_verifies(mlflow_destination: MlflowServer) -> None:
    request = MigrationRequest(
        source=f"neptune-export:{HAND_BUILT}", destination=mlflow_destination.url, workers=2
    )
    report = migrate(request)
    assert report.ok, report.to_dict()
    assert len(report.runs) == 2 and report.source_totals == report.destination_totals
    assert {o.item for o in report.outcomes} >= {"run VIS-2/metric lr/schedule"}  # the fractional step

    mlflow = client(mlflow_destination.url)
    experiment = mlflow.get_experiment_by_name("acme/vision")
    assert experiment is not None
    runs = {r.info.run_name: r for r in mlflow.search_runs([experiment.experiment_id])}
    base = runs["baseline"]
    assert (base.info.start_time, base.info.end_time, base.info.status) == (T0, T0 + 3_600_250, "FINISHED")
    assert (
        base.data.params["parameters/optimizer"] == "adam" and base.data.params["parameters/epochs"] == "10"
    )
    history = sorted(mlflow.get_metric_history(base.info.run_id, "train/loss"), key=lambda m: m.step)
    assert [(m.step, m.timestamp, m.value) for m in history] == [
        (s, T0 + 1000 * s + 7, 1.0 / (s + 1)) for s in range(100)
    ]
    assert runs["forked"].data.tags["mlflow.parentRunId"] == base.info.run_id
    paths = {a.path for a in mlflow.list_artifacts(base.info.run_id, "model")}
    assert paths == {"model/weights.pt"}

    again = migrate(request)  # idempotent
    assert again.ok and again.points_written == 0


def test_mlflow_to_neptune_export_reads_back_and_migrates_on(
    mlflow_source: MlflowServer, mlflow_destination: MlflowServer, tmp_path: Path
) -> None:
    name = f"to-neptune-{uuid.uuid4().hex[:8]}"
    source = populate_rich(mlflow_source.url, name, steps=50)
    export = tmp_path / "export"
    request = MigrationRequest(
        source=mlflow_source.url, destination=f"neptune-export:{export}", experiments=[name], workers=2
    )
    report = migrate(request)
    assert report.ok, report.to_dict()
    assert report.source_totals == report.destination_totals
    assert report.source_totals["points"] == source.points

    # read back with the Neptune reader and compare with the MLflow source point by point
    mlflow = client(mlflow_source.url)
    reader = NeptuneExportReader(export)
    (experiment,) = reader.experiments()
    runs = {run.name: run for run in reader.runs(experiment)}
    assert set(runs) == {"sweep", "trial-0", "trial-1", "trial-2"}
    for run_id in source.run_ids:
        original = mlflow.get_run(run_id)
        copied = runs[original.info.run_name]
        assert copied.status.value == original.info.status
        assert (copied.start_time, copied.end_time) == (original.info.start_time, original.info.end_time)
        assert {k: v for k, v in copied.params.items()} == original.data.params
        got = point_lists(reader.metrics(copied))
        for key in original.data.metrics:
            want = [(m.step, m.timestamp, m.value) for m in mlflow.get_metric_history(run_id, key)]
            assert same_points(sorted(want), sorted(got[key])), key
    parquet_files = sorted(export.rglob("*.parquet"))
    assert len(parquet_files) == 4 and all(p.name.endswith("_part_0.parquet") for p in parquet_files)

    again = migrate(
        request
    )  # idempotent: finished runs are skipped (the RUNNING one is resumed), no new files
    assert again.ok and again.points_written == 0 and sum(r.bytes_written for r in again.runs) == 0
    assert sorted(r.action for r in again.runs) == ["resume", "skip", "skip", "skip"]
    assert sorted(export.rglob("*.parquet")) == parquet_files

    # and the export ferryman wrote migrates on to another MLflow
    onward = MigrationRequest(
        source=f"neptune-export:{export}", destination=mlflow_destination.url, workers=2
    )
    report = migrate(onward)
    assert report.ok, report.to_dict()
    assert report.destination_totals["points"] == source.points


class CrashingWriter(NeptuneExportWriter):
    """Fails on its `fail_at`-th metrics write, as a killed migration would stop mid-run."""

    def __init__(self, path: Path, fail_at: int) -> None:
        super().__init__(path)
        self.calls, self.fail_at = 0, fail_at

    def write_metrics(self, run_key: str, batches: list[MetricBatch]) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("simulated crash")
        super().write_metrics(run_key, batches)


def test_interrupted_migration_to_neptune_resumes_without_duplicates(
    mlflow_source: MlflowServer, tmp_path: Path
) -> None:
    name = f"to-neptune-resume-{uuid.uuid4().hex[:8]}"
    source = populate_bulk(mlflow_source.url, name, runs=2, keys=2, steps=2500)
    export = tmp_path / "export"
    request = MigrationRequest(
        source=mlflow_source.url, destination=f"neptune-export:{export}", experiments=[name], workers=1
    )
    crashed = Migration(request, writer=CrashingWriter(export, fail_at=4)).run()
    assert not crashed.ok and crashed.failed_runs

    resumed = migrate(request)  # a fresh writer finds the half-written run from its journals
    assert resumed.ok, resumed.to_dict()
    assert "resume" in {r.action for r in resumed.runs}
    assert resumed.source_totals == resumed.destination_totals
    assert resumed.destination_totals["points"] == source.points == 10_000
    assert sorted(p.name.split("_part_")[1] for p in export.rglob("*.parquet")) == ["0.parquet", "0.parquet"]
