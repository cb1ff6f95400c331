"""W&B run directories on disk as a migration source (`wandb:PATH`).

Reads every run below PATH (a `wandb/` root, a project checkout holding several roots, or one run directory):
SDK 0.10 and later through the `.wandb` transaction log (`datastore` framing, `wandb_internal.proto` records),
older SDKs (0.8, 0.9: `run-*`/`dryrun-*` with `wandb-history.jsonl`) through their JSON files. The log is the
source of truth; `files/` supplies the run's files. Problems are counted outcomes, never fatal for the rest:
empty or corrupt logs, bad checksums, unknown record types, runs without an exit record (crashed or still
running), dangling symlinks, files the log lists but the directory lacks.

Mapping to the neutral model:
- experiment = W&B project (from the run record or metadata; else the root's directory name);
- run key = W&B run id; several directories with one id (resumed runs) are one run, read in order;
- params = config, nested keys joined with "."; W&B tags, group, job type, entity, sweep, host, SDK version
  and state become `wandb.*` run tags; notes are the run notes; the user comes from the environment/metadata;
- numeric history values are metric points at their `_step` and `_timestamp`; system metrics (`stats`
  records, `wandb-events.jsonl`) are `system/<key>` batches numbered by sample; numeric summary values that
  no history row carries become one point each; every other history value (media, tables, text, booleans)
  is kept in the `wandb-history-objects.jsonl` artifact and reported.
"""

from __future__ import annotations

import configparser
import io
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import yaml
from google.protobuf.message import DecodeError

