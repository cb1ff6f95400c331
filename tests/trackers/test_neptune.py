"""Neptune exports: the reader against a hand-built export (`data/neptune_export/build.py`, written without
ferryman's writer), the writer read back point by point, idempotent re-runs and resume, and bad input."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ferryman.trackers.model import (
    COMPLETE_TAG,
    SOURCE_TAG,
    Artifact,
    Experiment,
    MetricBatch,
    OutcomeKind,
    Run,
)
from ferryman.trackers.model import RunStatus as S
from ferryman.trackers.neptune.export import NeptuneExportError, safe_path_part
from ferryman.trackers.neptune.reader import NeptuneExportReader
from ferryman.trackers.neptune.writer import NeptuneExportWriter
from ferryman.trackers.registry import open_reader
from tests.trackers.contract import read_all

HAND_BUILT = Path(__file__).parent / "data" / "neptune_export"
T0 = 1748779200000  # 2025-06-01T12:00:00Z, the hand-built export's time origin


def test_reads_the_hand_built_export() -> None:
    reader = open_reader(f"neptune-export:{HAND_BUILT}")
    assert [e.name for e in reader.experiments()] == ["acme/vision"]
    runs = read_all(reader)
    assert set(runs) == {"VIS-1", "VIS-2"}

    run, series, files = runs["VIS-1"]
    assert (run.name, run.user, run.notes, run.status) == ("baseline", "alice", "first try", S.FINISHED)
    assert (run.start_time, run.end_time) == (T0, T0 + 3_600_250)
    assert run.tags == {"resnet": "", "best": "", "sys/hostname": "gpu-node-1"}
    assert run.params == {
        "parameters/lr": "0.001",
        "parameters/epochs": "10",
        "parameters/optimizer": "adam",
        "parameters/use_amp": "True",
        "parameters/started": "2025-06-01T12:00:00+00:00",
        "parameters/datasets": "coco,imagenet",
    }
    loss = series["train/loss"]  # 60 points in part 0, 40 in part 1
    assert loss.steps == list(range(100))
    assert loss.timestamps == [T0 + 1000 * s + 7 for s in range(100)]
    assert loss.values == [1.0 / (s + 1) for s in range(100)]
    assert series["val/acc"].steps == list(range(0, 100, 10))
    assert series["monitoring/cpu"].system and not loss.system
    assert files["model/weights.pt"] == b"\x00weights" * 100
    assert files["samples/img/step_1/sample.png"] == b"\x01" * 64
    assert files["source_code/files/pkg/util.py"] == b"X = 1\n"
    assert files["logs/stdout/series.jsonl"].decode().splitlines()[2] == (
        f'{{"step": 2, "timestamp": {T0 + 2000}, "value": "line 2"}}'
    )
    assert b'"edges": [0.0, 0.5, 1.0]' in files["weights/hist/histograms.jsonl"]

    forked, series, _ = runs["VIS-2"]
    assert (forked.status, forked.parent_key, forked.params) == (S.FAILED, "VIS-1", {"parameters/lr": "0.01"})
    assert series["train/loss"].timestamps == [T0 + 7_200_000, T0 + 7_200_000]  # missing one → run start
    assert series["lr/schedule"].steps == [0]
    reported = {(o.kind, o.item) for o in reader.outcomes()}
    assert reported == {
        (OutcomeKind.TRUNCATED, "run VIS-2/metric lr/schedule"),
        (OutcomeKind.TRUNCATED, "run VIS-2/metric train/loss"),
    }


def test_experiment_filter_and_since() -> None:
    reader = NeptuneExportReader(HAND_BUILT)
    assert list(reader.experiments(["other/project"])) == []
    (experiment,) = reader.experiments(["acme/vision"])
    assert [r.key for r in reader.runs(experiment, since=T0 + 7_000_000)] == ["VIS-2"]


def write_run(writer: NeptuneExportWriter, source: str, points: int = 50) -> str:
    key = writer.ensure_experiment(Experiment("exp-1", "team/project"))
    run = Run("r1", "exp-1", name="first", start_time=T0, end_time=T0 + 5000, user="bob", status=S.KILLED)
    run_key = writer.create_run(key, run, source)
    writer.write_params(run_key, {"lr": "0.1", "note": "x" * 10_000})
    writer.write_tags(run_key, {"team": "cv", "best": ""}, notes="notes here")
    half = points // 2
    for lo, hi in ((0, half), (half, points)):
        writer.write_metrics(
            run_key,
            [
                MetricBatch(
                    "loss",
                    list(range(lo, hi)),
                    [T0 + s for s in range(lo, hi)],
                    [s * 0.5 for s in range(lo, hi)],
                ),
                MetricBatch("system/gpu", [lo], [T0 + lo], [99.0], system=True),
            ],
        )
    assert writer.write_artifact(run_key, Artifact("model/m.bin", lambda: io.BytesIO(b"abc" * 1000))) is None
    writer.finish_run(run_key, run)
    return run_key


def test_writer_output_reads_back_point_by_point(tmp_path: Path) -> None:
    writer = NeptuneExportWriter(tmp_path / "out")
    run_key = write_run(writer, "mlflow:src/r1")
    project_dir = tmp_path / "out" / "data" / safe_path_part("team/project")
    assert sorted(p.name for p in project_dir.iterdir()) == [f"{safe_path_part(run_key)}_part_0.parquet"]
    ((run, series, files),) = read_all(NeptuneExportReader(tmp_path / "out")).values()
    assert (run.name, run.user, run.notes, run.start_time, run.end_time) == (
        "first",
        "bob",
        "notes here",
        T0,
        T0 + 5000,
    )
    assert run.status is S.KILLED  # kept exactly in ferryman/status (Neptune only knows failed or not)
    assert run.params == {"lr": "0.1", "note": "x" * 10_000}
    assert run.tags == {"team": "cv", "best": "", SOURCE_TAG: "mlflow:src/r1", COMPLETE_TAG: "true"}
    assert series["loss"].steps == list(range(50)) and series["loss"].timestamps == [
        T0 + s for s in range(50)
    ]
    assert series["loss"].values == [s * 0.5 for s in range(50)]
    assert series["system/gpu"].system and series["system/gpu"].steps == [0, 25]
    assert files == {"model/m.bin": b"abc" * 1000}


def test_writer_is_idempotent_and_resumes(tmp_path: Path) -> None:
    writer = NeptuneExportWriter(tmp_path / "out")
    experiment_key = writer.ensure_experiment(Experiment("exp-1", "team/project"))
    run = Run("r1", "exp-1", name="first", start_time=T0)
    run_key = writer.create_run(experiment_key, run, "src/r1")
    writer.write_params(run_key, {"lr": "0.1"})
    writer.write_metrics(run_key, [MetricBatch("loss", [0, 1, 2], [T0, T0 + 1, T0 + 2], [3.0, 2.0, 1.0])])

    # "crash": a new writer finds the half-written run, its high-water marks and params, and completes it
    again = NeptuneExportWriter(tmp_path / "out")
    (found,) = again.migrated_runs(experiment_key).values()
    assert (found.key, found.source, found.complete) == (run_key, "src/r1", False)
    assert again.create_run(experiment_key, run, "src/r1") == run_key
    assert again.high_water_marks(run_key) == {"loss": 3}
    again.write_params(run_key, {"lr": "0.1", "epochs": "3"})
    again.write_metrics(run_key, [MetricBatch("loss", [3], [T0 + 3], [0.5])])
    again.write_artifact(run_key, Artifact("a.txt", lambda: io.BytesIO(b"one")))
    again.write_artifact(run_key, Artifact("a.txt", lambda: io.BytesIO(b"two")))  # overwritten, one row
    again.finish_run(run_key, run)
    assert again.migrated_runs(experiment_key)["src/r1"].complete
    assert again.stored_artifacts(run_key) == {"a.txt": 3}

    ((done, series, files),) = read_all(NeptuneExportReader(tmp_path / "out")).values()
    assert done.params == {"lr": "0.1", "epochs": "3"}
    assert series["loss"].values == [3.0, 2.0, 1.0, 0.5]
    assert files == {"a.txt": b"two"}


def test_interrupted_compaction_is_redone(tmp_path: Path) -> None:
    writer = NeptuneExportWriter(tmp_path / "out")
    run_key = write_run(writer, "src/r1")
    project_dir = tmp_path / "out" / "data" / safe_path_part("team/project")
    part_0 = project_dir / f"{safe_path_part(run_key)}_part_0.parquet"
    # a crash after the compacted part was renamed but before the journals were deleted
    journal = project_dir / f"{safe_path_part(run_key)}.journal-000000.parquet"
    shutil.copy(part_0, journal)
    found = NeptuneExportWriter(tmp_path / "out").migrated_runs("team/project")
    assert found["src/r1"].complete and not journal.exists()
    ((_, series, _),) = read_all(NeptuneExportReader(tmp_path / "out")).values()
    assert len(series["loss"]) == 50  # no duplicates


def test_steps_beyond_the_decimal_column_are_refused(tmp_path: Path) -> None:
    writer = NeptuneExportWriter(tmp_path / "out")
    key = writer.ensure_experiment(Experiment("e", "p"))
    run_key = writer.create_run(key, Run("r", "e"), "src/r")
    with pytest.raises(ValueError, match="huge"):
        writer.write_metrics(run_key, [MetricBatch("huge", [10**13], [T0], [1.0])])
    assert writer.high_water_marks(run_key) == {}


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.fixture
def export_copy(tmp_path: Path) -> Path:
    shutil.copytree(HAND_BUILT, tmp_path / "export", ignore=shutil.ignore_patterns("build.py"))
    return tmp_path / "export"


def parts(export: Path, run_id: str) -> list[Path]:
    return sorted((export / "data" / safe_path_part("acme/vision")).glob(f"{safe_path_part(run_id)}_part_*"))


def test_missing_export_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NeptuneExportError, match=str(tmp_path / "nope")):
        NeptuneExportReader(tmp_path / "nope")


def test_corrupt_part_is_reported_and_the_rest_migrates(export_copy: Path) -> None:
    part_1 = parts(export_copy, "VIS-1")[1]
    part_1.write_bytes(b"PAR1 this is not parquet")
    reader = NeptuneExportReader(export_copy)
    runs = read_all(reader)
    assert len(runs["VIS-1"][1]["train/loss"]) == 60  # part 0 still read
    assert len(runs["VIS-2"][1]["train/loss"]) == 2
    reported = [o for o in reader.outcomes() if o.item == f"file {part_1}"]
    assert len(reported) == 1 and reported[0].kind is OutcomeKind.UNREADABLE  # once, though read three times


def test_missing_required_column_names_file_and_column(export_copy: Path) -> None:
    (part,) = parts(export_copy, "VIS-2")
    pq.write_table(pq.read_table(part).drop_columns(["attribute_type"]), part)
    reader = NeptuneExportReader(export_copy)
    assert set(read_all(reader)) == {"VIS-1"}
    assert any(o.item == f"file {part}" and "attribute_type" in o.reason for o in reader.outcomes())


def test_wrong_column_type_names_file_and_column(export_copy: Path) -> None:
    (part,) = parts(export_copy, "VIS-2")
    table = pq.read_table(part)
    index = table.schema.get_field_index("float_value")
    as_text = pa.array([None if v is None else str(v) for v in table.column(index).to_pylist()], pa.string())
    pq.write_table(table.set_column(index, "float_value", as_text), part)
    reader = NeptuneExportReader(export_copy)
    runs = read_all(reader)
    assert runs["VIS-2"][1] == {} and runs["VIS-2"][0].params == {}  # values unusable, run still listed
    assert f"file {part} column float_value" in {o.item for o in reader.outcomes()}
    assert any("points without a value" in o.reason for o in reader.outcomes())


def test_missing_file_and_incomplete_run_are_reported(export_copy: Path) -> None:
    files = export_copy / "files" / safe_path_part("acme/vision") / safe_path_part("VIS-1")
    (files / "model" / "weights.pt").unlink()
    parts(export_copy, "VIS-2")[0].rename(parts(export_copy, "VIS-2")[0].with_name("VIS-2_part_1.parquet"))
    reader = NeptuneExportReader(export_copy)
    runs = read_all(reader)
    assert "model/weights.pt" not in runs["VIS-1"][2] and "samples/img/step_0/sample.png" in runs["VIS-1"][2]
    items = {o.item: o.reason for o in reader.outcomes()}
    assert "missing from the export" in items["run VIS-1/file model/weights"]
    assert "without part_0" in items["run VIS-2"]


def test_file_paths_relative_to_the_files_root_are_found(export_copy: Path) -> None:
    """Early exporter versions stored file paths relative to `files/` rather than `files/<project>/`."""
    part = parts(export_copy, "VIS-1")[0]
    table = pq.read_table(part)
    index = table.schema.get_field_index("file_value")
    prefix = safe_path_part("acme/vision") + "/"
    rooted = [None if v is None else {"path": prefix + v["path"]} for v in table.column(index).to_pylist()]
    pq.write_table(
        table.set_column(index, table.schema.field(index), pa.array(rooted, table.schema.field(index).type)),
        part,
    )
    reader = NeptuneExportReader(export_copy)
    files = read_all(reader)["VIS-1"][2]
    assert files["model/weights.pt"] == b"\x00weights" * 100 and "source_code/files/train.py" in files
    assert not [o for o in reader.outcomes() if "/file " in o.item]
