"""TensorBoard log directories as a tracker source, read without TensorFlow and without sampling.

Layout (what a user sees in TensorBoard, and what they expect after a migration):

* The experiment is the root directory given as `tensorboard:PATH`; it is named after that directory, or
  after the name given as `tensorboard:PATH?root=NAME`. That name is also the experiment's identity, so
  the source identity of a run (root name and the run's relative path) does not depend on where the logs
  are mounted: the same logs migrated from a laptop and then from a pod are one copy. Name the root when
  two log directories share a directory name.
* A run is a directory holding event files (`*tfevents*`), keyed and named by its path relative to the root
  (`"."` for the root itself, named after the root). All its event files are read in name order (their names
  start with the creation time). Two writer conventions are folded into the run a user thinks of:

  - Keras' `TensorBoard` callback writes `train/` and `validation/` next to each other under one log
    directory: they become one run (the parent directory) with metric keys prefixed `train/` and
    `validation/` (`validation/epoch_loss`), as Keras itself names them `loss` and `val_loss` in one history.
  - `SummaryWriter.add_hparams` (torch, tensorboardX) writes its hparams into a child directory named by a
    timestamp (`1700000000.123`): its params and metrics belong to the parent run.

* Every scalar point is kept with its step and wall time (ms, rounded), in file order: `simple_value` (torch,
  tensorboardX, TF1) and TF2 rank-0 tensors of the `scalars` plugin. The hparams plugin's
  `session_start_info` becomes the run's params (integral numbers printed as integers, as they were
  logged). Start and end times are the first and last event's wall time (taken in time order).
* Everything else becomes an artifact under `tensorboard/`: images as the PNG bytes written
  (`images/<tag>/<step>.png`), audio as its encoded bytes (`audio/<tag>/<step>.wav`), each with an
  `index.jsonl` of step, wall time and file; text (`text/<tag>.jsonl`), histograms (`histograms/<tag>.jsonl`:
  legacy `histo` fields, or the TF2 `[left, right, count]` buckets) and any other tensor summary
  (`tensors/<tag>.jsonl`, with plugin, dtype, shape and values) as JSON lines, one line per event; graphs and
  run metadata as serialized protobufs (`graphs/`); session logs and log messages as JSON lines (`log/`).
  The other files of a run directory (Lightning's `hparams.yaml`, checkpoints …) are artifacts under their own
  relative path.
* Empty, truncated and corrupt files, bad checksums, dangling symlinks and files outside any run are
  reported as outcomes with their byte offset; everything else still reads.
* A run directory written by ferryman's TensorBoard writer (`tensorboard.writer`) holds `ferryman/run.json`:
  the run's name, status, times, user, notes, tags and parent come from it, and `ferryman/` is not an
  artifact.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from google.protobuf.message import DecodeError
from tensorboardX.proto.event_pb2 import Event

from ferryman.trackers import paths
from ferryman.trackers.model import (
    COMPLETE_TAG,
    INTERNAL_PREFIX,
    SOURCE_TAG,
    Artifact,
    Experiment,
    LoggedModel,
    MetricBatch,
    Outcome,
    OutcomeKind,
    RegisteredModel,
    Run,
    RunStatus,
)
from ferryman.trackers.registry import Endpoint
from ferryman.trackers.tensorboard.events import (
    SESSION_START_TAG,
    EventDecoder,
    Summarised,
    record_params,
    tensor_array,
)
from ferryman.trackers.tensorboard.tfrecord import (
    Problem,
    RecordChunk,
    first_record,
    last_record,
    read_records,
    records_containing,
)

KERAS_SPLITS = ("train", "validation")
RUN_METADATA = "ferryman/run.json"  # beside the event files of runs ferryman wrote
EXPERIMENT_METADATA = "ferryman/experiment.json"
ROOT_NAME_QUERY = "?root="  # tensorboard:PATH?root=NAME names the log directory (its identity)
_HPARAMS_DIR = re.compile(r"^\d+(\.\d+)?$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+,@ -]")


def is_event_file(name: str) -> bool:
    return "tfevents" in name


@dataclass(slots=True)
class _RunSource:
    key: str
    directory: Path
    parts: list[tuple[Path, str]] = field(default_factory=list)  # (directory, metric key prefix)

    def event_files(self) -> Iterator[tuple[Path, str]]:
        for directory, prefix in self.parts:
            try:
                names = sorted(n for n in os.listdir(directory) if is_event_file(n))
            except OSError:
                continue
            for name in names:
                yield directory / name, prefix


class TensorBoardReader:
    """A `TrackerReader` over one TensorBoard log directory (see the module docstring for the mapping)."""

    def __init__(self, root: str | os.PathLike[str], name: str | None = None) -> None:
        self.root = Path(root).expanduser().absolute()
        if not self.root.is_dir():
            raise FileNotFoundError(f"TensorBoard log directory {self.root}: not a directory")
        self.name = name or self.root.name or str(self.root)  # the experiment's name and identity
        self._outcomes: dict[tuple[OutcomeKind, str, str], Outcome] = {}
        self._runs: dict[str, _RunSource] | None = None
        self._owner_of: dict[Path, str] = {}
        self._tmp: Path | None = None
        self._lock = threading.RLock()  # the engine reads several runs at once

    # discovery -----------------------------------------------------------------------------------------

    def _discover(self) -> dict[str, _RunSource]:
        with self._lock:
            if self._runs is None:
                self._runs = self._find_runs()
            return self._runs

    def _find_runs(self) -> dict[str, _RunSource]:
        event_dirs: set[Path] = set()
        written: set[Path] = set()  # run directories ferryman's writer made: never folded into a parent
        files_by_dir: dict[Path, list[str]] = {}
        for directory, dirnames, filenames in paths.walk(self.root, self._escaped):
            for name in dirnames + filenames:
                path = directory / name
                if path.is_symlink() and not path.exists():
                    self._report(OutcomeKind.UNREADABLE, f"file {self._rel(path)}",
                                 f"dangling symlink to {os.readlink(path)}")
            kept = [n for n in filenames if (directory / n).exists()]
            files_by_dir[directory] = kept
            if any(is_event_file(n) for n in kept):
                event_dirs.add(directory)
            metadata = Path(RUN_METADATA)
            if directory.name == metadata.parent.name and metadata.name in kept and directory != self.root:
                written.add(directory.parent)  # a run ferryman's writer made, even one without events
        event_dirs |= written
        runs: dict[str, _RunSource] = {}
        owner: dict[Path, str] = {}
        for directory in sorted(event_dirs):
            parent = directory.parent
            if (directory.name in KERAS_SPLITS and parent not in event_dirs and directory != self.root
                    and directory not in written
                    and all(d.name in KERAS_SPLITS for d in event_dirs if d.parent == parent)):
                run_dir, prefix = parent, directory.name + "/"
            elif _HPARAMS_DIR.match(directory.name) and parent in event_dirs and directory != self.root:
                run_dir, prefix = parent, ""
            else:
                run_dir, prefix = directory, ""
            key = self._rel(run_dir)
            run = runs.setdefault(key, _RunSource(key, run_dir))
            run.parts.append((directory, prefix))
            owner[run_dir] = owner[directory] = key
        for run in runs.values():
            run.parts.sort(key=lambda part: (part[1], part[0] != run.directory, str(part[0])))
        for directory, names in files_by_dir.items():
            if self._owner(directory, owner) is None:
                for name in names:
                    if self._rel(directory / name) == EXPERIMENT_METADATA:
                        continue
                    self._report(OutcomeKind.SKIPPED, f"file {self._rel(directory / name)}",
                                 "not in a run directory (no event files in it or above it)")
        self._owner_of = owner
        return runs

    def _escaped(self, path: Path) -> None:
        self._report(OutcomeKind.UNREADABLE, f"file {self._rel(path)}", paths.escape_reason(path))

    def _owner(self, directory: Path, owner: dict[Path, str]) -> str | None:
        for candidate in (directory, *directory.parents):
            if candidate in owner:
                return owner[candidate]
            if candidate == self.root:
                return None
        return None

    def _rel(self, path: Path) -> str:
        rel = path.relative_to(self.root).as_posix()
        return rel if rel else "."

    # TrackerReader --------------------------------------------------------------------------------------

    def experiments(self, names: list[str] | None = None) -> Iterator[Experiment]:
        experiment = Experiment(key=self.name, name=self.name)
        if not names or experiment.name in names:
            yield experiment

    def runs(self, experiment: Experiment, since: int | None = None) -> Iterator[Run]:
        """Runs in path order; with `since`, those whose first event is at or after it (ms)."""
        for _, source in sorted(self._discover().items()):
            run = self._probe(experiment, source)
            if since is not None and (run.start_time is None or run.start_time < since):
                continue
            yield run

    def _probe(self, experiment: Experiment, source: _RunSource) -> Run:
        """The run's params, and its start and end time: the earliest and the latest wall time among the first
        and last events of its files (times only go back when a writer was given explicit wall times)."""
        first: float | None = None
        last: float | None = None
        params: dict[str, str] = {}
        for path, _ in source.event_files():
            found = _glance(path) or self._walk_for_times(path)
            if found is not None:
                earlier, later = sorted(found[:2])
                first = earlier if first is None else min(first, earlier)
                last = later if last is None else max(last, later)
                params.update(found[2])
        name = self.name if source.key == "." else source.key
        run = Run(
            key=source.key,
            experiment_key=experiment.key,
            name=name,
            start_time=None if first is None else round(first * 1000),
            end_time=None if last is None else round(last * 1000),
            params=params,
        )
        meta = read_json(source.directory / RUN_METADATA)
        if meta is not None:  # written by ferryman's TensorBoard writer: what event files cannot hold
            _overlay(run, meta)
        return run

    def _walk_for_times(self, path: Path) -> tuple[float, float, dict[str, str]] | None:
        """What `_glance` finds, for a file that needs a full read (damaged ones: problems are reported)."""
        first: bytes | None = None
        last: bytes | None = None
        params: dict[str, str] = {}
        for chunk in self._chunks(path):
            first = first if first is not None else chunk.record(0)
            last = chunk.record(len(chunk) - 1)
            params.update(_hparams_in(chunk))
        if first is None or last is None:
            return None
        with contextlib.suppress(DecodeError):
            return _wall_time(first), _wall_time(last), params
        return None

    def metrics(self, run: Run) -> Iterator[MetricBatch]:
        source = self._discover()[run.key]
        decoder = EventDecoder()
        for path, prefix in source.event_files():
            for chunk in self._chunks(path):
                events = decoder.decode(chunk, others=False)
                self._decode_errors(path, events.errors)
                for tag, series in events.scalars.items():
                    yield MetricBatch(prefix + tag, series.steps, series.wall_ms, series.values)

    def artifacts(self, run: Run) -> Iterator[Artifact]:
        source = self._discover()[run.key]
        yield from self._files(source)
        sink = _ArtifactSink(Path(tempfile.mkdtemp(dir=self._scratch())))
        decoder = EventDecoder()
        for path, prefix in source.event_files():
            for chunk in self._chunks(path):
                events = decoder.decode(chunk, others=True)
                self._decode_errors(path, events.errors)
                for item in events.others:
                    try:
                        sink.summary(prefix, item)
                    except ValueError as error:
                        self._report(OutcomeKind.UNSUPPORTED, f"run {run.key}/{prefix}{item.tag}",
                                     f"step {item.step}: {error}")
                for event in events.events:
                    sink.event(prefix, event)
        yield from sink.close()

    def _files(self, source: _RunSource) -> Iterator[Artifact]:
        """The run directory's other files, except those of nested runs and ferryman's own (in a run its
        writer made)."""
        written = (source.directory / RUN_METADATA).is_file()
        # symlinks leading out of the log directory were reported by _find_runs
        for directory, dirnames, filenames in paths.walk(source.directory, lambda _: None, self.root):
            dirnames[:] = sorted(d for d in dirnames
                                 if self._owner(directory / d, self._owner_of) == source.key)
            for name in sorted(filenames):
                path = directory / name
                rel = path.relative_to(source.directory).as_posix()
                if is_event_file(name) or not path.exists() or (rel.startswith(INTERNAL_PREFIX) and written):
                    continue
                yield _file_artifact(path, rel)

    def registered_models(self) -> Iterator[RegisteredModel]:
        return iter(())

    def logged_models(self, experiment: Experiment) -> Iterator[LoggedModel]:
        return iter(())

    def outcomes(self) -> list[Outcome]:
        with self._lock:
            return list(self._outcomes.values())

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # helpers ---------------------------------------------------------------------------------------------

    def _scratch(self) -> Path:
        with self._lock:
            if self._tmp is None:
                self._tmp = Path(tempfile.mkdtemp(prefix="ferryman-tensorboard-"))
            return self._tmp

    def _report(self, kind: OutcomeKind, item: str, reason: str) -> None:
        with self._lock:
            self._outcomes.setdefault((kind, item, reason), Outcome(kind, item, reason))

    def _chunks(self, path: Path) -> Iterator[RecordChunk]:
        """The file's records; problems, an unreadable file included, become outcomes."""
        try:
            yield from read_records(path, self._reporter(path))
        except OSError as error:
            self._report(OutcomeKind.UNREADABLE, f"file {self._rel(path)}",
                         f"cannot be read: {error.strerror or error}")

    def _decode_errors(self, path: Path, errors: list[tuple[int, str]]) -> None:
        for offset, message in errors:
            self._report(OutcomeKind.UNREADABLE, f"file {self._rel(path)}",
                         f"undecodable event at byte {offset}: {message}; event skipped")

    def _reporter(self, path: Path) -> Callable[[Problem, int, str], None]:
        item = f"file {self._rel(path)}"

        def report(problem: Problem, offset: int, description: str) -> None:
            kind = OutcomeKind.TRUNCATED if problem is Problem.TRUNCATED else OutcomeKind.UNREADABLE
            self._report(kind, item, f"{problem.value} at byte {offset}: {description}")

        return report


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _overlay(run: Run, meta: dict[str, Any]) -> None:
    """Name, status, times, user, notes, tags and parent as ferryman's writer recorded them."""
    run.name = meta.get("name") or run.name
    with contextlib.suppress(ValueError):
        run.status = RunStatus(meta.get("status", run.status))
    run.start_time = meta["start_time"] if meta.get("start_time") is not None else run.start_time
    if "end_time" in meta:  # the writer's record, even None: a run that has not ended has no end time
        run.end_time = meta["end_time"]
    run.user = meta.get("user")
    run.notes = meta.get("notes")
    run.parent_key = meta.get("parent")
    run.tags = {str(k): str(v) for k, v in (meta.get("tags") or {}).items()}
    if meta.get("source"):
        run.tags[SOURCE_TAG] = str(meta["source"])
    if meta.get("complete"):
        run.tags[COMPLETE_TAG] = str(meta.get("source_state") or "true")


