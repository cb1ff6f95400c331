"""TensorBoard as a destination: the writer's files read back by ferryman's reader point by point, checked
against tensorboardX's own checksum code, resumed after a simulated crash, and idempotent."""

from __future__ import annotations

import io
import struct
from pathlib import Path

from tensorboardX.record_writer import masked_crc32c as tbx_masked_crc32c

from ferryman.trackers.model import (
    COMPLETE_TAG,
    SOURCE_TAG,
    Artifact,
    Experiment,
    MetricBatch,
    OutcomeKind,
    Run,
    RunStatus,
)
from ferryman.trackers.registry import open_writer
from ferryman.trackers.tensorboard.reader import TensorBoardReader
from ferryman.trackers.tensorboard.writer import TensorBoardWriter
from tests.trackers.contract import point_lists

T0 = 1_748_779_200_000  # ms


def blob(data: bytes, path: str) -> Artifact:
    return Artifact(path, lambda: io.BytesIO(data), len(data))


def batches(n: int) -> list[MetricBatch]:
    steps = list(range(n))
    times = [T0 + 7 * s for s in steps]
    return [
        MetricBatch("loss", steps, times, [1 / (s + 3) for s in steps]),  # values that need all 64 bits
        MetricBatch("system/gpu_util", steps, [t + 1 for t in times], [float(s % 100) for s in steps], True),
    ]


def expected_points(n: int) -> dict[str, list[tuple[int, int, float]]]:
    return {b.key: list(zip(b.steps, b.timestamps, b.values, strict=True)) for b in batches(n)}


def test_round_trip_through_the_writer_and_reader(tmp_path: Path) -> None:
    writer = open_writer(f"tensorboard:{tmp_path / 'dest'}")
    assert isinstance(writer, TensorBoardWriter)
    experiment_key = writer.ensure_experiment(Experiment("exp-1", "My experiment/1", {"team": "vision"}))
    assert writer.ensure_experiment(Experiment("exp-1", "My experiment/1")) == experiment_key
    source_run = Run("r1", "exp-1", name="resnet: lr=0.1", status=RunStatus.FINISHED, start_time=T0,
                     end_time=T0 + 99_000, user="ada", params={"lr": "0.1", "layers": "50"})
    parent = Run("r0", "exp-1", name="sweep", start_time=T0)
    parent_key = writer.create_run(experiment_key, parent, "src:exp-1/r0")
    key = writer.create_run(experiment_key, source_run, "src:exp-1/r1")
    writer.set_parent(key, parent_key)
    assert writer.write_params(key, source_run.params) == []
    assert writer.write_params(key, {"lr": "0.1", "extra": "x" * 10_000}) == []  # only the new one is written
    writer.write_tags(key, {"mlflow.note": "n", "k": "v"}, notes="some notes")
    writer.write_metrics(key, batches(3_000))
    assert writer.write_artifact(key, blob(b"model", "model/weights.bin")) is None
    outcome = writer.write_artifact(key, blob(b"tb", "tb/events.out.tfevents.1.host"))
    assert outcome is not None and outcome.kind is OutcomeKind.RENAMED
    assert writer.stored_artifacts(key) == {"model/weights.bin": 5, "tb/events.out.tf-events.1.host": 2}
    leftover = tmp_path / "dest" / key / "ferryman" / "partial" / "tmp1.part"  # a copy a crash interrupted
    leftover.write_bytes(b"half")
    assert "ferryman/partial/tmp1.part" not in writer.stored_artifacts(key)
    writer.finish_run(key, source_run)
    assert not leftover.exists()
    writer.close()

    reader = writer.reader()
    (experiment,) = reader.experiments(["My experiment/1"])
    assert experiment.tags == {"team": "vision"}
    runs = {run.key: run for run in reader.runs(experiment)}
    run = runs[key]
    assert (run.name, run.status, run.start_time, run.end_time, run.user, run.notes, run.parent_key) == (
        "resnet: lr=0.1", RunStatus.FINISHED, T0, T0 + 99_000, "ada", "some notes", parent_key)
    assert run.params == {"lr": "0.1", "layers": "50", "extra": "x" * 10_000}
    assert run.tags == {"mlflow.note": "n", "k": "v", SOURCE_TAG: "src:exp-1/r1",
                        COMPLETE_TAG: f"FINISHED:{T0 + 99_000}"}
    assert point_lists(reader.metrics(run)) == expected_points(3_000)  # float64 values, steps, times exact
    files = {a.path: a.open().read() for a in reader.artifacts(run)}
    assert files == {"model/weights.bin": b"model", "tb/events.out.tf-events.1.host": b"tb"}
    assert reader.outcomes() == []
    migrated = writer.migrated_runs(experiment_key)
    assert migrated["src:exp-1/r1"].complete and not migrated["src:exp-1/r0"].complete


