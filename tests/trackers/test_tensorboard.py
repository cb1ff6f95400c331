"""TensorBoard reader against event files written by the real tensorboardX `SummaryWriter`.

TF2-style events (rank-0 `scalars` tensors, plugin metadata only on a tag's first event, Keras' `train/` and
`validation/` directories) cannot be written without TensorFlow, which is not installed here: they are built
with the protobuf classes tensorboardX ships and framed with `ferryman.trackers.tensorboard.tfrecord.frame`,
whose checksums are checked against tensorboardX's own `masked_crc32c`.
"""

from __future__ import annotations

import io
import json
import os
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboardX import SummaryWriter
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboardX.proto.tensor_pb2 import TensorProto
from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboardX.record_writer import masked_crc32c as tbx_masked_crc32c
from tensorboardX.summary import hparams

from ferryman.trackers.model import OutcomeKind, Run
from ferryman.trackers.registry import open_reader
from ferryman.trackers.tensorboard import reader as tensorboard_module
from ferryman.trackers.tensorboard.events import EventDecoder
from ferryman.trackers.tensorboard.reader import TensorBoardReader, _glance
from ferryman.trackers.tensorboard.tfrecord import (
    first_record,
    frame,
    last_record,
    masked_crc32c,
    read_records,
    records_containing,
)
from tests.trackers.contract import points, read_all, same_points

T0 = 1_700_000_000.0  # wall time origin of the written events (seconds)


def f32(x: float) -> float:
    return float(np.float32(x))


STEPS = [0, 1, 2, 127, 128, 300, 16_383, 16_384, 2**31, 2**40 + 3, -5]


def write_scalars(logdir: Path, n: int = 2_000) -> dict[str, list[tuple[int, int, float]]]:
    """Scalars through SummaryWriter.add_scalar with explicit steps and wall times; the expected points."""
    expected: dict[str, list[tuple[int, int, float]]] = {}
    with SummaryWriter(str(logdir), flush_secs=600) as writer:
        for i in range(n):
            wall = T0 + i * 0.001 + 0.0004
            for tag, value in (("loss", 1.0 / (i + 1)), ("train/accuracy", i * 0.37), ("a", -i * 1e30)):
                writer.add_scalar(tag, value, i, walltime=wall)
                expected.setdefault(tag, []).append((i, round(wall * 1000), f32(value)))
        for j, step in enumerate(STEPS):  # varint edge cases, a negative step, a repeated step
            wall = T0 + n + j
            writer.add_scalar("edge/step", float(j), step, walltime=wall)
            expected.setdefault("edge/step", []).append((step, round(wall * 1000), float(j)))
        writer.add_scalar("special", float("nan"), 1, walltime=T0 + 10_000)
        writer.add_scalar("special", float("inf"), 2, walltime=T0 + 10_001)
        writer.add_scalar("described", 3.5, 7, walltime=T0 + 10_002, display_name="Described",
                          summary_description="with metadata: not the one-scalar fast shape")
        expected["special"] = [(1, round((T0 + 10_000) * 1000), float("nan")),
                               (2, round((T0 + 10_001) * 1000), float("inf"))]
        expected["described"] = [(7, round((T0 + 10_002) * 1000), 3.5)]
    return expected


def test_every_scalar_point_step_and_wall_time_round_trips(tmp_path: Path) -> None:
    expected = write_scalars(tmp_path / "logs")
    reader = TensorBoardReader(tmp_path / "logs")
    runs = read_all(reader)
    assert list(runs) == ["."]
    run, series, _ = runs["."]
    assert run.name == "logs"
    assert set(series) == set(expected)
    for key, pts in expected.items():
        assert same_points(points(series[key]), pts), key
    (path,) = (tmp_path / "logs").glob("*tfevents*")
    opened = Event.FromString(next(iter(read_records(path, print))).record(0)).wall_time  # file_version, now
    # the first (file_version, written now) and last events, in time order: explicit wall times go back
    assert (run.start_time, run.end_time) == (round((T0 + 10_002) * 1000), round(opened * 1000))
    assert reader.outcomes() == []


