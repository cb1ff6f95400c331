"""The TensorBoard reader on every dataset of the corpus (`corpus/trackers/tensorboard`): real Lightning,
Keras and torch SummaryWriter logs, including files holding only the `file_version` event.

Points are checked against an independent count: each record parsed whole with the protobuf classes.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from tensorboardX.proto.event_pb2 import Event

from ferryman.trackers.model import OutcomeKind
from ferryman.trackers.tensorboard.reader import KERAS_SPLITS, TensorBoardReader, is_event_file

pytestmark = pytest.mark.corpus


def datasets(corpus: Path) -> list[Path]:
    return sorted(p for p in (corpus / "trackers" / "tensorboard").iterdir() if p.is_dir())


def independent_scalar_count(path: Path) -> int:
    """Scalar values in a well-formed event file, by a plain record-by-record protobuf parse."""
    data, pos, count, plugins = path.read_bytes(), 0, 0, {}
    while pos < len(data):
        length = struct.unpack_from("<Q", data, pos)[0]
        event = Event.FromString(data[pos + 12 : pos + 12 + length])
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name:
                plugins[value.tag] = value.metadata.plugin_data.plugin_name
            kind = value.WhichOneof("value")
            count += kind == "simple_value" or (kind == "tensor" and plugins.get(value.tag) == "scalars")
        pos += 16 + length
    return count


def test_corpus_datasets_read_completely(corpus_dir: Path) -> None:
    found = datasets(corpus_dir)
    assert found, "no TensorBoard datasets in the corpus"
    for root in found:
        reader = TensorBoardReader(root)
        (experiment,) = reader.experiments()
        assert experiment.name == root.name
        runs = list(reader.runs(experiment))
        assert runs, root.name
        total_points = 0
        for run in runs:
            run_dir = root if run.key == "." else root / run.key
            event_files = [p for p in run_dir.rglob("*") if is_event_file(p.name)]
            assert event_files, run.key
            counts: dict[str, int] = {}
            for batch in reader.metrics(run):
                assert len(batch.steps) == len(batch.timestamps) == len(batch) > 0
                assert run.start_time is not None and run.end_time is not None
                inside = all(run.start_time <= t <= run.end_time for t in batch.timestamps)
                assert inside, (run.key, batch.key)
                counts[batch.key] = counts.get(batch.key, 0) + len(batch)
            expected = sum(independent_scalar_count(p) for p in event_files)
            assert sum(counts.values()) == expected, run.key
            total_points += expected
            if {p.parent.name for p in event_files} <= set(KERAS_SPLITS) and run_dir.name not in KERAS_SPLITS:
                assert all(key.split("/", 1)[0] in KERAS_SPLITS for key in counts), run.key
            for artifact in reader.artifacts(run):
                with artifact.open() as stream:
                    assert len(stream.read()) == artifact.size
            if any(p.stat().st_size > 40 for p in event_files):
                assert counts or any(True for _ in reader.artifacts(run)), run.key
        assert total_points > 0, root.name
        for outcome in reader.outcomes():
            assert outcome.kind in (OutcomeKind.SKIPPED, OutcomeKind.TRUNCATED, OutcomeKind.UNREADABLE)
            assert outcome.item.startswith("file ") and os.path.lexists(root / outcome.item[5:])
        reader.close()


def test_corpus_lightning_hparams_and_files(corpus_dir: Path) -> None:
    for root in datasets(corpus_dir):
        for hparams_yaml in root.rglob("hparams.yaml"):
            if not any(is_event_file(p.name) for p in hparams_yaml.parent.iterdir()):
                continue
            reader = TensorBoardReader(root)
            (experiment,) = reader.experiments()
            key = hparams_yaml.parent.relative_to(root).as_posix()
            (run,) = [r for r in reader.runs(experiment) if r.key == key]
            assert run.params, key  # Lightning logs its hyperparameters through the hparams plugin
            assert "hparams.yaml" in {a.path for a in reader.artifacts(run)}
            reader.close()
