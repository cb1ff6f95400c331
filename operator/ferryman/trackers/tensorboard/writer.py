"""TensorBoard log directories as a migration destination (`tensorboard:PATH`).

Layout: `PATH/<experiment>/<run>/`, one directory per experiment and per run (named after them, made safe
for file systems), which TensorBoard shows as runs `<experiment>/<run>` when pointed at PATH.

* Metrics are TF2-style scalar events: a rank-0 `DT_DOUBLE` tensor with the `scalars` plugin, so values keep
  all 64 bits (a `simple_value` is a float32), with the original step and wall time (ms / 1000).
* Params are an hparams `session_start_info` (string values, as the neutral model holds them): TensorBoard's
  HParams dashboard lists them.
* Artifacts are files under their relative path in the run directory (a name containing `tfevents` is
  renamed, or TensorBoard would read it as an event file, and reported).
* What event files cannot hold (source identity, completion, name, status, start and end time, user, notes,
  tags, parent) is kept in `<run>/ferryman/run.json`; `ferryman/experiment.json` names the experiment. The
  reader (`TensorBoardTreeReader`) reads both back.

Resume: every writer session appends to a new event file (named so files sort in creation order). Before a
run is resumed its files are repaired: a record cut by a crash is truncated away, so the points counted by
`high_water_marks` are exactly those stored.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionStartInfo
from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

from ferryman.trackers import paths
from ferryman.trackers.model import (
    INTERNAL_PREFIX,
    Artifact,
    DestinationRun,
    Experiment,
    MetricBatch,
    Outcome,
    OutcomeKind,
    Run,
    RunStatus,
    TrackerReader,
    WithoutModelRegistry,
    source_state,
)
from ferryman.trackers.registry import Endpoint
from ferryman.trackers.tensorboard.events import HPARAMS_PLUGIN, SCALARS_PLUGIN, SESSION_START_TAG
from ferryman.trackers.tensorboard.reader import (
    EXPERIMENT_METADATA,
    RUN_METADATA,
    TensorBoardReader,
    TensorBoardTreeReader,
    is_event_file,
    read_json,
)
from ferryman.trackers.tensorboard.tfrecord import frame, read_records

PARTIAL_DIR = "ferryman/partial"  # artifacts being copied
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._=+,@ -]")
_DT_DOUBLE = 2


def safe_name(name: str) -> str:
    """One path component for an experiment or run name."""
    cleaned = _UNSAFE_NAME.sub("_", name).strip(" .") or "_"
    return cleaned if cleaned != "ferryman" else "_ferryman"


def _write_json(path: Path, document: dict[str, Any]) -> None:
    """Atomically: a crash leaves the old or the new document, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as out:
        json.dump(document, out, indent=1, sort_keys=True)
    os.replace(out.name, path)


def _repair(path: Path) -> None:
    """Cut a damaged tail (a record a crash left half-written) off an event file."""
    problems: list[int] = []
    for _ in read_records(path, lambda problem, offset, _text: problems.append(offset)):
        pass
    if problems:
        with open(path, "r+b") as f:
            f.truncate(min(problems))


_DOUBLE_TENSOR = b"\x42\x0e\x08\x02\x12\x00\x22\x08"  # tensor {DT_DOUBLE, shape [], 8 content bytes}
_WALL = struct.Struct("<d")


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 as protobuf encodes it: negative numbers take ten bytes
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _value_prefix(tag: str) -> bytes:
    """The `Summary.Value` fields before the value: its tag (omitted when empty, as protobuf does) and the
    tensor's header."""
    encoded = tag.encode()
    return (b"\x0a" + _varint(len(encoded)) + encoded if encoded else b"") + _DOUBLE_TENSOR


def _scalar_event(step: int, timestamp: int, value: float, value_prefix: bytes) -> bytes:
    """`Event(wall_time, step, summary { value { tag tensor } })` serialized, for a tag already described."""
    body = value_prefix + _WALL.pack(value)
    summary_value = b"\x0a" + _varint(len(body)) + body
    summary = b"\x2a" + _varint(len(summary_value)) + summary_value
    head = b"\x09" + _WALL.pack(timestamp / 1000.0)
    return head + (b"\x10" + _varint(step) if step else b"") + summary


def _stamp(name: str) -> int:
    field = name.split("tfevents.", 1)[1].split(".", 1)[0]
    return int(field) if field.isdigit() else 0