def test_fast_path_agrees_with_protobuf_parse(tmp_path: Path) -> None:
    write_scalars(tmp_path, n=300)
    (path,) = tmp_path.glob("*tfevents*")
    chunks = list(read_records(path, lambda *problem: pytest.fail(str(problem))))
    reference: dict[str, list[tuple[int, int, float]]] = {}
    for chunk in chunks:
        for i in range(len(chunk)):
            event = Event.FromString(chunk.record(i))
            for value in event.summary.value:
                reference.setdefault(value.tag, []).append(
                    (event.step, round(event.wall_time * 1000), value.simple_value))
    decoded: dict[str, list[tuple[int, int, float]]] = {}
    decoder = EventDecoder()
    for chunk in chunks:
        for tag, series in decoder.decode(chunk, others=False).scalars.items():
            decoded.setdefault(tag, []).extend(zip(series.steps, series.wall_ms, series.values, strict=True))
    assert decoded.keys() == reference.keys()
    for tag in reference:
        assert same_points(decoded[tag], reference[tag]), tag


def test_small_chunks_and_records_larger_than_a_chunk(tmp_path: Path) -> None:
    with SummaryWriter(str(tmp_path)) as writer:
        for i in range(50):
            writer.add_scalar("x", i, i)
            writer.add_image("noise", np.random.default_rng(i).random((3, 64, 64)), i)
    (path,) = tmp_path.glob("*tfevents*")
    def read(chunk_size: int) -> list[bytes]:
        chunks = read_records(path, lambda *p: pytest.fail(str(p)), chunk_size)
        return [c.record(i) for c in chunks for i in range(len(c))]
    assert read(1_000) == read(1 << 24)
    assert len(read(1_000)) == 101


def test_hparams_become_params_of_the_run_and_the_hparams_directory_folds_in(tmp_path: Path) -> None:
    with SummaryWriter(str(tmp_path / "exp")) as writer:
        writer.add_scalar("loss", 0.5, 1, walltime=T0)
        writer.add_hparams({"lr": 0.001, "batch": 32, "optimizer": "adam", "nesterov": True},
                           {"hparam/accuracy": 0.9})
    (hparams_dir,) = [p for p in (tmp_path / "exp").iterdir() if p.is_dir()]
    assert float(hparams_dir.name) > 0  # tensorboardX names it by time.time()
    runs = read_all(TensorBoardReader(tmp_path))
    assert list(runs) == ["exp"]
    run, series, _ = runs["exp"]
    assert run.params == {"lr": "0.001", "batch": "32", "optimizer": "adam", "nesterov": "True"}
    assert set(series) == {"loss", "hparam/accuracy"}
    assert series["hparam/accuracy"].values == [f32(0.9)]


def wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes((np.sin(np.linspace(0, 100, 800)) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


WAV = wav()


def audio_summary(tag: str) -> Summary:
    """What `add_audio` writes; built here because tensorboardX's `add_audio` needs `soundfile`."""
    audio = Summary.Audio(sample_rate=8000, num_channels=1, length_frames=800, encoded_audio_string=WAV,
                          content_type="audio/wav")
    return Summary(value=[Summary.Value(tag=tag, audio=audio)])


def test_text_images_histograms_and_audio_become_artifacts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = (rng.random((3, 8, 10)) * 255).astype(np.uint8)
    samples = rng.normal(size=1_000)
    with SummaryWriter(str(tmp_path / "media"), flush_secs=600) as writer:
        writer.add_text("notes", "hello **world**", 3, walltime=T0)
        writer.add_image("sample", image, 4, walltime=T0 + 1)
        writer.add_image("sample", image[:, ::-1], 4, walltime=T0 + 2)  # same step twice: two files
        writer.add_histogram("weights", samples, 5, walltime=T0 + 3)
        writer.file_writer.add_summary(audio_summary("beep"), 6, T0 + 4)
        (tmp_path / "media" / "hparams.yaml").write_text("lr: 0.1\n")
        (tmp_path / "media" / "checkpoints").mkdir()
        (tmp_path / "media" / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    reader = TensorBoardReader(tmp_path)
    runs = read_all(reader)
    _, series, files = runs["media"]
    assert series == {}
    assert files["hparams.yaml"] == b"lr: 0.1\n"
    assert files["checkpoints/last.ckpt"] == b"weights"
    (text_line,) = files["tensorboard/text/notes/text_summary.jsonl"].decode().splitlines()
    assert json.loads(text_line) == {"step": 3, "wall_time": T0, "text": ["hello **world**"]}
    first, second = files["tensorboard/images/sample/4.png"], files["tensorboard/images/sample/4-2.png"]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(first))), image.transpose(1, 2, 0))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(second))), image[:, ::-1].transpose(1, 2, 0))
    index = [json.loads(line) for line in files["tensorboard/images/sample/index.jsonl"].splitlines()]
    assert [(i["step"], i["wall_time"], i["files"]) for i in index] == [(4, T0 + 1, ["4.png"]),
                                                                       (4, T0 + 2, ["4-2.png"])]
    (histogram,) = [json.loads(line) for line in files["tensorboard/histograms/weights.jsonl"].splitlines()]
    assert histogram["step"] == 5 and histogram["num"] == 1_000 and sum(histogram["bucket"]) == 1_000
    assert histogram["min"] == pytest.approx(samples.min())
    assert histogram["max"] == pytest.approx(samples.max())
    assert files["tensorboard/audio/beep/6.wav"] == WAV
    assert reader.outcomes() == []