def test_event_files_use_tensorboards_framing(tmp_path: Path) -> None:
    writer = TensorBoardWriter(tmp_path)
    key = writer.create_run(writer.ensure_experiment(Experiment("e", "e")), Run("r", "e", name="r"), "s")
    writer.write_metrics(key, batches(10))
    writer.close()
    (path,) = (tmp_path / key).glob("*tfevents*")
    data, pos, records = path.read_bytes(), 0, 0
    while pos < len(data):
        header = data[pos : pos + 8]
        length = struct.unpack("<Q", header)[0]
        assert struct.unpack_from("<I", data, pos + 8)[0] == tbx_masked_crc32c(header)
        payload = data[pos + 12 : pos + 12 + length]
        assert struct.unpack_from("<I", data, pos + 12 + length)[0] == tbx_masked_crc32c(payload)
        pos += 16 + length
        records += 1
    assert records == 1 + 2 * 10  # file_version, then one event per point


def test_resume_after_a_crash_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    source = Run("r", "e", name="r", start_time=T0, end_time=T0 + 1, status=RunStatus.FINISHED)
    writer = TensorBoardWriter(tmp_path)
    experiment_key = writer.ensure_experiment(Experiment("e", "e"))
    key = writer.create_run(experiment_key, source, "src:e/r")
    writer.write_metrics(key, batches(1_000))
    (path,) = (tmp_path / key).glob("*tfevents*")
    path.write_bytes(path.read_bytes()[:-30])  # the process died in the middle of a write

    resumed = TensorBoardWriter(tmp_path)  # a new process
    (found,) = resumed.migrated_runs(experiment_key).values()
    assert found.key == key and not found.complete
    marks = resumed.high_water_marks(key)
    assert marks == {"loss": 1_000, "system/gpu_util": 999}  # the cut record is not counted
    full = batches(1_000)
    rest = [MetricBatch(b.key, b.steps[marks[b.key]:], b.timestamps[marks[b.key]:], b.values[marks[b.key]:])
            for b in full]
    resumed.write_metrics(key, rest)
    resumed.finish_run(key, source)
    resumed.close()
    reader = TensorBoardReader(tmp_path / key)
    assert point_lists(reader.metrics(Run(".", ""))) == expected_points(1_000)
    assert reader.outcomes() == []  # the damaged tail was cut away before appending
    assert len(list((tmp_path / key).glob("*tfevents*"))) == 2


def test_engine_migrates_tensorboard_into_tensorboard_verified_and_idempotent(tmp_path: Path) -> None:
    """The migration engine end to end with this writer as the destination (its reader verifies)."""
    from tensorboardX import SummaryWriter

    from ferryman.migrate.copy import migrate
    from ferryman.migrate.plan import MigrationRequest

    source = tmp_path / "logs"
    for name in ("a", "b"):
        with SummaryWriter(str(source / name)) as writer:
            for step in range(500):
                writer.add_scalar("loss", 1.0 / (step + 1), step)
            writer.add_hparams({"lr": 0.1, "name": name}, {"hparam/final": 0.5})
            writer.add_text("notes", f"run {name}", 0)
        (source / name / "config.yaml").write_text(f"name: {name}\n")
    destination = f"tensorboard:{tmp_path / 'out'}"
    report = migrate(MigrationRequest(f"tensorboard:{source}", destination, workers=2))
    assert report.ok and report.verified, report.summary()
    assert report.source_totals == report.destination_totals
    assert report.source_totals["points"] == 2 * 501 and report.source_totals["runs"] == 2
    again = migrate(MigrationRequest(f"tensorboard:{source}", destination))
    assert again.ok and again.points_written == 0


def test_hand_assembled_scalar_events_equal_protobufs_serialization() -> None:
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary

    from ferryman.trackers.tensorboard.writer import _scalar_event, _value_prefix

    for tag in ("", "loss", "a/" * 100, "späť"):
        prefix = _value_prefix(tag)
        for step in (0, 1, 127, 128, 2**40, -1, -(2**63), 2**63 - 1):
            for value in (0.0, -1.5, 1e300, float("inf")):
                summary_value = Summary.Value(tag=tag)
                summary_value.tensor.dtype = 2
                summary_value.tensor.tensor_shape.SetInParent()
                summary_value.tensor.tensor_content = struct.pack("<d", value)
                event = Event(wall_time=T0 / 1000, step=step, summary=Summary(value=[summary_value]))
                assert _scalar_event(step, T0, value, prefix) == event.SerializeToString(), (tag, step, value)


def test_a_tree_the_writer_made_reads_back_as_its_experiments(tmp_path: Path) -> None:
    from ferryman.trackers.registry import open_reader
    from ferryman.trackers.tensorboard.reader import TensorBoardTreeReader

    writer = TensorBoardWriter(tmp_path)
    for name in ("vision", "nlp"):
        experiment_key = writer.ensure_experiment(Experiment(name, name))
        key = writer.create_run(experiment_key, Run("r", name, name="r"), name)
        writer.write_metrics(key, batches(5))
        writer.finish_run(key, Run("r", name, name="r"))
    writer.close()
    reader = open_reader(f"tensorboard:{tmp_path}")
    assert isinstance(reader, TensorBoardTreeReader)
    assert sorted(e.name for e in reader.experiments()) == ["nlp", "vision"]
    (vision,) = reader.experiments(["vision"])
    (run,) = reader.runs(vision)
    assert run.key == "vision/r" and point_lists(reader.metrics(run)) == expected_points(5)