from ferryman.convert.manifests import load_document
from ferryman.trackers import paths
from ferryman.trackers.model import (
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
from ferryman.trackers.wandb.datastore import Damage, Framing, NotAWandbLog, read_chunks
from ferryman.trackers.wandb.items import HISTORY_TAG, SUMMARY_TAG, record_types, split_items

RUN_DIR = re.compile(r"^(?:offline-run|run|dryrun)-(\d{8}_\d{6})-([A-Za-z0-9_.-]+)$")
_NOT_IN_PROJECT_NAMES = re.compile(r"[/\\#?%:]")  # characters W&B refuses in a project name


def project_name(experiment_name: str) -> str:
    """The W&B project that holds an experiment of this name: each character W&B refuses in a project name
    (Neptune's experiments are `workspace/project`) becomes '-'."""
    return _NOT_IN_PROJECT_NAMES.sub("-", experiment_name) or "-"


BATCH = 5000  # points per MetricBatch
CHUNK = 8192  # history or summary records decoded together (`items.split_items`)
FRAMING_BUDGET = 8_000_000  # payloads whose place in its log a reader keeps for the later passes (16 B each)
INTERNAL_KEYS = frozenset({"_step", "_timestamp", "_runtime", "_wandb"})
ENVELOPE = "_ferryman"  # config key the ferryman W&B writer keeps what W&B cannot hold natively in
TIMESTAMP_PREFIX = "_ferryman_ts/"  # per-key timestamps (ms) that differ from their row's `_timestamp`
STEP_PREFIX = "_ferryman_step/"  # a system point's own step, when it is not its sample number
LEFTOVERS_FILE = "ferryman-unrepresentable-points.jsonl"  # points a W&B history row cannot take
OBJECTS_FILE = "wandb-history-objects.jsonl"
# Files the wandb SDK writes into every run: a ferryman-written run keeps a source file of the same name
# under SOURCE_FILES_PREFIX, and its readback maps it back.
SDK_FILES = frozenset(
    {
        "config.yaml",
        "wandb-summary.json",
        "wandb-metadata.json",
        "requirements.txt",
        "output.log",
        "conda-environment.yaml",
        "diff.patch",
        "code",
    }
)
SOURCE_FILES_PREFIX = "ferryman-source/"

# `Record` oneof field numbers (wandb_internal.proto), used to skip records without decoding them.
F_HISTORY, F_SUMMARY, F_OUTPUT, F_STATS, F_OUTPUT_RAW, F_EXIT, F_OUTPUT_LOGGER = 2, 3, 4, 7, 13, 18, 27
_FRAME_FIELDS = frozenset({1, 16, 19, 200})  # num, control, uuid, _info: on every record, not its type
# Records the metadata pass skips: the bulk of a log. Summary records are among them because SDK 0.31 writes
# one per history row; the metrics pass folds them (`_RunData.summary` is complete once it ran).
_BULK = frozenset({F_HISTORY, F_SUMMARY, F_OUTPUT, F_STATS, F_OUTPUT_RAW, F_OUTPUT_LOGGER})
_BULK_TYPES = sorted(_BULK)
# Records that carry nothing a tracker keeps (SDK bookkeeping), read and ignored.
_IGNORED = frozenset(
    {
        "telemetry",
        "metric",
        "final",
        "footer",
        "header",
        "preempting",
        "request",
        "tbrecord",
        "alert",
        "noop_link_artifact",
        "use_artifact",
        "output",
        "output_raw",
        "output_logger",
        "history",
        "stats",
    }
)


def _record_type() -> Any:
    from wandb.proto import wandb_internal_pb2  # heavy import, only when a .wandb file is read

    return wandb_internal_pb2.Record  # type: ignore[attr-defined]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def first_field(payload: bytes) -> int:
    """The record type (oneof field number) of a serialized `Record` without decoding it, or 0 when it
    cannot tell. Python's protobuf writes fields in number order; Go's (wandb-core) writes the plain fields
    `num`, `control`, `uuid` and `_info` before the oneof, so those are skipped wherever they are."""
    pos = 0
    size = len(payload)
    try:
        while pos < size:
            tag, pos = _varint(payload, pos)
            number, wire = tag >> 3, tag & 7
            if number not in _FRAME_FIELDS:
                return number
            if wire == 0:
                _, pos = _varint(payload, pos)
            elif wire == 2:
                length, pos = _varint(payload, pos)
                pos += length
            else:
                return 0
    except IndexError:
        return 0
    return 0


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _pb_ms(stamp: Any) -> int | None:
    if not stamp.seconds and not stamp.nanos:
        return None
    return int(stamp.seconds * 1000 + stamp.nanos // 1_000_000)


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        child = tree.get(part)
        if not isinstance(child, dict):
            child = tree[part] = {}
        tree = child
    tree[path[-1]] = value


def _del_path(tree: dict[str, Any], path: list[str]) -> None:
    for part in path[:-1]:
        tree = tree.get(part)  # type: ignore[assignment]
        if not isinstance(tree, dict):
            return
    tree.pop(path[-1], None)


def _fold_updates(raw: dict[Any, str], record: Any) -> None:
    """Apply a summary record's updates and removals to (key or path tuple) -> JSON text, decoding nothing:
    SDK 0.31 writes a summary record per history row, so this is as hot as the history loop."""
    for item in record.update:
        path = item.nested_key
        raw[path[0] if len(path) == 1 else (tuple(path) or item.key)] = item.value_json
    for item in record.remove:
        path = item.nested_key
        gone = path[0] if len(path) == 1 else (tuple(path) or item.key)
        prefix = (gone,) if isinstance(gone, str) else gone
        for known in [k for k in raw if ((k,) if isinstance(k, str) else k)[: len(prefix)] == prefix]:
            del raw[known]


def _fold_summaries(raw: dict[Any, str], payloads: list[bytes], decode: Callable[[bytes], Any]) -> None:
    """`_fold_updates` of a chunk of summary records in order: plain ones vectorised, others by protobuf."""
    if not payloads:
        return
    items = split_items(payloads, SUMMARY_TAG)
    if items is None:
        slow = list(range(len(payloads)))
    else:
        slow = np.flatnonzero(~items.ok).tolist()
        bounds = np.searchsorted(items.record, np.arange(len(payloads) + 1)).tolist()
    start = 0
    for index in [*slow, len(payloads)]:
        if items is not None and start < index:
            lo, hi = bounds[start], bounds[index]
            keys, positions = items.key[lo:hi], np.arange(lo, hi)
            first = np.full(len(items.names), hi)
            np.minimum.at(first, keys, positions)
            last = np.full(len(items.names), -1)
            np.maximum.at(last, keys, positions)  # a key's last update wins
            present = np.flatnonzero(last >= 0)
            present = present[np.argsort(first[present])]  # in order of first update, as protobuf folds
            values = items.values(last[present])
            if values is not None:
                raw.update(zip([items.names[k] for k in present.tolist()], values, strict=True))
            else:  # a value is not UTF-8: protobuf rejects its record
                for position in range(start, index):
                    _fold_record(raw, decode(payloads[position]))
        if index < len(payloads):
            _fold_record(raw, decode(payloads[index]))
        start = index + 1


def _fold_record(raw: dict[Any, str], record: Any) -> None:
    if record is not None:
        _fold_updates(raw, record.summary)


def _item_path(item: Any) -> list[str]:
    return [item.key] if item.key else list(item.nested_key)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _unwrap_config(config: dict[str, Any]) -> dict[str, Any]:
    """`config.yaml` stores each key as `{desc: …, value: …}` (0.8 to today); the log stores plain values."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and "value" in value and set(value) <= {"desc", "value"}:
            value = value["value"]
        out[key] = value
    return out


def flatten(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, dict) and value and "_type" not in value:
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def param_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _step_of(summary: dict[str, Any]) -> int:
    step = summary.get("_step")
    return step if isinstance(step, int) and not isinstance(step, bool) else -1


def _number(value: Any) -> float | None:
    """A metric value, or None for anything that is not a plain number (booleans included)."""
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return None


@dataclass
class _RunData:
    """What the metadata pass learns about one W&B run (one or more directories, in resume order)."""

    run_id: str
    dirs: list[Path]
    project: str | None = None
    entity: str | None = None
    name: str | None = None
    notes: str | None = None
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    job_type: str | None = None
    sweep_id: str | None = None
    host: str | None = None
    user: str | None = None
    sdk_version: str | None = None
    start_time: int | None = None
    exit_code: int | None = None
    runtime: int | None = None
    resumed: bool = False
    legacy: bool = False
    state: str | None = None  # legacy metadata's state
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    listed_files: set[str] = field(default_factory=set)
    logged_artifacts: list[dict[str, Any]] = field(default_factory=list)
    readable_log: bool = False
    summary_folded: bool = False  # the log's summary records are in `summary` (after a metrics pass)


class WandbDirReader:
    """A `TrackerReader` over W&B run directories."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._outcomes: dict[Outcome, None] = {}
        self._runs: dict[tuple[str, str], _RunData] | None = None
        self._record = None
        self._framings: dict[Path, Framing] = {}  # of the logs the metadata pass read, for the later passes

    # -- discovery and the metadata pass ------------------------------------------------------------------

    def _new_record(self) -> Any:
        if self._record is None:
            self._record = _record_type()
        return self._record()  # type: ignore[misc]

    def _report(self, kind: OutcomeKind, item: str, reason: str) -> None:
        self._outcomes.setdefault(Outcome(kind, item, reason))  # a second pass over a run reports nothing new

    def _chunks(self, log: Path, damage: list[Damage]) -> Iterator[list[bytes]]:
        """The log's payloads a chunk at a time; its framing is kept for the next passes within the budget."""
        kept = sum(len(framing.spans) for framing in self._framings.values()) // 2
        return read_chunks(log, damage, CHUNK, self._framings, keep=kept < FRAMING_BUDGET)

    def _run_dirs(self) -> list[Path]:
        if not self.root.exists():
            raise FileNotFoundError(f"wandb:{self.root}: no such directory")
        if RUN_DIR.match(self.root.name):
            return [self.root]
        found = []
        for path in sorted(self.root.rglob("*")):
            if (
                RUN_DIR.match(path.name)
                and path.is_dir()
                and not path.is_symlink()
                and not any(RUN_DIR.match(parent.name) for parent in path.relative_to(self.root).parents)
            ):
                found.append(path)
        return found

    def _default_project(self, run_dir: Path) -> str:
        settings = run_dir.parent / "settings"
        if settings.is_file():
            parser = configparser.ConfigParser()
            try:
                parser.read(settings)
                if parser.has_option("default", "project"):
                    return parser.get("default", "project")
            except configparser.Error:
                pass
        root = run_dir.parent if run_dir.parent.name == "wandb" else run_dir
        return (root.parent if root.name == "wandb" else root).name or "wandb"

    def _load(self) -> dict[tuple[str, str], _RunData]:
        if self._runs is not None:
            return self._runs
        found: list[tuple[_RunData, bool]] = []
        for run_dir in sorted(self._run_dirs(), key=lambda p: (RUN_DIR.match(p.name).group(1), str(p))):  # type: ignore[union-attr]
            data = _RunData(run_id=RUN_DIR.match(run_dir.name).group(2), dirs=[run_dir])  # type: ignore[union-attr]
            self._read_metadata(data, run_dir)
            found.append((data, data.project is not None))
        # a run whose project is unknown (empty log) joins the project of the other runs of its root
        by_root: dict[Path, set[str]] = {}
        for data, known in found:
            if known:
                by_root.setdefault(data.dirs[0].parent, set()).add(data.project)  # type: ignore[arg-type]
        runs: dict[tuple[str, str], _RunData] = {}
        for data, known in found:
            if not known:
                siblings = by_root.get(data.dirs[0].parent, set())
                data.project = (
                    next(iter(siblings)) if len(siblings) == 1 else self._default_project(data.dirs[0])
                )
            project = data.project or ""
            previous = runs.get((project, data.run_id))
            if previous is None:
                runs[(project, data.run_id)] = data
            else:
                self._merge_resumed(previous, data)
        self._runs = runs
        return runs

    def _merge_resumed(self, into: _RunData, later: _RunData) -> None:
        into.dirs += later.dirs
        into.resumed = True
        for attr in (
            "name",
            "notes",
            "group",
            "job_type",
            "sweep_id",
            "host",
            "user",
            "sdk_version",
            "state",
        ):
            if getattr(later, attr):
                setattr(into, attr, getattr(later, attr))
        into.tags = later.tags or into.tags
        into.exit_code, into.runtime = later.exit_code, later.runtime
        into.config.update(later.config)
        into.summary.update(later.summary)
        into.listed_files |= later.listed_files
        into.logged_artifacts += later.logged_artifacts
        into.readable_log = into.readable_log or later.readable_log

    def _log_path(self, run_dir: Path) -> Path | None:
        logs = []
        for log in sorted(run_dir.glob("*.wandb")):
            if paths.leaves(self.root, log):
                self._escaped(log)
            else:
                logs.append(log)
        return logs[0] if logs else None

    def _escaped(self, path: Path) -> None:
        self._report(OutcomeKind.UNREADABLE, f"file {path}", paths.escape_reason(path))

    def _read_metadata(self, data: _RunData, run_dir: Path) -> None:
        log = self._log_path(run_dir)
        item = f"run {data.run_id}"
        files = run_dir / "files"
        if log is None:
            if (run_dir / "wandb-history.jsonl").exists() or (run_dir / "wandb-metadata.json").exists():
                data.legacy = True
                self._read_legacy_metadata(data, run_dir)
            else:
                self._report(OutcomeKind.UNREADABLE, item, f"{run_dir}: no .wandb log and no history file")
                self._read_files_metadata(data, files)
            return
        if log.is_symlink() and not log.exists():
            self._report(OutcomeKind.UNREADABLE, f"{item}/file {log.name}", f"dangling symlink {log}")
        elif self._scan_metadata(data, log):
            if data.user is None or data.start_time is None:
                meta = self._read_json(files / "wandb-metadata.json", f"{item}/file wandb-metadata.json")
                if isinstance(meta, dict):
                    data.user = data.user or meta.get("username")
            return
        # the log is unusable: keep what files/ says about the run
        self._read_files_metadata(data, files)

    def _scan_metadata(self, data: _RunData, log: Path) -> bool:
        """Decode the log except its bulk records (history, stats, console); True if it was readable."""
        item = f"run {data.run_id}"
        damage: list[Damage] = []
        unknown: dict[int, int] = {}
        undecodable = 0
        exited = False
        summary: dict[Any, str] = {}
        try:
            for chunk in self._chunks(log, damage):
                types = record_types(chunk)
                for index in np.flatnonzero(types == 0).tolist():
                    types[index] = first_field(chunk[index])
                for index in np.flatnonzero(~np.isin(types, _BULK_TYPES)).tolist():
                    payload, number = chunk[index], int(types[index])
                    record = self._new_record()
                    try:
                        record.ParseFromString(payload)
                    except DecodeError:
                        undecodable += 1
                        continue
                    kind = record.WhichOneof("record_type")
                    if kind is None:
                        unknown[number] = unknown.get(number, 0) + 1
                    elif kind == "run":
                        self._apply_run_record(data, record.run)
                        _fold_updates(summary, record.run.summary)
                    elif kind == "config":
                        self._apply_updates(data.config, record.config)
                    elif kind == "exit":
                        exited = True
                        data.exit_code, data.runtime = record.exit.exit_code, record.exit.runtime
                    elif kind == "header":
                        data.sdk_version = (
                            record.header.version_info.producer.split("+")[0] or data.sdk_version
                        )
                    elif kind == "environment":
                        env = record.environment
                        data.user = env.username or data.user
                        data.host = env.host or data.host
                    elif kind == "files":
                        data.listed_files.update(f.path for f in record.files.files)
                    elif kind == "artifact":
                        data.logged_artifacts.append(self._artifact_manifest(record.artifact))
        except NotAWandbLog as err:
            self._report(OutcomeKind.UNREADABLE, f"{item}/file {log.name}", f"{log}: {err}")
            return False
        except OSError as err:
            self._report(OutcomeKind.UNREADABLE, f"{item}/file {log.name}", f"{log}: {err}")
            return False
        data.readable_log = True
        for path, text in summary.items():
            _set_path(data.summary, [path] if isinstance(path, str) else list(path), _loads(text))
        for loss in damage:
            self._report(
                OutcomeKind.TRUNCATED,
                f"{item}/file {log.name}",
                f"{log}: {loss.reason} at byte {loss.offset}: {loss.length} bytes skipped",
            )
        if undecodable:
            self._report(
                OutcomeKind.UNREADABLE,
                f"{item}/file {log.name}",
                f"{log}: {undecodable} records could not be decoded and were skipped",
            )
        for number, count in sorted(unknown.items()):
            self._report(
                OutcomeKind.UNSUPPORTED,
                f"{item}/file {log.name}",
                f"{log}: {count} records of unknown type (field {number}) skipped",
            )
        if not exited:
            data.exit_code = None
        return True

    def _apply_run_record(self, data: _RunData, run: Any) -> None:
        data.run_id = run.run_id or data.run_id
        data.project = run.project or data.project
        data.entity = run.entity or data.entity
        data.name = run.display_name or data.name
        data.notes = run.notes or data.notes
        data.tags = list(run.tags) or data.tags
        data.group = run.run_group or data.group
        data.job_type = run.job_type or data.job_type
        data.sweep_id = run.sweep_id or data.sweep_id
        data.host = run.host or data.host
        data.resumed = data.resumed or run.resumed
        data.start_time = _pb_ms(run.start_time) or data.start_time
        self._apply_updates(data.config, run.config)

    @staticmethod
    def _apply_updates(tree: dict[str, Any], record: Any) -> None:
        for item in record.update:
            _set_path(tree, _item_path(item), _loads(item.value_json))
        for item in record.remove:
            _del_path(tree, _item_path(item))

    @staticmethod
    def _artifact_manifest(artifact: Any) -> dict[str, Any]:
        return {
            "type": artifact.type,
            "name": artifact.name,
            "digest": artifact.digest,
            "description": artifact.description,
            "aliases": list(artifact.aliases),
            "tags": list(artifact.tags),
            "metadata": _loads(artifact.metadata) if artifact.metadata else None,
            "storage_policy": artifact.manifest.storage_policy,
            "contents": [
                {"path": e.path, "digest": e.digest, "ref": e.ref or None, "size": e.size}
                for e in artifact.manifest.contents
            ],
        }

    def _read_json(self, path: Path, item: str) -> Any:
        if path.is_symlink() and not path.exists():
            self._report(OutcomeKind.UNREADABLE, item, f"dangling symlink {path}")
            return None
        if not path.is_file():
            return None
        if paths.leaves(self.root, path):
            self._escaped(path)
            return None
        if path.stat().st_size == 0:
            self._report(OutcomeKind.UNREADABLE, item, f"{path} is empty (0 bytes)")
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as err:
            self._report(OutcomeKind.UNREADABLE, item, f"{path}: {err}")
            return None

    def _read_yaml(self, path: Path, item: str) -> dict[str, Any]:
        if not path.is_file():
            return {}
        if paths.leaves(self.root, path):
            self._escaped(path)
            return {}
        try:  # with the manifest limits: a config.yaml may be an alias bomb
            loaded = load_document(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
            self._report(OutcomeKind.UNREADABLE, item, f"{path}: {err}")
            return {}
        return _unwrap_config(loaded) if isinstance(loaded, dict) else {}

    def _read_files_metadata(self, data: _RunData, files: Path) -> None:
        """Config, summary and metadata from the JSON/YAML files (legacy runs, or a log that is unusable)."""
        item = f"run {data.run_id}"
        data.config.update(self._read_yaml(files / "config.yaml", f"{item}/file config.yaml"))
        summary = self._read_json(files / "wandb-summary.json", f"{item}/file wandb-summary.json")
        if isinstance(summary, dict):
            data.summary.update(summary)
        meta = self._read_json(files / "wandb-metadata.json", f"{item}/file wandb-metadata.json")
        if isinstance(meta, dict):
            data.project = meta.get("project") or data.project
            data.name = meta.get("name") or meta.get("display_name") or data.name
            data.notes = meta.get("notes") or data.notes
            data.tags = meta.get("tags") or data.tags
            data.group = meta.get("group") or data.group
            data.job_type = meta.get("jobType") or data.job_type
            data.host = meta.get("host") or data.host
            data.user = meta.get("username") or data.user
            data.state = meta.get("state") or data.state
            if isinstance(meta.get("exitcode"), int):
                data.exit_code = meta["exitcode"]
            started = meta.get("startedAt")
            if isinstance(started, str) and data.start_time is None:
                try:
                    when = datetime.fromisoformat(started.replace("Z", "+00:00"))
                    if when.tzinfo is None:
                        when = when.replace(tzinfo=UTC)
                    data.start_time = int(when.timestamp() * 1000)
                except ValueError:
                    pass

    def _read_legacy_metadata(self, data: _RunData, run_dir: Path) -> None:
        self._read_files_metadata(data, run_dir)
        history = run_dir / "wandb-history.jsonl"
        if history.is_file() and history.stat().st_size == 0:
            self._report(
                OutcomeKind.UNREADABLE,
                f"run {data.run_id}/file wandb-history.jsonl",
                f"{history} is empty (0 bytes): the run has no history",
            )

    # -- the neutral view ---------------------------------------------------------------------------------

    def experiments(self, names: list[str] | None = None) -> Iterator[Experiment]:
        projects = sorted({project for project, _ in self._load()})
        wanted = None if names is None else {project_name(name) for name in names}
        for project in projects:
            if wanted is None or project in wanted:
                entities = {d.entity for (p, _), d in self._load().items() if p == project and d.entity}
                tags = {"wandb.entity": sorted(entities)[0]} if len(entities) == 1 else {}
                yield Experiment(key=project, name=project, tags=tags)

    def runs(self, experiment: Experiment, since: int | None = None) -> Iterator[Run]:
        for (project, _), data in self._load().items():
            if project != experiment.key:
                continue
            run = self._to_run(data)
            if since is not None and (run.start_time or 0) < since:
                continue
            yield run

    def _data(self, run: Run) -> _RunData:
        return self._load()[(run.experiment_key, run.key)]

    def _to_run(self, data: _RunData) -> Run:
        item = f"run {data.run_id}"
        config = {k: v for k, v in data.config.items() if k not in ("_wandb", "wandb_version")}
        envelope = config.pop(ENVELOPE, None)
        params = {key: param_value(value) for key, value in flatten(config)}
        tags: dict[str, str] = {"wandb.run_id": data.run_id}
        for key, value in (
            ("wandb.group", data.group),
            ("wandb.job_type", data.job_type),
            ("wandb.entity", data.entity),
            ("wandb.sweep_id", data.sweep_id),
            ("wandb.host", data.host),
            ("wandb.sdk_version", data.sdk_version),
        ):
            if value:
                tags[key] = value
        internal = data.config.get("_wandb")
        if not data.sdk_version and isinstance(internal, dict) and internal.get("cli_version"):
            tags["wandb.sdk_version"] = str(internal["cli_version"])
        if data.tags:
            tags["wandb.tags"] = json.dumps(data.tags)
        if data.resumed:
            tags["wandb.resumed"] = "true"
        status, state, end_time = self._status(data, item)
        tags["wandb.state"] = state
        if data.exit_code is not None:
            tags["wandb.exit_code"] = str(data.exit_code)
        run = Run(
            key=data.run_id,
            experiment_key=data.project or "",
            name=data.name or data.run_id,
            status=status,
            start_time=data.start_time,
            end_time=end_time,
            user=data.user,
            tags=tags,
            notes=data.notes,
            params=params,
        )
        if isinstance(envelope, dict):  # a run the ferryman writer made: restore what W&B cannot hold
            run.tags = {str(k): str(v) for k, v in (envelope.get("tags") or {}).items()}
            run.status = RunStatus(envelope.get("status", run.status))
            run.start_time = envelope.get("start_time", run.start_time)
            run.end_time = envelope.get("end_time", run.end_time)
            run.user = envelope.get("user", run.user)
            run.name = envelope.get("name", run.name)
            run.parent_key = envelope.get("parent")
        return run

    def _status(self, data: _RunData, item: str) -> tuple[RunStatus, str, int | None]:
        last = data.summary.get("_timestamp")
        last_ms = _ms(last) if isinstance(last, (int, float)) and not isinstance(last, bool) else None
        if data.legacy:
            state = data.state or "unknown"
            if state == "finished":
                return (RunStatus.FINISHED if not data.exit_code else RunStatus.FAILED), state, last_ms
            if state == "failed":
                return RunStatus.FAILED, state, last_ms
            if state == "killed":
                return RunStatus.KILLED, state, last_ms
            self._report(
                OutcomeKind.TRUNCATED,
                item,
                f"metadata state {state!r}: the run crashed or was copied while running; migrated as FAILED",
            )
            return RunStatus.FAILED, "crashed", last_ms
        if data.exit_code is None:
            self._report(
                OutcomeKind.TRUNCATED,
                item,
                "no exit record: the run crashed or was copied while running; migrated as FAILED",
            )
            return RunStatus.FAILED, "crashed", last_ms
        candidates = [t for t in (last_ms,) if t is not None]
        if data.start_time is not None and data.runtime is not None:
            candidates.append(data.start_time + data.runtime * 1000)
        end_time = max(candidates) if candidates else None
        if data.exit_code == 0:
            return RunStatus.FINISHED, "finished", end_time
        return RunStatus.FAILED, "failed", end_time

    # -- metrics ------------------------------------------------------------------------------------------

    def metrics(self, run: Run) -> Iterator[MetricBatch]:
        data = self._data(run)
        series = _Series()
        objects: dict[str, int] = {}

        def on_object(key: str, step: int, timestamp: int | None, value: Any) -> None:
            objects[key] = objects.get(key, 0) + 1

        envelope = data.config.get(ENVELOPE)
        if isinstance(envelope, dict):  # a run the ferryman writer made: undo what it had to encode
            yield from self._ferryman_metrics(data, envelope, series, on_object)
            return
        summary: dict[Any, str] = {}
        last: dict[str, float] = {}  # per user metric key: the last value the history holds
        for batch in itertools.chain(
            *(self._scan_history(data, run_dir, series, on_object, summary) for run_dir in data.dirs),
            series.drain(),
        ):
            if not batch.system and len(batch):
                last[batch.key] = batch.values[-1]
            yield batch
        self._complete_summary(data, summary)
        yield from self._summary_points(data, series.keys)
        yield from self._newer_summary(data, series.next_step - 1, last)
        for key, count in sorted(objects.items()):
            self._report(
                OutcomeKind.STORED_AS_ARTIFACT,
                f"run {data.run_id}/metric {key}",
                f"{count} non-numeric history values (media, tables, text, booleans) kept in {OBJECTS_FILE}",
            )

    def _ferryman_metrics(
        self,
        data: _RunData,
        envelope: dict[str, Any],
        series: _Series,
        on_object: Callable[[str, int, int | None, Any], None],
    ) -> Iterator[MetricBatch]:
        """All points of a ferryman-written run in source order per key: history rows, stats records and the
        points kept aside in `LEFTOVERS_FILE`, merged back by (step, timestamp)."""
        renames = {"system/" + k: v for k, v in (envelope.get("system_keys") or {}).items()}
        merged: dict[tuple[str, bool], list[tuple[int, int, float]]] = {}
        for run_dir in data.dirs:
            for batch in self._scan_history(data, run_dir, series, on_object, {}):
                merged.setdefault((batch.key, batch.system), []).extend(
                    zip(batch.steps, batch.timestamps, batch.values, strict=True)
                )
        for batch in series.drain():
            merged.setdefault((batch.key, batch.system), []).extend(
                zip(batch.steps, batch.timestamps, batch.values, strict=True)
            )
        leftovers = data.dirs[-1] / "files" / LEFTOVERS_FILE
        if leftovers.is_file():
            count = 0
            with leftovers.open(encoding="utf-8") as lines:
                for line in lines:
                    point = json.loads(line)
                    merged.setdefault((point["key"], False), []).append(
                        (point["step"], point["timestamp"], float(point["value"]))
                    )
                    count += 1
            self._report(
                OutcomeKind.STORED_AS_ARTIFACT,
                f"run {data.run_id}",
                f"{count} points W&B history cannot hold (negative or repeated steps, reserved keys) are "
                f"kept in {LEFTOVERS_FILE}",
            )
        for (key, system), points in merged.items():
            points.sort(key=lambda p: (p[0], p[1]))
            for start in range(0, len(points), BATCH):
                chunk = points[start : start + BATCH]
                yield MetricBatch(
                    renames.get(key, key),
                    [p[0] for p in chunk],
                    [p[1] for p in chunk],
                    [p[2] for p in chunk],
                    system=system,
                )

    @staticmethod
    def _complete_summary(data: _RunData, summary: dict[Any, str]) -> None:
        if data.summary_folded:
            return
        for path, text in summary.items():
            _set_path(data.summary, [path] if isinstance(path, str) else list(path), _loads(text))
        data.summary_folded = True

    def _newer_summary(self, data: _RunData, last_step: int, last: dict[str, float]) -> Iterator[MetricBatch]:
        """A torn log whose summary (in the log, or in files/wandb-summary.json when that is newer) is at a
        later step than the last history row: each key whose summary value differs from its last history
        value is one point at the summary's `_step` and `_timestamp`, reported as approximate (the summary
        does not say at which step each value was logged; it is exact for a key logged at that last step)."""
        newest = data.summary
        if data.dirs:
            path = data.dirs[-1] / "files" / "wandb-summary.json"
            item = f"run {data.run_id}/file wandb-summary.json"
            found = self._read_json(path, item) if path.is_file() else None
            if isinstance(found, dict) and _step_of(found) > _step_of(newest):
                newest = found
        step = _step_of(newest)
        if step <= last_step:
            return
        stamp = newest.get("_timestamp")
        when = _ms(stamp) if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else None
        when = when if when is not None else (data.start_time or 0)
        for key, value in flatten({k: v for k, v in newest.items() if k not in INTERNAL_KEYS}):
            number = _number(value)
            if key in last and number is not None and number != last[key] and not (
                math.isnan(number) and math.isnan(last[key])
            ):
                self._report(
                    OutcomeKind.APPROXIMATE,
                    f"run {data.run_id}/metric {key}",
                    f"the summary at step {step} is newer than the history, which ends at step "
                    f"{last_step} (a torn log): its value is one point at step {step}, the summary's last "
                    "step (exact when the value was logged at that step, otherwise logged at an earlier step "
                    "the log lost)",
                )
                yield MetricBatch(key, [step], [when], [number])

    def _summary_points(self, data: _RunData, history_keys: set[str]) -> Iterator[MetricBatch]:
        step = data.summary.get("_step")
        step = step if isinstance(step, int) and not isinstance(step, bool) else 0
        stamp = data.summary.get("_timestamp")
        when = _ms(stamp) if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else None
        when = when if when is not None else (data.start_time or 0)
        for key, value in flatten({k: v for k, v in data.summary.items() if k not in INTERNAL_KEYS}):
            number = _number(value)
            if number is not None and key not in history_keys:
                yield MetricBatch(key, [step], [when], [number])

    def _scan_history(
        self,
        data: _RunData,
        run_dir: Path,
        series: _Series,
        on_object: Callable[[str, int, int | None, Any], None],
        summary: dict[Any, str],
    ) -> Iterator[MetricBatch]:
        if data.legacy:
            yield from self._scan_legacy(run_dir, series, on_object)
            return
        log = self._log_path(run_dir)
        if log is None or not log.exists():
            return
        damage: list[Damage] = []  # reported by the metadata pass already
        try:
            chunks = self._chunks(log, damage)
            record = self._new_record()
            parse = record.ParseFromString

            def decode(payload: bytes) -> Any:
                try:
                    parse(payload)
                except DecodeError:
                    return None
                return record

            for chunk in chunks:
                types = record_types(chunk)
                for index in np.flatnonzero(types <= 1).tolist():  # the lead bytes did not tell
                    types[index] = first_field(chunk[index])
                history: list[bytes] = []
                summaries: list[bytes] = []
                start = 0
                for index in [*np.flatnonzero(types == F_STATS).tolist(), len(chunk)]:
                    kinds = types[start:index]
                    history += itertools.compress(chunk[start:index], (kinds == F_HISTORY).tolist())
                    summaries += itertools.compress(chunk[start:index], (kinds == F_SUMMARY).tolist())
                    if index < len(chunk):  # a stats record without a timestamp takes the last row's
                        series.history_chunk(history, decode, on_object)
                        history = []
                        if decode(chunk[index]) is not None:
                            stats = record.stats
                            items = ((i.key, i.value_json) for i in stats.item)
                            series.stats_row(_pb_ms(stats.timestamp), items)
                    start = index + 1
                series.history_chunk(history, decode, on_object)
                _fold_summaries(summary, summaries, decode)
                if series.full:
                    yield from series.drain(final=False)
        except (NotAWandbLog, OSError):
            return

    def _scan_legacy(
        self, run_dir: Path, series: _Series, on_object: Callable[[str, int, int | None, Any], None]
    ) -> Iterator[MetricBatch]:
        for name, system in (("wandb-history.jsonl", False), ("wandb-events.jsonl", True)):
            path = run_dir / name
            if not path.is_file():
                continue
            with path.open(encoding="utf-8", errors="replace") as lines:
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except ValueError:
                        self._report(
                            OutcomeKind.UNREADABLE, f"file {path}", f"line {number} is not JSON; skipped"
                        )
                        continue
                    if not isinstance(row, dict):
                        continue
                    if system:
                        stamp = row.get("_timestamp")
                        when = _ms(stamp) if isinstance(stamp, (int, float)) else None
                        series.stats_row(
                            when,
                            (
                                (k.removeprefix("system."), v)
                                for k, v in row.items()
                                if k not in INTERNAL_KEYS
                            ),
                        )
                    else:
                        series.json_row(row, on_object)
                    if series.full:
                        yield from series.drain(final=False)

    # -- artifacts ----------------------------------------------------------------------------------------

    def artifacts(self, run: Run) -> Iterator[Artifact]:
        data = self._data(run)
        written_by_ferryman = isinstance(data.config.get(ENVELOPE), dict)
        seen: set[str] = set()
        for run_dir in reversed(data.dirs):  # a resumed run's later files replace earlier ones
            files = run_dir if data.legacy else run_dir / "files"
            if not files.is_dir():
                continue
            for path in paths.files(files, self._escaped, self.root):
                rel = path.relative_to(files).as_posix()
                if data.legacy and (path.suffix == ".wandb" or path.is_dir()):
                    continue
                if written_by_ferryman:
                    if rel in SDK_FILES or rel.split("/", 1)[0] in SDK_FILES:
                        continue
                    if rel == LEFTOVERS_FILE:
                        continue
                    rel = rel.removeprefix(SOURCE_FILES_PREFIX)
                if path.is_symlink() and not path.exists():
                    self._report(
                        OutcomeKind.UNREADABLE,
                        f"run {data.run_id}/file {rel}",
                        f"dangling symlink {path} -> {path.readlink()}",
                    )
                    continue
                if not path.is_file() or rel in seen:
                    continue
                seen.add(rel)
                yield Artifact(path=rel, open=_opener(path), size=path.stat().st_size)
        for rel in sorted(data.listed_files - seen):
            if not written_by_ferryman and not any(rel == s or rel.startswith(s + "/") for s in SDK_FILES):
                self._report(
                    OutcomeKind.UNREADABLE,
                    f"run {data.run_id}/file {rel}",
                    "listed in the .wandb log but missing from the run's files/ directory",
                )
        if written_by_ferryman:
            return
        objects = self._objects_file(data)  # also completes the summary
        if not data.legacy and "wandb-summary.json" not in seen and data.summary:
            yield _memory_artifact("wandb-summary.json", json.dumps(data.summary, indent=2, sort_keys=True))
        for index, manifest in enumerate(data.logged_artifacts):
            name = f"wandb-artifacts/{index:03d}-{manifest['type']}-{manifest['name']}/manifest.json"
            yield _memory_artifact(name, json.dumps(manifest, indent=2, sort_keys=True))
        if objects:
            yield _memory_artifact(OBJECTS_FILE, objects)

    def _objects_file(self, data: _RunData) -> str:
        lines: list[str] = []

        def on_object(key: str, step: int, timestamp: int | None, value: Any) -> None:
            lines.append(
                json.dumps(
                    {"key": key, "step": step, "timestamp": timestamp, "value": value},
                    sort_keys=True,
                    default=str,
                )
            )

        series = _Series(keep=False)
        summary: dict[Any, str] = {}
        for run_dir in data.dirs:
            for _ in self._scan_history(data, run_dir, series, on_object, summary):
                pass
        self._complete_summary(data, summary)
        return "".join(line + "\n" for line in lines)

    def registered_models(self) -> Iterator[RegisteredModel]:
        return iter(())

    def logged_models(self, experiment: Experiment) -> Iterator[LoggedModel]:
        return iter(())

    def outcomes(self) -> list[Outcome]:
        return list(self._outcomes)

    def close(self) -> None:
        self._runs = None


def _opener(path: Path) -> Callable[[], BinaryIO]:
    return lambda: path.open("rb")


def _memory_artifact(path: str, text: str) -> Artifact:
    blob = text.encode("utf-8")
    return Artifact(path=path, open=lambda: io.BytesIO(blob), size=len(blob))


class _Series:
    """Per-key column buffers filled row by row and drained as `MetricBatch`es of at most `BATCH` points."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.columns: dict[str, tuple[list[int], list[int], list[float]]] = {}
        self.system: dict[str, tuple[list[int], list[int], list[float]]] = {}
        self.system_counts: dict[str, int] = {}
        self.keys: set[str] = set()
        self.full = False
        self.pending = 0  # user points buffered; drained once they reach `limit` (BATCH per key on average)
        self.limit = BATCH
        self.next_step = 0
        self.last_time: int | None = None

    def history_chunk(
        self,
        payloads: list[bytes],
        decode: Callable[[bytes], Any],
        on_object: Callable[[str, int, int | None, Any], None],
    ) -> None:
        """History records in order: rows of plain numbers with one `_step` and one `_timestamp` vectorised,
        every other row through `decode` (protobuf) and `history_row`, exactly as if all went that way."""
        if not payloads:
            return
        count = len(payloads)
        items = split_items(payloads, HISTORY_TAG)
        if items is None:
            ok = np.zeros(count, dtype=bool)
        else:
            ok, record, key_id, names = items.ok, items.record, items.key, items.names
            ids = {name: index for index, name in enumerate(names)}
            is_step = key_id == ids.get("_step", -1)
            is_time = key_id == ids.get("_timestamp", -1)
            ok &= np.bincount(record[is_step], minlength=count) == 1
            ok &= np.bincount(record[is_time], minlength=count) == 1
            stamped = [ids[name] for name in names if name.startswith(TIMESTAMP_PREFIX)]
            if stamped:
                ok &= np.bincount(record[np.isin(key_id, stamped)], minlength=count) == 0
            skipped = [ids[name] for name in names if name in INTERNAL_KEYS]
            is_data = ~(is_step | is_time | np.isin(key_id, skipped))
            numbers, parsed = items.numbers()
            rest = np.flatnonzero(~parsed & ok[record])  # values `decimals` left to float()
            texts = items.values(rest)
            if texts is None:  # one is not UTF-8 (protobuf rejects its record) or holds a NUL
                ok[record[rest]] = False
            else:  # rows whose numeric keys have other values go to protobuf
                floats = [_float_or_none(text) for text in texts]
                bad = np.fromiter((value is None for value in floats), bool, len(floats))
                ok[record[rest[bad & (is_data | is_step | is_time)[rest]]]] = False
                numbers[rest[~bad]] = [value for value in floats if value is not None]
            step_value = np.zeros(count)
            step_value[record[is_step]] = numbers[is_step]
            time_value = np.zeros(count)
            time_value[record[is_time]] = numbers[is_time] * 1000
            ok &= np.isfinite(step_value) & (np.abs(step_value) < 2.0**62)
            ok &= np.isfinite(time_value) & (np.abs(time_value) < 2.0**62)
            steps = np.where(ok, step_value, 0).astype(np.int64)  # int() truncates, as does astype
            whens = np.rint(np.where(ok, time_value, 0)).astype(np.int64)  # round() is half to even too
            bounds = np.searchsorted(record, np.arange(count + 1))
        start = 0
        for index in [*np.flatnonzero(~ok).tolist(), count]:
            if start < index:
                lo, hi = int(bounds[start]), int(bounds[index])
                data = np.flatnonzero(is_data[lo:hi]) + lo
                self._plain_rows(names, key_id[data], steps[record[data]], whens[record[data]], numbers[data])
                self.next_step = int(steps[index - 1]) + 1
                self.last_time = int(whens[index - 1])
            if index < count:
                decoded = decode(payloads[index])
                if decoded is not None:
                    self.history_row(decoded.history, on_object)
            start = index + 1

    def _plain_rows(
        self, names: list[str], key_id: np.ndarray, steps: np.ndarray, whens: np.ndarray, values: np.ndarray
    ) -> None:
        """Points of plain rows (items in row order) appended to their keys' columns."""
        order = np.argsort(key_id, kind="stable")
        key_id = key_id[order]
        cuts = [0, *(np.flatnonzero(key_id[1:] != key_id[:-1]) + 1).tolist(), len(key_id)]
        for lo, hi in itertools.pairwise(cuts):
            if lo == hi:
                continue
            key = names[key_id[lo]]
            if not self.keep:
                self.keys.add(key)
                continue
            column = self.columns.get(key)
            if column is None:
                column = self.columns[key] = ([], [], [])
                self.keys.add(key)
                self.limit = BATCH * len(self.columns)
            chosen = order[lo:hi]
            column[0].extend(steps[chosen].tolist())
            column[1].extend(whens[chosen].tolist())
            column[2].extend(values[chosen].tolist())
        if self.keep:
            self.pending += len(key_id)
            if self.pending >= self.limit:
                self.full = True

    def history_row(self, history: Any, on_object: Callable[[str, int, int | None, Any], None]) -> None:
        """One `HistoryRecord`: the hot loop of the reader, kept free of calls for plain numeric items."""
        step: int | None = None
        when: int | None = None
        numbers: list[tuple[str, float]] = []
        others: dict[str, Any] | None = None
        nested: dict[str, Any] | None = None
        stamps: dict[str, int] | None = None
        for item in history.item:
            path = item.nested_key  # SDK 0.31 writes every key this way; older SDKs use `key`
            if len(path) == 1:
                key = path[0]
            elif not path:
                key = item.key
            else:
                if nested is None:
                    nested = {}
                _set_path(nested, list(path), _item_value(item))
                continue
            text = item.value_json
            if text:
                try:
                    value: Any = float(text)
                except ValueError:
                    value = _loads(text)
            else:
                value = _item_value(item)
            if key[:1] == "_":
                if key == "_step":
                    step = int(value)
                    continue
                if key == "_timestamp":
                    when = round(value * 1000)
                    continue
                if key in INTERNAL_KEYS:
                    continue
                if key.startswith(TIMESTAMP_PREFIX):
                    if stamps is None:
                        stamps = {}
                    stamps[key[len(TIMESTAMP_PREFIX) :]] = int(value)
                    continue
            if value.__class__ is float:
                numbers.append((key, value))
                continue
            if others is None:
                others = {}
            others[key] = value
        if nested:
            for key, value in flatten(nested):
                if key.split(".", 1)[0] in INTERNAL_KEYS:
                    continue
                number = _number(value)
                if number is not None:
                    numbers.append((key, number))
                else:
                    if others is None:
                        others = {}
                    others[key] = value
        if others is None and stamps is None and self.keep:  # the common row: numbers only, inline
            if step is None:
                step = self.next_step
            self.next_step = step + 1
            if when is None:
                when = self.last_time if self.last_time is not None else 0
            self.last_time = when
            columns = self.columns
            for key, value in numbers:
                column = columns.get(key)
                if column is None:
                    column = columns[key] = ([], [], [])
                    self.keys.add(key)
                    self.limit = BATCH * len(columns)
                column[0].append(step)
                column[1].append(when)
                column[2].append(value)
            self.pending += len(numbers)
            if self.pending >= self.limit:
                self.full = True
            return
        self._row(step, when, numbers, others, stamps, on_object)

    def json_row(self, row: dict[str, Any], on_object: Callable[[str, int, int | None, Any], None]) -> None:
        step = row.get("_step")
        stamp = row.get("_timestamp")
        numbers: list[tuple[str, float]] = []
        others: dict[str, Any] = {}
        for key, value in flatten({k: v for k, v in row.items() if k not in INTERNAL_KEYS}):
            number = _number(value)
            if number is not None:
                numbers.append((key, number))
            else:
                others[key] = value
        self._row(
            step if isinstance(step, int) and not isinstance(step, bool) else None,
            _ms(stamp) if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else None,
            numbers,
            others,
            None,
            on_object,
        )

    def _row(
        self,
        step: int | None,
        when: int | None,
        numbers: list[tuple[str, float]],
        others: dict[str, Any] | None,
        stamps: dict[str, int] | None,
        on_object: Callable[[str, int, int | None, Any], None],
    ) -> None:
        if step is None:
            step = self.next_step
        self.next_step = step + 1
        if when is None:
            when = self.last_time if self.last_time is not None else 0
        self.last_time = when
        if self.keep:
            columns = self.columns
            for key, value in numbers:
                column = columns.get(key)
                if column is None:
                    column = columns[key] = ([], [], [])
                    self.keys.add(key)
                    self.limit = BATCH * len(columns)
                column[0].append(step)
                column[1].append(stamps.get(key, when) if stamps else when)
                column[2].append(value)
            self.pending += len(numbers)
            if self.pending >= self.limit:
                self.full = True
        else:
            self.keys.update(key for key, _ in numbers)
        if others:
            for key, value in others.items():
                on_object(key, step, when, value)

    def stats_row(self, when: int | None, items: Iterable[tuple[str, Any]]) -> None:
        if when is None:
            when = self.last_time if self.last_time is not None else 0
        for key, raw in items:
            if isinstance(raw, str):
                try:
                    value = float(raw)
                except ValueError:
                    continue
            else:
                number = _number(raw)
                if number is None:
                    continue
                value = number
            if not self.keep:
                continue
            if key.startswith(STEP_PREFIX):  # written by ferryman right after the point it belongs to
                name = "system/" + key[len(STEP_PREFIX) :]
                self.system[name][0][-1] = int(value)
                continue
            name = "system/" + key
            index = self.system_counts.get(name, 0)
            self.system_counts[name] = index + 1
            column = self.system.get(name)
            if column is None:
                column = self.system[name] = ([], [], [])
            column[0].append(index)
            column[1].append(when)
            column[2].append(value)
            if len(column[2]) >= BATCH:
                self.full = True

    def drain(self, final: bool = True) -> Iterator[MetricBatch]:
        """Batches of at most `BATCH` points; before the end (`final` False) only full ones, so a chunk of
        rows read at once cuts the same batches as rows read one by one."""
        pending = 0
        for system, columns in ((False, self.columns), (True, self.system)):
            for key, (steps, times, values) in columns.items():
                cut = len(values) if final else len(values) - len(values) % BATCH
                for start in range(0, cut, BATCH):
                    end = min(start + BATCH, cut)
                    yield MetricBatch(
                        key, steps[start:end], times[start:end], values[start:end], system=system
                    )
                if cut:
                    del steps[:cut], times[:cut], values[:cut]
                if not system:
                    pending += len(values)
        self.full = False
        self.pending = pending


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _item_value(item: Any) -> Any:
    kind = item.WhichOneof("value")
    if kind is None or kind == "none":
        return _loads(item.value_json) if item.value_json else None
    if kind == "json":
        return _loads(item.json)
    value = getattr(item, kind)
    return float(value) if kind == "integer" else value


def open_reader(endpoint: Endpoint, credentials: object = None) -> WandbDirReader:
    """The reader for `wandb:PATH` (the URI registry's factory)."""
    return WandbDirReader(Path(endpoint.location).expanduser())