class _EventFile:
    """The event file a writer session appends to; scalar metadata goes on each tag's first event in it."""

    def __init__(self, directory: Path, wall_time: float) -> None:
        names = sorted(p.name for p in directory.iterdir() if is_event_file(p.name))
        stamp = max([int(time.time()), *(_stamp(name) for name in names)])  # names sort in creation order
        self.path = directory / f"events.out.tfevents.{stamp:010d}.ferryman.{len(names):06d}"
        self.handle: BinaryIO = open(self.path, "xb")  # noqa: SIM115 - closed by close()
        self.tags: set[str] = set()
        self.write(Event(wall_time=wall_time, file_version="brain.Event:2"))

    def write(self, event: Event) -> None:
        self.handle.write(frame(event.SerializeToString()))

    def scalars(self, batch: MetricBatch) -> None:
        """One event per point. The first event of a tag in the file carries the plugin metadata and is built
        with protobuf; the others are assembled from bytes (`_scalar_event`, the same encoding)."""
        if not len(batch):
            return
        points = zip(batch.steps, batch.timestamps, batch.values, strict=True)
        records = []
        if batch.key not in self.tags:
            step, timestamp, value = next(points)
            summary_value = Summary.Value(tag=batch.key, metadata=SummaryMetadata(
                plugin_data=SummaryMetadata.PluginData(plugin_name=SCALARS_PLUGIN)))
            summary_value.tensor.dtype = _DT_DOUBLE
            summary_value.tensor.tensor_shape.SetInParent()
            summary_value.tensor.tensor_content = struct.pack("<d", value)
            event = Event(wall_time=timestamp / 1000.0, step=step, summary=Summary(value=[summary_value]))
            records.append(frame(event.SerializeToString()))
            self.tags.add(batch.key)
        value_prefix = _value_prefix(batch.key)
        records += [frame(_scalar_event(step, ts, value, value_prefix)) for step, ts, value in points]
        self.handle.write(b"".join(records))

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class TensorBoardWriter(WithoutModelRegistry):
    """A `TrackerWriter` into a directory of TensorBoard log directories (see the module docstring)."""

    no_registry_reason = "TensorBoard has no model registry"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._files: dict[str, _EventFile] = {}

    def _run_dir(self, run_key: str) -> Path:
        return self.root / run_key

    def _meta(self, run_key: str) -> dict[str, Any]:
        meta = read_json(self._run_dir(run_key) / RUN_METADATA)
        if meta is None:
            raise KeyError(f"TensorBoard destination {self.root}: no run {run_key!r} created by ferryman")
        return meta

    def _update(self, run_key: str, **changes: Any) -> None:
        meta = self._meta(run_key)
        meta.update(changes)
        _write_json(self._run_dir(run_key) / RUN_METADATA, meta)

    def _file(self, run_key: str, wall_time: float | None = None) -> _EventFile:
        found = self._files.get(run_key)
        if found is None:
            directory = self._run_dir(run_key)
            for path in directory.iterdir():
                if is_event_file(path.name):
                    _repair(path)
            opened = time.time() if wall_time is None else wall_time
            found = self._files[run_key] = _EventFile(directory, opened)
        return found

    # experiments and runs -------------------------------------------------------------------------------

    def ensure_experiment(self, experiment: Experiment) -> str:
        with self._lock:
            base = safe_name(experiment.name)
            name, n = base, 1
            while True:
                meta = read_json(self.root / name / EXPERIMENT_METADATA)
                if meta is None and not (self.root / name).exists():
                    _write_json(self.root / name / EXPERIMENT_METADATA, {"name": experiment.name,
                                "tags": experiment.tags, "description": experiment.description})
                    return name
                if meta is not None and meta.get("name") == experiment.name:
                    return name
                n += 1
                name = f"{base}-{n}"

    def migrated_runs(self, experiment_key: str) -> dict[str, DestinationRun]:
        found: dict[str, DestinationRun] = {}
        directory = self.root / experiment_key
        for run_dir in sorted(p for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []:
            meta = read_json(run_dir / RUN_METADATA)
            if meta and meta.get("source"):
                key = f"{experiment_key}/{run_dir.name}"
                found[meta["source"]] = DestinationRun(key, meta["source"], bool(meta.get("complete")),
                                                       meta.get("source_state"))
        return found

    def create_run(self, experiment_key: str, run: Run, source: str) -> str:
        with self._lock:
            base = safe_name(run.name or run.key)
            name, n = base, 1
            while (self.root / experiment_key / name).exists():
                n += 1
                name = f"{base}-{n}"
            key = f"{experiment_key}/{name}"
            (self.root / key).mkdir(parents=True)
        _write_json(self._run_dir(key) / RUN_METADATA, {
            "source": source, "complete": False, "name": run.name, "status": RunStatus.RUNNING.value,
            "start_time": run.start_time, "end_time": None, "user": run.user, "notes": None, "tags": {},
            "parent": None})
        start = run.start_time / 1000.0 if run.start_time is not None else None
        self._file(key, start).flush()  # every run has an event file, so TensorBoard (and readers) list it
        return key

    def set_parent(self, run_key: str, parent_key: str) -> None:
        self._update(run_key, parent=parent_key)

    def write_params(self, run_key: str, params: dict[str, str]) -> list[Outcome]:
        stored = self._stored_params(run_key)
        new = {k: v for k, v in params.items() if stored.get(k) != v}
        if new:
            start = SessionStartInfo()
            for key, value in new.items():
                start.hparams[key].string_value = value
            content = HParamsPluginData(session_start_info=start, version=0).SerializeToString()
            metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=HPARAMS_PLUGIN,
                                                                              content=content))
            event_file = self._file(run_key)
            event_file.write(Event(wall_time=time.time(), summary=Summary(value=[
                Summary.Value(tag=SESSION_START_TAG, metadata=metadata)])))
            event_file.flush()
        return []

    def _stored_params(self, run_key: str) -> dict[str, str]:
        reader = TensorBoardReader(self._run_dir(run_key))
        (experiment,) = reader.experiments()
        return {k: v for run in reader.runs(experiment) if run.key == "." for k, v in run.params.items()}

    def write_tags(self, run_key: str, tags: dict[str, str], notes: str | None = None) -> list[Outcome]:
        meta = self._meta(run_key)
        self._update(run_key, tags={**meta.get("tags", {}), **tags}, notes=notes)
        return []

    def high_water_marks(self, run_key: str) -> dict[str, int]:
        if run_key in self._files:
            self._files[run_key].flush()
        else:
            for path in self._run_dir(run_key).iterdir():
                if is_event_file(path.name):
                    _repair(path)
        reader = TensorBoardReader(self._run_dir(run_key))
        counts: dict[str, int] = {}
        for batch in reader.metrics(Run(key=".", experiment_key="")):
            counts[batch.key] = counts.get(batch.key, 0) + len(batch)
        return counts

    def write_metrics(self, run_key: str, batches: list[MetricBatch]) -> None:
        event_file = self._file(run_key)
        for batch in batches:
            event_file.scalars(batch)
        event_file.flush()

    # artifacts --------------------------------------------------------------------------------------------

    def stored_artifacts(self, run_key: str) -> dict[str, int]:
        directory = self._run_dir(run_key)
        found: dict[str, int] = {}
        for path in directory.rglob("*"):
            rel = path.relative_to(directory).as_posix()
            if path.is_file() and not is_event_file(path.name) and not rel.startswith(INTERNAL_PREFIX):
                found[rel] = path.stat().st_size
        return found

    def stored_artifact_path(self, path: str) -> str:
        """Where an artifact is stored: a name containing `tfevents` as `tf-events` (the engine's
        verification compares the artifact under this name)."""
        return path.replace("tfevents", "tf-events")

    def write_artifact(self, run_key: str, artifact: Artifact) -> Outcome | None:
        try:
            parts = paths.safe_relative(artifact.path).split("/")
        except paths.UnsafePath as error:
            return paths.unsafe_outcome(f"run {run_key}/artifact {artifact.path}", error)
        outcome = None
        if "/".join(parts) == RUN_METADATA:
            return Outcome(OutcomeKind.UNSUPPORTED, f"run {run_key}/artifact {artifact.path}",
                           "the path of ferryman's own run metadata; not stored")
        stored = self.stored_artifact_path("/".join(parts))
        if stored != "/".join(parts):
            parts = stored.split("/")
            outcome = Outcome(OutcomeKind.RENAMED, f"run {run_key}/artifact {artifact.path}",
                              f"stored as {stored}: TensorBoard would read the original name as an event "
                              "file")
        target = self._run_dir(run_key).joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = self._run_dir(run_key) / PARTIAL_DIR  # internal until complete: a crash leaves no artifact
        partial.mkdir(parents=True, exist_ok=True)
        with (tempfile.NamedTemporaryFile("wb", dir=partial, delete=False, suffix=".part") as out,
              artifact.open() as stream):
            shutil.copyfileobj(stream, out, 1 << 20)
        os.replace(out.name, target)
        return outcome

    def finish_run(self, run_key: str, run: Run) -> None:
        event_file = self._files.pop(run_key, None)
        if event_file is not None:
            event_file.close()
        shutil.rmtree(self._run_dir(run_key) / PARTIAL_DIR, ignore_errors=True)  # leftovers of crashes
        self._update(run_key, status=run.status.value, start_time=run.start_time, end_time=run.end_time,
                     complete=True, source_state=source_state(run))

    def reader(self) -> TrackerReader:
        return TensorBoardTreeReader(self.root)

    def close(self) -> None:
        for event_file in self._files.values():
            event_file.close()
        self._files.clear()


def open_writer(endpoint: Endpoint, credentials: object = None) -> TensorBoardWriter:
    """The `tensorboard:PATH` destination of the URI registry."""
    return TensorBoardWriter(endpoint.location)