def _wall_time(record: bytes) -> float:
    return float(Event.FromString(record).wall_time)


def _glance(path: Path) -> tuple[float, float, dict[str, str]] | None:
    """First and last wall time and the hparams of a well-formed event file, without reading it all: its
    first record, the record that ends at its end, and the records holding a session_start_info tag. None
    when any of them cannot be found with valid checksums."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            first, last = first_record(f, size), last_record(f, size)
            hparams = records_containing(f, size, SESSION_START_TAG.encode())
            if first is None or last is None or hparams is None:
                return None
            params: dict[str, str] = {}
            for record in hparams:
                params.update(record_params(record))
            return _wall_time(first), _wall_time(last), params
    except (OSError, DecodeError, ValueError):
        return None


def _hparams_in(chunk: RecordChunk) -> dict[str, str]:
    """Params of the hparams records of a chunk, found by their tag's bytes without parsing the rest."""
    params: dict[str, str] = {}
    marker = b"_hparams_/session_start_info"
    at = chunk.buffer.find(marker)
    while at >= 0:
        i = int(np.searchsorted(chunk.starts, at, side="right")) - 1
        if i >= 0 and at < chunk.starts[i] + chunk.lengths[i]:
            with contextlib.suppress(DecodeError, ValueError):
                params.update(record_params(chunk.record(i)))
            at = chunk.buffer.find(marker, int(chunk.starts[i] + chunk.lengths[i]))
        else:
            at = chunk.buffer.find(marker, at + 1)
    return params