def tf2_event(step: int, wall: float, tag: str, tensor: TensorProto, plugin: str | None) -> bytes:
    value = Summary.Value(tag=tag, tensor=tensor)
    if plugin:
        value.metadata.CopyFrom(SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=plugin)))
    return frame(Event(step=step, wall_time=wall, summary=Summary(value=[value])).SerializeToString())


def scalar_tensor(x: float, double: bool = False, content: bool = False) -> TensorProto:
    """A rank-0 tensor: float32 in `float_val`, or as `tensor_content` bytes (TF2's encoding) when asked or
    for a double."""
    if double:
        return TensorProto(dtype=2, tensor_shape=TensorShapeProto(), tensor_content=struct.pack("<d", x))
    if content:
        return TensorProto(dtype=1, tensor_shape=TensorShapeProto(), tensor_content=struct.pack("<f", x))
    return TensorProto(dtype=1, tensor_shape=TensorShapeProto(), float_val=[x])


def write_keras_like(logdir: Path, epochs: int = 5) -> None:
    """A Keras `TensorBoard` callback layout: train/ and validation/ with TF2 tensor scalars; metadata on the
    first event of each tag only, as TF2's writer does."""
    for split, offset in (("train", 0.0), ("validation", 0.5)):
        directory = logdir / split
        directory.mkdir(parents=True)
        records = [frame(Event(wall_time=T0, file_version="brain.Event:2").SerializeToString())]
        for epoch in range(epochs):
            wall = T0 + epoch + offset
            plugin = "scalars" if epoch == 0 else None
            records.append(tf2_event(epoch, wall, "epoch_loss", scalar_tensor(1.0 / (epoch + 1)), plugin))
            lr = scalar_tensor(0.1 / (epoch + 1), double=True)
            records.append(tf2_event(epoch, wall, "epoch_lr", lr, plugin))
        shape = TensorShapeProto(dim=[TensorShapeProto.Dim(size=2), TensorShapeProto.Dim(size=3)])
        histogram = TensorProto(dtype=2, tensor_shape=shape,
                                double_val=[0.0, 1.0, 5.0, 1.0, 2.0, 7.0])
        records.append(tf2_event(epochs - 1, T0 + epochs - 1 + offset, "kernel_0", histogram, "histograms"))
        (directory / f"events.out.tfevents.{int(T0)}.host.1.{split}.v2").write_bytes(b"".join(records))


def test_tf2_tensor_scalars_and_keras_train_validation_fold_into_one_run(tmp_path: Path) -> None:
    write_keras_like(tmp_path / "fit" / "20240101-000000")
    reader = TensorBoardReader(tmp_path / "fit")
    runs = read_all(reader)
    assert list(runs) == ["20240101-000000"]
    run, series, files = runs["20240101-000000"]
    assert set(series) == {f"{split}/{key}" for split in ("train", "validation")
                           for key in ("epoch_loss", "epoch_lr")}
    assert points(series["validation/epoch_loss"]) == [
        (e, round((T0 + e + 0.5) * 1000), f32(1.0 / (e + 1))) for e in range(5)]
    assert series["train/epoch_lr"].values == [0.1 / (e + 1) for e in range(5)]  # doubles stay exact
    assert run.start_time == round(T0 * 1000) and run.end_time == round((T0 + 4.5) * 1000)
    (line,) = files["tensorboard/histograms/train/kernel_0.jsonl"].splitlines()
    assert json.loads(line)["buckets"] == [[0.0, 1.0, 5.0], [1.0, 2.0, 7.0]]
    assert reader.outcomes() == []


def test_masked_crc_matches_tensorboardx() -> None:
    rng = np.random.default_rng(1)
    for size in (0, 1, 8, 33, 1_000):
        data = rng.bytes(size)
        assert masked_crc32c(data) == tbx_masked_crc32c(data)
    header = struct.pack("<Q", 5)
    assert frame(b"hello") == header + struct.pack("<I", tbx_masked_crc32c(header)) + b"hello" + \
        struct.pack("<I", tbx_masked_crc32c(b"hello"))