def _file_artifact(path: Path, rel: str) -> Artifact:
    return Artifact(path=rel, open=lambda: open(path, "rb"), size=path.stat().st_size)


def _safe(tag: str) -> str:
    parts = [_UNSAFE.sub("_", p) for p in tag.split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or "_"


class _ArtifactSink:
    """Writes a run's non-scalar summaries into files under a scratch directory, then lists them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: dict[str, BinaryIO] = {}
        self.used: set[str] = set()

    def _append(self, rel: str, record: dict[str, Any]) -> None:
        handle = self.files.get(rel)
        if handle is None:
            target = self.directory / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            handle = self.files[rel] = open(target, "ab")  # noqa: SIM115 - closed in close()
        handle.write(json.dumps(record, default=_json_default).encode() + b"\n")

    def _blob(self, rel_stem: str, suffix: str, data: bytes) -> str:
        rel, n = f"{rel_stem}{suffix}", 1
        while rel in self.used:
            n += 1
            rel = f"{rel_stem}-{n}{suffix}"
        self.used.add(rel)
        target = self.directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return rel

    def summary(self, prefix: str, item: Summarised) -> None:
        tag = _safe(prefix + item.tag)
        base = {"step": item.step, "wall_time": item.wall_time}
        value = item.value
        kind = value.WhichOneof("value")
        if kind == "image":
            self._media("images", tag, base, [value.image.encoded_image_string], ".png",
                        {"width": value.image.width, "height": value.image.height})
        elif kind == "audio":
            self._media("audio", tag, base, [value.audio.encoded_audio_string], ".wav",
                        {"sample_rate": value.audio.sample_rate, "content_type": value.audio.content_type})
        elif kind == "histo":
            h = value.histo
            self._append(f"tensorboard/histograms/{tag}.jsonl", {
                **base, "min": h.min, "max": h.max, "num": h.num, "sum": h.sum, "sum_squares": h.sum_squares,
                "bucket_limit": list(h.bucket_limit), "bucket": list(h.bucket)})
        elif kind == "tensor":
            self._tensor(tag, base, item.plugin, value)
        else:
            raise ValueError(f"summary value of kind {kind or 'none'} is not supported")

    def _tensor(self, tag: str, base: dict[str, Any], plugin: str, value: Any) -> None:
        array = tensor_array(value.tensor)
        if plugin == "images" and array.dtype == object and array.ndim == 1 and len(array) >= 2:
            self._media("images", tag, base, list(array[2:]), ".png",
                        {"width": _int(array[0]), "height": _int(array[1])})
        elif plugin == "audio" and array.dtype == object and array.ndim == 2:
            self._media("audio", tag, base, list(array[:, 0]), ".wav",
                        {"labels": [_text(x) for x in array[:, 1]]} if array.shape[1] > 1 else {})
        elif plugin == "histograms" and array.ndim == 2 and array.shape[1:] == (3,):
            self._append(f"tensorboard/histograms/{tag}.jsonl", {**base, "buckets": array.tolist()})
        elif plugin == "text":
            self._append(f"tensorboard/text/{tag}.jsonl", {**base, "text": _to_json(array)})
        else:
            self._append(f"tensorboard/tensors/{tag}.jsonl", {
                **base, "plugin": plugin, "dtype": str(array.dtype) if array.dtype != object else "string",
                "shape": list(array.shape), "value": _to_json(array)})

    def _media(self, kind: str, tag: str, base: dict[str, Any], blobs: list[bytes], suffix: str,
               extra: dict[str, Any]) -> None:
        names = [self._blob(f"tensorboard/{kind}/{tag}/{base['step']}", suffix, bytes(b)) for b in blobs]
        self._append(f"tensorboard/{kind}/{tag}/index.jsonl",
                     {**base, **extra, "files": [n.rsplit("/", 1)[1] for n in names]})

    def event(self, prefix: str, event: Event) -> None:
        what = event.WhichOneof("what")
        base = {"step": event.step, "wall_time": event.wall_time}
        folder = f"tensorboard/graphs/{prefix}".rstrip("/")
        if what == "graph_def":
            self._blob(f"{folder}/graph_def", ".pb", event.graph_def)
        elif what == "meta_graph_def":
            self._blob(f"{folder}/meta_graph_def", ".pb", event.meta_graph_def)
        elif what == "tagged_run_metadata":
            self._blob(f"{folder}/{_safe(event.tagged_run_metadata.tag)}", ".pb",
                       event.tagged_run_metadata.run_metadata)
        elif what == "session_log":
            log = event.session_log
            self._append(f"tensorboard/log/{prefix}events.jsonl", {
                **base, "session_log": log.SessionStatus.Name(log.status),
                "checkpoint_path": log.checkpoint_path, "message": log.msg})
        elif what == "log_message":
            self._append(f"tensorboard/log/{prefix}events.jsonl", {
                **base, "level": event.log_message.Level.Name(event.log_message.level),
                "message": event.log_message.message})

    def close(self) -> Iterator[Artifact]:
        for handle in self.files.values():
            handle.close()
        if not self.directory.is_dir():
            return
        for path in sorted(p for p in self.directory.rglob("*") if p.is_file()):
            yield _file_artifact(path, path.relative_to(self.directory).as_posix())


def _int(value: bytes) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _to_json(array: np.ndarray) -> Any:
    if array.dtype == object:
        return np.vectorize(_text, otypes=[object])(array).tolist() if array.size else []
    return array.tolist()


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return _text(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


class TensorBoardTreeReader:
    """A `TrackerReader` over a directory of experiments as ferryman's TensorBoard writer lays them out
    (`ROOT/<experiment>/<run>/`): each subdirectory with `ferryman/experiment.json` is an experiment, read
    with a `TensorBoardReader`; run keys are `<experiment dir>/<run key>`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._readers: dict[str, TensorBoardReader] = {}

    def _reader(self, directory: str) -> TensorBoardReader:
        if directory not in self._readers:
            self._readers[directory] = TensorBoardReader(self.root / directory)
        return self._readers[directory]

    def experiments(self, names: list[str] | None = None) -> Iterator[Experiment]:
        for directory in sorted(p for p in self.root.iterdir() if (p / EXPERIMENT_METADATA).is_file()):
            meta = read_json(directory / EXPERIMENT_METADATA) or {}
            experiment = Experiment(key=directory.name, name=str(meta.get("name") or directory.name),
                                    tags=dict(meta.get("tags") or {}), description=meta.get("description"))
            if not names or experiment.name in names:
                yield experiment

    def runs(self, experiment: Experiment, since: int | None = None) -> Iterator[Run]:
        inner = self._reader(experiment.key)
        for run in inner.runs(next(iter(inner.experiments())), since):
            run.key, run.experiment_key = f"{experiment.key}/{run.key}", experiment.key
            yield run

    def _split(self, run: Run) -> tuple[TensorBoardReader, Run]:
        directory, _, key = run.key.partition("/")
        return self._reader(directory), Run(key=key, experiment_key=directory)

    def metrics(self, run: Run) -> Iterator[MetricBatch]:
        reader, inner = self._split(run)
        return reader.metrics(inner)

    def artifacts(self, run: Run) -> Iterator[Artifact]:
        reader, inner = self._split(run)
        return reader.artifacts(inner)

    def registered_models(self) -> Iterator[RegisteredModel]:
        return iter(())

    def logged_models(self, experiment: Experiment) -> Iterator[LoggedModel]:
        return iter(())

    def outcomes(self) -> list[Outcome]:
        return [outcome for reader in self._readers.values() for outcome in reader.outcomes()]

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()


def open_reader(endpoint: Endpoint, credentials: object = None) -> TensorBoardReader | TensorBoardTreeReader:
    """The `tensorboard:PATH` source of the URI registry: a log directory, or a tree ferryman's writer made
    (whose experiments are then read back as such)."""
    location, _, name = endpoint.location.partition(ROOT_NAME_QUERY)
    root = Path(location)
    if root.is_dir() and any((child / EXPERIMENT_METADATA).is_file() for child in root.iterdir()):
        return TensorBoardTreeReader(root)
    return TensorBoardReader(root, name or None)