def outcomes_of(reader: TensorBoardReader, item_part: str) -> list[tuple[OutcomeKind, str]]:
    return [(o.kind, o.reason) for o in reader.outcomes() if item_part in o.item]


def record_offsets(path: Path) -> list[int]:
    data, offsets, pos = path.read_bytes(), [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
    return offsets


def test_broken_files_are_outcomes_and_everything_else_still_reads(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for name in ("good", "truncated", "bad_data_crc", "bad_header_crc"):
        write_scalars(root / name, n=40)
    (root / "empty").mkdir()
    (root / "empty" / "events.out.tfevents.1.host").write_bytes(b"")
    (root / "dangling").mkdir()
    os.symlink(tmp_path / "nowhere", root / "dangling" / "events.out.tfevents.2.host")

    def event_file(name: str) -> Path:
        (path,) = (root / name).glob("*tfevents*")
        return path

    truncated = event_file("truncated")
    offsets = record_offsets(truncated)
    truncated.write_bytes(truncated.read_bytes()[: offsets[-1] + 20])  # cut inside the last record
    data_crc = event_file("bad_data_crc")
    data_offsets = record_offsets(data_crc)
    blob = bytearray(data_crc.read_bytes())
    blob[data_offsets[10] + 14] ^= 0xFF  # a payload byte of record 10
    data_crc.write_bytes(bytes(blob))
    header_crc = event_file("bad_header_crc")
    header_offsets = record_offsets(header_crc)
    blob = bytearray(header_crc.read_bytes())
    blob[header_offsets[20] + 9] ^= 0xFF  # the length checksum of record 20
    header_crc.write_bytes(bytes(blob))

    reader = TensorBoardReader(root)

    runs = read_all(reader)
    total = {key: sum(len(b) for b in series.values()) for key, (_, series, _) in runs.items()}
    full = 3 * 40 + len(STEPS) + 2 + 1
    assert total["good"] == full
    assert total["truncated"] == full - 1
    assert total["bad_data_crc"] == full - 1
    assert total["bad_header_crc"] == 19  # records 1..19 (record 0 is the file_version event)
    assert total["empty"] == 0 and "dangling" not in runs
    assert outcomes_of(reader, "good") == []
    ((kind, reason),) = outcomes_of(reader, "truncated")
    assert kind is OutcomeKind.TRUNCATED and reason.startswith(f"truncated at byte {offsets[-1]}:")
    ((kind, reason),) = outcomes_of(reader, "bad_data_crc")
    assert kind is OutcomeKind.UNREADABLE
    assert reason.startswith(f"corrupt at byte {data_offsets[10]}: data checksum")
    ((kind, reason),) = outcomes_of(reader, "bad_header_crc")
    assert kind is OutcomeKind.UNREADABLE
    assert reason.startswith(f"corrupt at byte {header_offsets[20]}: header checksum")
    ((kind, reason),) = outcomes_of(reader, "empty")
    assert kind is OutcomeKind.UNREADABLE and "empty event file" in reason
    ((kind, reason),) = outcomes_of(reader, "dangling")
    assert kind is OutcomeKind.UNREADABLE and "dangling symlink" in reason


def test_files_outside_runs_are_reported_and_nested_runs_stay_separate(tmp_path: Path) -> None:
    write_scalars(tmp_path / "outer", n=10)
    write_scalars(tmp_path / "outer" / "inner", n=10)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("x")
    reader = TensorBoardReader(tmp_path)
    runs = read_all(reader)
    assert sorted(runs) == ["outer", "outer/inner"]
    assert not any(path.startswith("inner") for path in runs["outer"][2])
    assert [(o.kind, o.item) for o in reader.outcomes()] == [(OutcomeKind.SKIPPED, "file notes/readme.txt")]


def test_uri_registry_and_since_filter(tmp_path: Path) -> None:
    write_scalars(tmp_path / "old", n=5)
    reader = open_reader(f"tensorboard:{tmp_path}")
    assert isinstance(reader, TensorBoardReader)
    (experiment,) = reader.experiments()
    assert [r.key for r in reader.runs(experiment)] == ["old"]
    assert list(reader.runs(experiment, since=round((T0 + 10**6) * 1000))) == []
    assert list(reader.experiments(["other"])) == []
    with pytest.raises(FileNotFoundError, match="not a directory"):
        TensorBoardReader(tmp_path / "missing")


def test_lightning_style_hparams_inside_the_scalar_file(tmp_path: Path) -> None:
    """Lightning's logger writes the hparams summaries into the run's own event file, among the scalars."""
    with SummaryWriter(str(tmp_path / "version_0"), flush_secs=600) as writer:
        for i in range(5_000):
            writer.add_scalar("train_loss", 1.0 / (i + 1), i, walltime=T0 + i)
            if i == 2_500:
                for summary in hparams({"lr": 0.5, "layers": 4}, {"hp_metric": 0.0}):
                    writer.file_writer.add_summary(summary, i, T0 + i)
    (path,) = (tmp_path / "version_0").glob("*tfevents*")
    reader = TensorBoardReader(tmp_path)
    runs = read_all(reader)
    run, series, _ = runs["version_0"]
    assert run.params == {"lr": "0.5", "layers": "4"}
    assert len(series["train_loss"]) == 5_000
    assert reader._walk_for_times(path) == _glance(path)  # the quick look agrees with a full read


def test_quick_look_helpers_fall_back_when_records_are_out_of_reach(tmp_path: Path) -> None:
    body = [Event(wall_time=T0 + i, step=i).SerializeToString() for i in range(3)]
    big = Event(wall_time=T0 + 9, summary=Summary(value=[Summary.Value(tag="x" * 5_000, simple_value=1.0)]))
    path = tmp_path / "events.out.tfevents.1.host"
    path.write_bytes(b"".join(frame(b) for b in [*body, big.SerializeToString()]))
    size = path.stat().st_size
    with open(path, "rb") as f:
        assert first_record(f, size) == body[0]
        assert last_record(f, size) == big.SerializeToString()
        assert last_record(f, size, window=1_000) is None  # the last record starts before the window
        assert records_containing(f, size, b"xxxx" + b"x" * 10, window=100) is None
        assert records_containing(f, size, b"no such bytes") == []
    path.write_bytes(path.read_bytes()[:-3])  # truncated: no record ends at the end
    with open(path, "rb") as f:
        assert last_record(f, size - 3) is None
    reader = TensorBoardReader(tmp_path)
    runs = read_all(reader)
    assert runs["."][0].end_time == round((T0 + 2) * 1000)  # from the full read that reports the damage
    assert [o.kind for o in reader.outcomes()] == [OutcomeKind.TRUNCATED]


def test_tensor_scalars_count_only_for_tags_of_the_scalars_plugin(tmp_path: Path) -> None:
    """The fast path recognises rank-0 tensors by their bytes; the tag's plugin says if they are scalars."""
    records = [frame(Event(wall_time=T0, file_version="brain.Event:2").SerializeToString())]
    for step in range(40):
        def event(tag: str, tensor: TensorProto, plugin: str, step: int = step) -> bytes:
            return tf2_event(step, T0 + step, tag, tensor, plugin if step == 0 else None)

        records.append(event("f32", scalar_tensor(step / 3, content=True), "scalars"))
        records.append(event("f64", scalar_tensor(step / 3, double=True), "scalars"))
        records.append(event("gauge", scalar_tensor(float(step), content=True), "custom"))
    (tmp_path / "events.out.tfevents.1.host").write_bytes(b"".join(records))
    reader = TensorBoardReader(tmp_path)
    runs = read_all(reader)
    _, series, files = runs["."]
    assert set(series) == {"f32", "f64"}
    assert series["f32"].values == [f32(s / 3) for s in range(40)]
    assert series["f64"].values == [s / 3 for s in range(40)]
    assert series["f64"].steps == list(range(40))
    lines = [json.loads(line) for line in files["tensorboard/tensors/gauge.jsonl"].splitlines()]
    assert [(x["step"], x["plugin"], x["value"]) for x in lines] == [
        (s, "custom", float(s)) for s in range(40)]
    assert reader.outcomes() == []


def test_a_file_that_cannot_be_opened_is_an_outcome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_scalars(tmp_path / "ok", n=5)
    write_scalars(tmp_path / "locked", n=5)
    real = tensorboard_module.read_records

    def read_records_denied(path: Path, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        if "locked" in str(path):  # tests run as root, so chmod cannot make a file unreadable
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(tensorboard_module, "read_records", read_records_denied)
    monkeypatch.setattr(tensorboard_module, "_glance", lambda path: None)
    reader = TensorBoardReader(tmp_path)
    runs = read_all(reader)
    assert sum(len(b) for b in runs["ok"][1].values()) > 0 and runs["locked"][1] == {}
    assert {(o.kind, o.reason) for o in reader.outcomes()} == {
        (OutcomeKind.UNREADABLE, "cannot be read: Permission denied")}


def test_runs_read_in_parallel_threads_match_a_sequential_read(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    for name in ("a", "b", "c", "d"):
        write_scalars(tmp_path / name, n=200)
    sequential = read_all(TensorBoardReader(tmp_path))
    reader = TensorBoardReader(tmp_path)
    (experiment,) = reader.experiments()

    def read(run: Run) -> tuple[str, dict[str, list[float]], set[str]]:
        series: dict[str, list[float]] = {}
        for batch in reader.metrics(run):
            series.setdefault(batch.key, []).extend(batch.values)
        return run.key, series, {a.path for a in reader.artifacts(run)}

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(read, list(reader.runs(experiment))))
    for key, series, artifacts in results:
        assert {k: len(v) for k, v in series.items()} == {k: len(b) for k, b in sequential[key][1].items()}
        assert artifacts == set(sequential[key][2])
    reader.close()


def test_predicted_walk_finds_exactly_the_records_a_plain_walk_finds() -> None:
    """`_walk` confirms predicted offsets in bulk; it must agree with reading one length after another."""
    from ferryman.trackers.tensorboard.tfrecord import _walk

    def plain(buf: bytes) -> tuple[list[int], int]:
        offsets, pos = [], 0
        while pos + 16 <= len(buf) and pos + 16 + struct.unpack_from("<Q", buf, pos)[0] <= len(buf):
            offsets.append(pos)
            pos += 16 + struct.unpack_from("<Q", buf, pos)[0]
        return offsets, pos

    rng = np.random.default_rng(0)
    for trial in range(60):
        pattern = rng.integers(0, 50, rng.integers(1, 6))
        sizes = [int(pattern[i % len(pattern)]) if rng.random() > 0.01 else int(rng.integers(300))
                 for i in range(int(rng.integers(0, 3_000)))]  # periodic, with irregular records between
        records = [frame(bytes(size)) for size in sizes]
        buf = b"".join(records)
        buf = buf[: int(rng.integers(0, len(buf) + 1))] if trial % 2 else buf  # a cut tail, half of the time
        offsets, pos = _walk(buf)
        assert (offsets.tolist(), pos) == plain(buf), trial


def test_tf2_image_text_and_audio_tensors_become_artifacts(tmp_path: Path) -> None:
    """TF2's `tf.summary.image/text/audio` write string tensors: [width, height, png...], text, [k, 2]."""
    png = io.BytesIO()
    Image.fromarray(np.zeros((4, 6, 3), dtype=np.uint8)).save(png, format="PNG")

    def strings(values: list[bytes], shape: list[int]) -> TensorProto:
        dims = [TensorShapeProto.Dim(size=n) for n in shape]
        return TensorProto(dtype=7, tensor_shape=TensorShapeProto(dim=dims), string_val=values)

    records = [
        tf2_event(2, T0, "samples", strings([b"6", b"4", png.getvalue(), png.getvalue()], [4]), "images"),
        tf2_event(3, T0 + 1, "caption", strings(["ünïcode".encode()], []), "text"),
        tf2_event(4, T0 + 2, "speech", strings([WAV, b"hello"], [1, 2]), "audio"),
    ]
    (tmp_path / "events.out.tfevents.1.host.v2").write_bytes(b"".join(records))
    reader = TensorBoardReader(tmp_path)
    runs = read_all(reader)
    files = runs["."][2]
    assert files["tensorboard/images/samples/2.png"] == png.getvalue()
    assert files["tensorboard/images/samples/2-2.png"] == png.getvalue()
    (index,) = [json.loads(line) for line in files["tensorboard/images/samples/index.jsonl"].splitlines()]
    assert (index["width"], index["height"], index["files"]) == (6, 4, ["2.png", "2-2.png"])
    (text,) = [json.loads(line) for line in files["tensorboard/text/caption.jsonl"].splitlines()]
    assert text == {"step": 3, "wall_time": T0 + 1, "text": "ünïcode"}
    assert files["tensorboard/audio/speech/4.wav"] == WAV
    (audio,) = [json.loads(line) for line in files["tensorboard/audio/speech/index.jsonl"].splitlines()]
    assert audio["labels"] == ["hello"]
    assert reader.outcomes() == []
