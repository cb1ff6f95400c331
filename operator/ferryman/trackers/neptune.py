"""Neptune exports (`neptune-export:PATH`): the `neptune-exporter` parquet layout, read and written.

Layout (neptune-exporter's `ParquetWriter`): `PATH/data/<project>/<run>_part_<n>.parquet` holds "one long
table" per run (one row per parameter value or series point, typed value columns), and `PATH/files/<project>/`
holds the downloaded files that `file_value.path` names relative to it. `<project>` and `<run>` are the ids
made path-safe with a short blake2b suffix. A run is complete once its `part_0` exists (parts are renamed into
place highest first). PATH may also be the data directory itself (files then in its sibling `files/`).

Mapping: project → experiment, run → run, parameter attributes (float, int, string, bool, datetime,
string_set) → params, `sys/*` attributes → run fields (name, owner, times, state, tags, description, fork
parent; other `sys/*` become tags), float series → metrics (decimal steps made integral, per-point
timestamps), files, file series, file sets and string/histogram series → artifacts.

The writer produces the same layout, so an export can be re-created and read back. Until `finish_run`, each
write lands in a journal file (`<run>.journal-<n>.parquet`, invisible to Neptune tools) written through a temp
file and a rename; `finish_run` compacts the journals into `_part_<n>` files, `part_0` last. Run ids are
derived from the source identity, so a re-run finds its runs again and writes nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ferryman.migrate.ledger import source_state
from ferryman.trackers.model import (
    COMPLETE_TAG,
    SOURCE_TAG,
    Artifact,
    DestinationRun,
    Experiment,
    LoggedModel,
    MetricBatch,
    Outcome,
    OutcomeKind,
    RegisteredModel,
    Run,
    RunStatus,
    TrackerReader,
    WithoutModelRegistry,
)

URI_PREFIX = "neptune-export:"

SCHEMA = pa.schema(
    [
        pa.field("project_id", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("attribute_path", pa.string()),
        pa.field("attribute_type", pa.string()),
        pa.field("step", pa.decimal128(18, 6)),
        pa.field("timestamp", pa.timestamp("ms", tz="UTC")),
        pa.field("int_value", pa.int64()),
        pa.field("float_value", pa.float64()),
        pa.field("string_value", pa.string()),
        pa.field("bool_value", pa.bool_()),
        pa.field("datetime_value", pa.timestamp("ms", tz="UTC")),
        pa.field("string_set_value", pa.list_(pa.string())),
        pa.field("file_value", pa.struct([pa.field("path", pa.string())])),
        pa.field(
            "histogram_value",
            pa.struct(
                [
                    pa.field("type", pa.string()),
                    pa.field("edges", pa.list_(pa.float64())),
                    pa.field("values", pa.list_(pa.float64())),
                ]
            ),
        ),
    ]
)

PARAMETER_TYPES = ("float", "int", "string", "bool", "datetime", "string_set")
FILE_TYPES = ("file", "file_series", "file_set", "artifact")
TEXT_SERIES_TYPES = ("string_series", "histogram_series")
KNOWN_TYPES = (*PARAMETER_TYPES, "float_series", *TEXT_SERIES_TYPES, *FILE_TYPES)

# ferryman's own attributes: key/value tags (Neptune tags are a plain set) and which series are system metrics
TAG_NAMESPACE = "ferryman/tags/"
SYSTEM_METRICS_ATTRIBUTE = "ferryman/system_metrics"
SOURCE_STATE_ATTRIBUTE = "ferryman/source_state"
STATUS_ATTRIBUTE = "ferryman/status"  # the exact run status (Neptune only knows active, failed or not)
SYSTEM_PREFIXES = ("monitoring/",)  # Neptune 2.x hardware monitoring namespace

TARGET_PART_BYTES = 50 * 1024 * 1024  # the exporter rolls parts over at about 50 MB
BATCH_POINTS = 10_000  # points per MetricBatch
_REQUIRED_COLUMNS = ("run_id", "attribute_path", "attribute_type")
_PART_RE = re.compile(r"^(?P<run>.+)_part_(?P<n>\d+)\.parquet$")
_JOURNAL_RE = re.compile(r"^(?P<run>.+)\.journal-(?P<n>\d+)\.parquet$")


class NeptuneExportError(ValueError):
    """The export cannot be used at all (missing directory, not an export)."""


def safe_path_part(part: str) -> str:
    """neptune-exporter's `sanitize_path_part`: path-safe characters plus a blake2b suffix of the original."""
    digest = hashlib.blake2b(part.encode("utf-8"), digest_size=8).hexdigest()
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in part) + "-" + digest


def export_dirs(path: Path) -> tuple[Path, Path]:
    """(data directory, files directory) of an export root (`data/` + `files/`) or of a data directory."""
    if (path / "data").is_dir():
        return path / "data", path / "files"
    return path, path.parent / "files"


def _path_from_uri(uri: str) -> Path:
    rest = uri[len(URI_PREFIX) :] if uri.startswith(URI_PREFIX) else uri
    if rest.startswith("//"):
        rest = rest[2:]
    if not rest:
        raise NeptuneExportError(f"{uri!r}: give the export directory, e.g. neptune-export:./exports")
    return Path(rest).expanduser()


def open_reader(uri: str, credentials: object = None) -> NeptuneExportReader:
    return NeptuneExportReader(_path_from_uri(uri))


def open_writer(uri: str, credentials: object = None) -> NeptuneExportWriter:
    return NeptuneExportWriter(_path_from_uri(uri))


# --- reading parquet files with a schema check --------------------------------------------------------------


def _normalize_column(name: str, column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Cast one column to the documented type; raise TypeError when its type cannot mean that."""
    target = SCHEMA.field(name).type
    have = column.type
    if have == target and name != "step" and not pa.types.is_timestamp(target):
        return column
    ok = False
    if pa.types.is_string(target):
        ok = pa.types.is_string(have) or pa.types.is_large_string(have) or pa.types.is_dictionary(have)
    elif name == "step":
        ok = pa.types.is_decimal(have) or pa.types.is_floating(have) or pa.types.is_integer(have)
    elif pa.types.is_timestamp(target):
        ok = pa.types.is_timestamp(have)
    elif name == "int_value":
        ok = pa.types.is_integer(have)
    elif name == "float_value":
        ok = pa.types.is_floating(have) or pa.types.is_integer(have)
    elif name == "bool_value":
        ok = pa.types.is_boolean(have)
    elif name == "string_set_value":
        ok = (pa.types.is_list(have) or pa.types.is_large_list(have)) and (
            pa.types.is_string(have.value_type) or pa.types.is_large_string(have.value_type)
        )
    elif name == "file_value":
        ok = pa.types.is_struct(have) and have.get_field_index("path") >= 0
    elif name == "histogram_value":
        ok = pa.types.is_struct(have)
    if not ok:
        raise TypeError(f"has type {have}, expected {target}")
    if name in ("file_value", "histogram_value"):
        return column  # struct fields are read by name
    if pa.types.is_dictionary(have):
        column = pc.cast(column, pa.string())
    if name == "step":
        return pc.cast(column, pa.float64())
    if pa.types.is_timestamp(target):  # as integer milliseconds: no float rounding on the way
        return pc.cast(pc.cast(column, pa.timestamp("ms", tz="UTC"), safe=False), pa.int64())
    return pc.cast(column, target, safe=False)


@dataclass(slots=True)
class _Rows:
    """One batch of rows, columns cast to the documented types (absent or unusable columns read as null)."""

    arrays: dict[str, pa.ChunkedArray]
    length: int

    def array(self, name: str) -> pa.ChunkedArray | None:
        return self.arrays.get(name)

    def get(self, name: str) -> list[Any]:
        column = self.arrays.get(name)
        return [None] * self.length if column is None else column.to_pylist()


def _read_part(
    path: Path, types: tuple[str, ...] | None, outcomes: list[Outcome], columns: tuple[str, ...] | None = None
) -> Iterator[_Rows]:
    """Rows of one part, filtered by attribute type. A corrupt file, a missing required column or a column of
    the wrong type is reported (naming the file and column); unusable value columns read as null."""
    try:
        part = pq.ParquetFile(path)
        schema = part.schema_arrow
    except (OSError, pa.ArrowException) as error:
        outcomes.append(
            Outcome(OutcomeKind.UNREADABLE, f"file {path}", f"not a readable parquet file: {error}")
        )
        return
    missing = [name for name in _REQUIRED_COLUMNS if schema.get_field_index(name) < 0]
    if missing:
        outcomes.append(
            Outcome(
                OutcomeKind.UNREADABLE, f"file {path}", f"missing required column(s) {', '.join(missing)}"
            )
        )
        return
    wanted = [name for name in (columns or SCHEMA.names) if schema.get_field_index(name) >= 0]
    for name in columns or SCHEMA.names:
        if name not in wanted and name != "project_id":
            outcomes.append(
                Outcome(OutcomeKind.UNREADABLE, f"file {path} column {name}", "column is missing")
            )
    broken: set[str] = set()
    try:
        for batch in part.iter_batches(batch_size=65_536, columns=wanted):
            table = pa.Table.from_batches([batch])
            if types is not None:
                kinds = _normalize_column("attribute_type", table.column("attribute_type"))
                table = table.filter(pc.is_in(kinds, value_set=pa.array(types)))
            if table.num_rows == 0:
                continue
            arrays: dict[str, pa.ChunkedArray] = {}
            for name in wanted:
                if name in broken:
                    continue
                try:
                    arrays[name] = _normalize_column(name, table.column(name))
                except (TypeError, pa.ArrowException) as error:
                    outcomes.append(Outcome(OutcomeKind.UNREADABLE, f"file {path} column {name}", str(error)))
                    broken.add(name)
            yield _Rows(arrays, table.num_rows)
    except (OSError, pa.ArrowException) as error:
        outcomes.append(Outcome(OutcomeKind.UNREADABLE, f"file {path}", f"corrupt parquet data: {error}"))


def _series_slices(
    rows: _Rows, default_time: int
) -> Iterator[tuple[str, np.ndarray, tuple[np.ndarray, np.ndarray], np.ndarray, int]]:
    """Per metric key, in row order: steps (NaN where missing), (timestamps with `default_time` where missing,
    missing mask), values, and how many rows had no value."""
    keys = rows.array("attribute_path")
    if keys is None or rows.length == 0:
        return
    encoded = pc.dictionary_encode(keys).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    names = encoded.dictionary.to_pylist()

    def numbers(name: str, fill: float | int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
        column = rows.array(name)
        if column is None:
            return np.full(rows.length, fill, dtype=dtype), np.ones(rows.length, dtype=bool)
        missing = pc.is_null(column).to_numpy(zero_copy_only=False)
        return pc.fill_null(column, fill).to_numpy(zero_copy_only=False).astype(dtype), missing

    steps, _ = numbers("step", math.nan, np.float64)  # null steps stay NaN
    stamps, untimed = numbers("timestamp", default_time, np.int64)
    values, valueless = numbers("float_value", 0.0, np.float64)
    order = np.argsort(codes, kind="stable")
    for chunk in np.split(order, np.flatnonzero(np.diff(codes[order])) + 1):
        if not len(chunk):
            continue
        kept = chunk[~valueless[chunk]]
        yield (
            names[codes[chunk[0]]],
            steps[kept],
            (stamps[kept], untimed[kept]),
            values[kept],
            len(chunk) - len(kept),
        )


def _parameter_text(kind: str, row: dict[str, Any]) -> str | None:
    """The string form of a parameter value (how MLflow and the exporter's loaders print it)."""
    if kind == "float":
        value = row["float_value"]
        return None if value is None else repr(float(value))
    if kind == "int":
        return None if row["int_value"] is None else str(row["int_value"])
    if kind == "string":
        return row["string_value"]
    if kind == "bool":
        return None if row["bool_value"] is None else str(bool(row["bool_value"]))
    if kind == "datetime":
        value = row["datetime_value"]
        return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC).isoformat()
    if kind == "string_set":
        value = row["string_set_value"]
        return None if value is None else ",".join(sorted(value))
    return None


# --- locating runs -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _RunFiles:
    stem: str  # path-safe run id
    parts: list[Path] = field(default_factory=list)  # by part number
    journals: list[Path] = field(default_factory=list)  # by sequence number (writer only)


def _run_files(project_dir: Path) -> dict[str, _RunFiles]:
    """Parts and journals of every run in a project directory, each in number order."""
    numbered: dict[str, list[tuple[bool, int, Path]]] = {}
    for path in project_dir.iterdir():
        part = _PART_RE.match(path.name)
        match = part or _JOURNAL_RE.match(path.name)
        if match is not None and path.is_file():
            numbered.setdefault(match["run"], []).append((part is None, int(match["n"]), path))
    found: dict[str, _RunFiles] = {}
    for stem, files in sorted(numbered.items()):
        entry = found[stem] = _RunFiles(stem)
        for is_journal, _, path in sorted(files):
            (entry.journals if is_journal else entry.parts).append(path)
    return found


@dataclass(slots=True)
class _SourceRun:
    """What the reader keeps about a run between `runs` and `metrics`/`artifacts`."""

    parts: list[Path]
    run_id: str
    system_keys: set[str]
    start_time: int | None


# --- reader ------------------------------------------------------------------------------------------------


class NeptuneExportReader:
    """Streams a neptune-exporter export (or one written by `NeptuneExportWriter`)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.data_dir, self.files_dir = export_dirs(self.path)
        if not self.data_dir.is_dir():
            raise NeptuneExportError(f"Neptune export {self.path}: no such directory")
        self._outcomes: list[Outcome] = []
        self._reported: set[Outcome] = set()
        self._lock = threading.Lock()
        self._projects: dict[str, Path] = {}
        self._runs: dict[tuple[str, str], _SourceRun] = {}

    def _report(self, outcomes: list[Outcome]) -> None:
        """Record outcomes once each (a part is read for params, metrics and artifacts alike)."""
        with self._lock:
            for outcome in outcomes:
                if outcome not in self._reported:
                    self._reported.add(outcome)
                    self._outcomes.append(outcome)

    def _project_id(self, project_dir: Path, files: dict[str, _RunFiles]) -> str | None:
        for run in files.values():
            for path in run.parts + run.journals:
                try:
                    table = pq.read_table(path, columns=["project_id"]).slice(0, 1)
                except (OSError, pa.ArrowException, KeyError):
                    continue
                if table.num_rows:
                    value = table.column(0)[0].as_py()
                    if isinstance(value, str):
                        return value
        return None

    def experiments(self, names: list[str] | None = None) -> Iterator[Experiment]:
        for project_dir in sorted(
            p for p in self.data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        ):
            files = _run_files(project_dir)
            if not files:
                continue
            project_id = self._project_id(project_dir, files)
            if project_id is None:
                self._report(
                    [
                        Outcome(
                            OutcomeKind.UNREADABLE,
                            f"directory {project_dir}",
                            "no readable project_id in any part",
                        )
                    ]
                )
                project_id = project_dir.name
            if names and project_id not in names:
                continue
            self._projects[project_id] = project_dir
            yield Experiment(key=project_id, name=project_id)

    def _project_dir(self, experiment: Experiment) -> Path:
        if experiment.key not in self._projects:
            candidate = self.data_dir / safe_path_part(experiment.key)
            if not candidate.is_dir():
                raise NeptuneExportError(f"Neptune export {self.path}: no project {experiment.key!r}")
            self._projects[experiment.key] = candidate
        return self._projects[experiment.key]

    def runs(self, experiment: Experiment, since: int | None = None) -> Iterator[Run]:
        """Runs of the project; `since` keeps runs started at or after it (ms)."""
        for stem, files in _run_files(self._project_dir(experiment)).items():
            if not files.parts:
                continue  # only journals: a run the writer has not finished
            if not files.parts[0].name.endswith("_part_0.parquet"):
                self._report(
                    [
                        Outcome(
                            OutcomeKind.UNREADABLE, f"run {stem}", "incomplete export: parts without part_0"
                        )
                    ]
                )
                continue
            run = self._load_run(experiment, stem, files.parts)
            if run is None:
                continue
            if since is not None and (run.start_time or 0) < since:
                continue
            yield run

    def _load_run(self, experiment: Experiment, stem: str, parts: list[Path]) -> Run | None:
        outcomes: list[Outcome] = []
        values: dict[str, tuple[str, dict[str, Any]]] = {}
        run_id: str | None = None
        for part in parts:
            for rows in _read_part(part, PARAMETER_TYPES, outcomes):
                paths, kinds, ids = rows.get("attribute_path"), rows.get("attribute_type"), rows.get("run_id")
                value_columns = {name: rows.get(name) for name in SCHEMA.names[6:12]}
                for i in range(rows.length):
                    run_id = run_id or ids[i]
                    values[paths[i]] = (kinds[i], {name: column[i] for name, column in value_columns.items()})
            if run_id is None:  # a run with series only: take the id from any row
                for rows in _read_part(
                    part, None, [], columns=("run_id", "attribute_path", "attribute_type")
                ):
                    run_id = next((value for value in rows.get("run_id") if value), None)
                    break
        self._report(outcomes)
        if run_id is None:
            if not outcomes:
                self._report([Outcome(OutcomeKind.UNREADABLE, f"run {stem}", "no rows in any part")])
            return None

        def take(path: str) -> Any:
            kind, row = values.pop(path, (None, None))
            if kind is None or row is None:
                return None
            column = {
                "float": "float_value",
                "int": "int_value",
                "string": "string_value",
                "bool": "bool_value",
                "datetime": "datetime_value",
                "string_set": "string_set_value",
            }[kind]
            return row[column]

        failed = take("sys/failed")
        state = take("sys/state")
        active = str(state).lower() in ("active", "running")
        status = RunStatus.FAILED if failed else RunStatus.RUNNING if active else RunStatus.FINISHED
        exact = take(STATUS_ATTRIBUTE)
        if exact in RunStatus.__members__:
            status = RunStatus(exact)
        start = take("sys/creation_time")
        end = take("sys/ping_time")
        modified = take("sys/modification_time")
        run = Run(
            key=run_id,
            experiment_key=experiment.key,
            name=take("sys/name") or take("sys/custom_run_id") or run_id,
            status=status,
            start_time=start,
            end_time=None if status is RunStatus.RUNNING else (end if end is not None else modified),
            user=take("sys/owner"),
            notes=take("sys/description") or None,
            parent_key=take("sys/forking/parent") or None,
        )
        for tag in (take("sys/tags") or []) + (take("sys/group_tags") or []):
            run.tags[tag] = ""
        system_keys = set(take(SYSTEM_METRICS_ATTRIBUTE) or [])
        take(SOURCE_STATE_ATTRIBUTE)
        take("sys/id")  # the run key itself
        for path, (kind, row) in values.items():
            text = _parameter_text(kind, row)
            if text is None:
                continue
            if path.startswith(TAG_NAMESPACE):
                run.tags[path[len(TAG_NAMESPACE) :]] = text
            elif path.startswith("sys/"):
                run.tags[path] = text
            else:
                run.params[path] = text
        with self._lock:
            self._runs[(experiment.key, run_id)] = _SourceRun(parts, run_id, system_keys, start)
        return run

    def _source(self, run: Run) -> _SourceRun:
        try:
            return self._runs[(run.experiment_key, run.key)]
        except KeyError:
            raise NeptuneExportError(f"run {run.key!r} was not listed by this reader") from None

    def metrics(self, run: Run) -> Iterator[MetricBatch]:
        source = self._source(run)
        outcomes: list[Outcome] = []
        buffers: dict[str, MetricBatch] = {}
        seen: dict[str, int] = {}  # points per key so far (a missing step becomes the point's index)
        fractional: dict[str, int] = {}
        untimed: dict[str, int] = {}
        null_values: dict[str, int] = {}
        columns = ("run_id", "attribute_path", "attribute_type", "step", "timestamp", "float_value")
        for path in source.parts:
            for rows in _read_part(path, ("float_series",), outcomes, columns):
                for key, steps, stamps, values, nulls in _series_slices(rows, source.start_time or 0):
                    if nulls:
                        null_values[key] = null_values.get(key, 0) + nulls
                    if not len(values):
                        continue
                    missing = np.isnan(steps)
                    if missing.any():
                        steps[missing] = seen.get(key, 0) + np.flatnonzero(missing)
                    floors = np.floor(steps)
                    if (off := int((floors != steps).sum())) > 0:
                        fractional[key] = fractional.get(key, 0) + off
                    if (late := int(stamps[1].sum())) > 0:
                        untimed[key] = untimed.get(key, 0) + late
                    seen[key] = seen.get(key, 0) + len(values)
                    batch = buffers.get(key)
                    if batch is None:
                        system = key in source.system_keys or key.startswith(SYSTEM_PREFIXES)
                        batch = buffers[key] = MetricBatch(key, [], [], [], system=system)
                    batch.steps.extend(floors.astype(np.int64).tolist())
                    batch.timestamps.extend(stamps[0].tolist())
                    batch.values.extend(values.tolist())
                    while len(batch) >= BATCH_POINTS:
                        head = MetricBatch(
                            key,
                            batch.steps[:BATCH_POINTS],
                            batch.timestamps[:BATCH_POINTS],
                            batch.values[:BATCH_POINTS],
                            batch.system,
                        )
                        del batch.steps[:BATCH_POINTS], batch.timestamps[:BATCH_POINTS]
                        del batch.values[:BATCH_POINTS]
                        yield head
        yield from (batch for batch in buffers.values() if len(batch))
        where = f"run {run.key}/metric"
        for key, count in fractional.items():
            outcomes.append(
                Outcome(
                    OutcomeKind.TRUNCATED,
                    f"{where} {key}",
                    f"{count} fractional steps rounded down to integers",
                )
            )
        for key, count in untimed.items():
            outcomes.append(
                Outcome(
                    OutcomeKind.TRUNCATED,
                    f"{where} {key}",
                    f"{count} points without a timestamp got the run start",
                )
            )
        for key, count in null_values.items():
            outcomes.append(
                Outcome(OutcomeKind.UNREADABLE, f"{where} {key}", f"{count} points without a value")
            )
        self._report(outcomes)

    def artifacts(self, run: Run) -> Iterator[Artifact]:
        source = self._source(run)
        outcomes: list[Outcome] = []
        series: dict[str, str] = {}
        columns = ("run_id", "attribute_path", "attribute_type", "step", "file_value")
        for part in source.parts:
            for rows in _read_part(part, FILE_TYPES + TEXT_SERIES_TYPES, outcomes, columns):
                keys, kinds, steps, files = (
                    rows.get("attribute_path"),
                    rows.get("attribute_type"),
                    rows.get("step"),
                    rows.get("file_value"),
                )
                for i in range(rows.length):
                    if kinds[i] in TEXT_SERIES_TYPES:
                        series.setdefault(keys[i], kinds[i])
                        continue
                    stored = (files[i] or {}).get("path")
                    if not stored:
                        outcomes.append(
                            Outcome(
                                OutcomeKind.UNREADABLE,
                                f"run {run.key}/file {keys[i]}",
                                "row has no file path",
                            )
                        )
                        continue
                    yield from self._file_artifacts(run, keys[i], kinds[i], steps[i], stored, outcomes)
        for key, kind in series.items():
            name = "series.jsonl" if kind == "string_series" else "histograms.jsonl"
            yield Artifact(path=f"{key}/{name}", open=_SeriesFile(source.parts, key, kind).open)
        self._report(outcomes)

    def _file_artifacts(
        self, run: Run, key: str, kind: str, step: float | None, stored: str, outcomes: list[Outcome]
    ) -> Iterator[Artifact]:
        # the exporter stores paths relative to the project's files directory; early versions to `files/`
        location = self.files_dir / safe_path_part(run.experiment_key) / stored
        if not location.exists() and (self.files_dir / stored).exists():
            location = self.files_dir / stored
        relative = Path(stored)
        if relative.is_absolute() or ".." in relative.parts:
            outcomes.append(
                Outcome(OutcomeKind.UNREADABLE, f"run {run.key}/file {key}", f"unsafe path {stored!r}")
            )
            return
        if not location.exists():
            outcomes.append(
                Outcome(
                    OutcomeKind.UNREADABLE,
                    f"run {run.key}/file {key}",
                    f"{location} is missing from the export",
                )
            )
            return
        if kind == "file_series":
            step_name = "none" if step is None else (str(int(step)) if step == int(step) else str(step))
            base = f"{key}/step_{step_name}/"
        elif location.is_dir() or kind in ("file_set", "artifact"):
            base = f"{key}/"
        else:  # a single file: the attribute path, with the stored file's extension when it has none
            suffix = "".join(location.suffixes) if not Path(key).suffix else ""
            yield _local_artifact(key + suffix, location)
            return
        if location.is_dir():
            for file in sorted(p for p in location.rglob("*") if p.is_file()):
                yield _local_artifact(base + file.relative_to(location).as_posix(), file)
        else:
            yield _local_artifact(base + location.name, location)

    def registered_models(self) -> Iterator[RegisteredModel]:
        return iter(())  # model registry exports (`export-models`) are not part of run exports

    def logged_models(self, experiment: Experiment) -> Iterator[LoggedModel]:
        return iter(())

    def outcomes(self) -> list[Outcome]:
        with self._lock:
            return list(self._outcomes)

    def close(self) -> None:
        pass


class _ReadBack(NeptuneExportReader):
    """The writer's own output, for verification: it says it has no model registry rather than an empty one
    (the engine then does not expect the source's registered models there; `write_registered_model` reports
    them as unsupported)."""

    def registered_models(self) -> Iterator[RegisteredModel]:
        raise NotImplementedError("Neptune run exports have no model registry")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _local_artifact(path: str, location: Path) -> Artifact:
    return Artifact(
        path=path,
        open=lambda: cast(BinaryIO, location.open("rb")),
        size=location.stat().st_size,
        sha256=_sha256(location),
    )


@dataclass(slots=True)
class _SeriesFile:
    """A string or histogram series as JSON lines (step, timestamp in ms, value), rendered when opened."""

    parts: list[Path]
    key: str
    kind: str

    def open(self) -> BinaryIO:
        import io

        lines: list[str] = []
        for part in self.parts:
            for rows in _read_part(part, (self.kind,), []):
                keys, steps, stamps = rows.get("attribute_path"), rows.get("step"), rows.get("timestamp")
                values = rows.get("string_value" if self.kind == "string_series" else "histogram_value")
                for i in range(rows.length):
                    if keys[i] == self.key:
                        step = steps[i]
                        record = {
                            "step": None if step is None else (int(step) if step == int(step) else step),
                            "timestamp": stamps[i],
                            "value": values[i],
                        }
                        lines.append(json.dumps(record, sort_keys=True) + "\n")
        return io.BytesIO("".join(lines).encode("utf-8"))


# --- writer ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _RunState:
    """What the writer knows of one destination run (loaded from its files on first use)."""

    project_id: str
    run_id: str
    directory: Path
    next_journal: int = 0
    params: set[str] = field(default_factory=set)
    tags: dict[str, str] = field(default_factory=dict)  # key/value tags written so far
    plain_tags: set[str] = field(default_factory=set)  # Neptune tags (sys/tags)
    system_keys: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)  # float_series points per key
    files: dict[str, int] = field(default_factory=dict)  # artifact path -> size
    complete: bool = False
    source_state: str | None = None


def _decimal_steps(steps: list[int], keys: list[str]) -> pa.Array:
    try:
        return pa.array(steps, pa.int64()).cast(pa.decimal128(25, 6)).cast(pa.decimal128(18, 6))
    except pa.ArrowInvalid:
        bad = sorted({key for key, step in zip(keys, steps, strict=True) if abs(step) >= 10**12})
        raise ValueError(
            f"metric(s) {', '.join(bad)}: steps of 10^12 or more do not fit the decimal(18,6) step column"
        ) from None


def _row_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _atomic_parquet(table: pa.Table, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    pq.write_table(table, tmp, compression="snappy")
    os.replace(tmp, target)


class NeptuneExportWriter(WithoutModelRegistry):
    """Writes runs into the neptune-exporter layout at PATH (`data/` and `files/`), idempotently."""

    no_registry_reason = "Neptune run exports have no model registry"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        fresh = not self.path.exists() or not any(self.path.iterdir())
        self.data_dir, self.files_dir = (
            (self.path / "data", self.path / "files") if fresh else export_dirs(self.path)
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._states: dict[str, _RunState] = {}

    # experiments and runs

    def ensure_experiment(self, experiment: Experiment) -> str:
        (self.data_dir / safe_path_part(experiment.name)).mkdir(parents=True, exist_ok=True)
        return experiment.name

    def migrated_runs(self, experiment_key: str) -> dict[str, DestinationRun]:
        project_dir = self.data_dir / safe_path_part(experiment_key)
        found: dict[str, DestinationRun] = {}
        if not project_dir.is_dir():
            return found
        for files in _run_files(project_dir).values():
            state = self._state_from_files(experiment_key, files)
            source = state.tags.get(SOURCE_TAG) if state else None
            if state is None or source is None:
                continue
            with self._lock:
                self._states.setdefault(state.run_id, state)
            found[source] = DestinationRun(state.run_id, source, state.complete, state.source_state)
        return found

    def create_run(self, experiment_key: str, run: Run, source: str) -> str:
        run_id = "FERRY-" + hashlib.blake2b(source.encode("utf-8"), digest_size=6).hexdigest()
        state = self._state(experiment_key, run_id)
        rows = [
            self._value(state, "sys/name", "string", run.name or run.key),
            self._value(state, "sys/state", "string", "Active"),
            self._value(state, TAG_NAMESPACE + SOURCE_TAG, "string", source),
        ]
        if run.start_time is not None:
            rows.append(self._value(state, "sys/creation_time", "datetime", run.start_time))
        if run.user:
            rows.append(self._value(state, "sys/owner", "string", run.user))
        self._journal(state, rows)
        state.tags[SOURCE_TAG] = source
        return run_id

    def set_parent(self, run_key: str, parent_key: str) -> None:
        state = self._known(run_key)
        self._journal(state, [self._value(state, "sys/forking/parent", "string", parent_key)])

    def write_params(self, run_key: str, params: dict[str, str]) -> list[Outcome]:
        state = self._known(run_key)
        fresh = {key: value for key, value in params.items() if key not in state.params}
        if fresh:
            self._journal(state, [self._value(state, key, "string", value) for key, value in fresh.items()])
            state.params.update(fresh)
        return []

    def write_tags(self, run_key: str, tags: dict[str, str], notes: str | None = None) -> list[Outcome]:
        state = self._known(run_key)
        rows = []
        plain = state.plain_tags | {key for key, value in tags.items() if value == ""}
        if plain != state.plain_tags:
            rows.append(self._value(state, "sys/tags", "string_set", sorted(plain)))
        for key, value in tags.items():
            if value != "" and state.tags.get(key) != value:
                rows.append(self._value(state, TAG_NAMESPACE + key, "string", value))
        if notes is not None:
            rows.append(self._value(state, "sys/description", "string", notes))
        if rows:
            self._journal(state, rows)
            state.plain_tags = plain
            state.tags.update({key: value for key, value in tags.items() if value != ""})
        return []

    # metrics

    def high_water_marks(self, run_key: str) -> dict[str, int]:
        return dict(self._known(run_key).counts)

    def write_metrics(self, run_key: str, batches: list[MetricBatch]) -> None:
        state = self._known(run_key)
        columns: dict[str, list[Any]] = {
            name: [] for name in ("attribute_path", "step", "timestamp", "float_value")
        }
        system = set(state.system_keys)
        for batch in batches:
            if batch.system:
                system.add(batch.key)
            columns["attribute_path"].extend([batch.key] * len(batch))
            columns["step"].extend(batch.steps)
            columns["timestamp"].extend(batch.timestamps)
            columns["float_value"].extend(batch.values)
        count = len(columns["float_value"])
        if not count and system == state.system_keys:
            return
        table = pa.table(
            {
                "project_id": pa.array([state.project_id] * count, pa.string()),
                "run_id": pa.array([state.run_id] * count, pa.string()),
                "attribute_path": pa.array(columns["attribute_path"], pa.string()),
                "attribute_type": pa.array(["float_series"] * count, pa.string()),
                "step": _decimal_steps(columns["step"], columns["attribute_path"]),
                "timestamp": pa.array(columns["timestamp"], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
                **{
                    name: pa.nulls(count, SCHEMA.field(name).type)
                    for name in SCHEMA.names[6:]
                    if name != "float_value"
                },
                "float_value": pa.array(columns["float_value"], pa.float64()),
            }
        ).select(SCHEMA.names)
        if system != state.system_keys:
            table = pa.concat_tables(
                [
                    table,
                    _row_table([self._value(state, SYSTEM_METRICS_ATTRIBUTE, "string_set", sorted(system))]),
                ]
            )
        self._journal_table(state, table)
        state.system_keys = system
        for batch in batches:
            state.counts[batch.key] = state.counts.get(batch.key, 0) + len(batch)

    # artifacts

    def stored_artifacts(self, run_key: str) -> dict[str, int]:
        return dict(self._known(run_key).files)

    def write_artifact(self, run_key: str, artifact: Artifact) -> Outcome | None:
        state = self._known(run_key)
        relative = Path(artifact.path)
        if relative.is_absolute() or ".." in relative.parts or not artifact.path:
            return Outcome(OutcomeKind.UNSUPPORTED, f"run {run_key}/artifact {artifact.path}", "unsafe path")
        stored = Path(safe_path_part(state.run_id)) / relative  # relative to the project's files directory
        target = self.files_dir / safe_path_part(state.project_id) / stored
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".ferryman-tmp")
        digest = hashlib.sha256()
        size = 0
        with artifact.open() as source, tmp.open("wb") as sink:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
                sink.write(chunk)
        if artifact.sha256 is not None and digest.hexdigest() != artifact.sha256:
            tmp.unlink()
            return Outcome(
                OutcomeKind.UNREADABLE,
                f"run {run_key}/artifact {artifact.path}",
                f"source bytes have sha256 {digest.hexdigest()}, the source records {artifact.sha256}",
            )
        os.replace(tmp, target)
        if artifact.path not in state.files:
            self._journal(
                state,
                [
                    {
                        **self._value(state, artifact.path, "file", None),
                        "file_value": {"path": stored.as_posix()},
                    }
                ],
            )
        state.files[artifact.path] = size
        return None

    # completion

    def finish_run(self, run_key: str, run: Run) -> None:
        state = self._known(run_key)
        state_text = source_state(run)
        rows = [
            self._value(
                state, "sys/state", "string", "Active" if run.status is RunStatus.RUNNING else "Inactive"
            ),
            self._value(state, "sys/failed", "bool", run.status in (RunStatus.FAILED, RunStatus.KILLED)),
            self._value(state, TAG_NAMESPACE + COMPLETE_TAG, "string", "true"),
            self._value(state, SOURCE_STATE_ATTRIBUTE, "string", state_text),
            self._value(state, STATUS_ATTRIBUTE, "string", run.status.value),
        ]
        if run.end_time is not None:
            rows.append(self._value(state, "sys/ping_time", "datetime", run.end_time))
        self._journal(state, rows)
        self._compact(state)
        state.complete, state.source_state = True, state_text
        state.tags[COMPLETE_TAG] = "true"

    def _compact(self, state: _RunState) -> None:
        """Journals → `_part_<n>` files (rolling at ~50 MB), renamed into place with part_0 last."""
        files = _run_files(state.directory).get(safe_path_part(state.run_id), _RunFiles(state.run_id))
        sources = files.parts + files.journals
        stem = state.directory / safe_path_part(state.run_id)
        written: list[Path] = []
        writer: pq.ParquetWriter | None = None
        for source in sources:
            for batch in pq.ParquetFile(source).iter_batches(batch_size=65_536):
                if writer is None or written[-1].stat().st_size > TARGET_PART_BYTES:
                    if writer is not None:
                        writer.close()
                    written.append(Path(f"{stem}_part_{len(written)}.parquet.tmp"))
                    writer = pq.ParquetWriter(written[-1], SCHEMA, compression="snappy")
                writer.write_table(pa.Table.from_batches([batch]).cast(SCHEMA))
        if writer is not None:
            writer.close()
        for path in files.parts:
            if path.with_name(path.name + ".tmp") not in written:
                path.unlink()  # an older, longer compaction: its extra parts would duplicate rows
        for tmp in reversed(written):
            os.replace(tmp, tmp.with_suffix(""))
        for journal in files.journals:
            journal.unlink()

    def reader(self) -> TrackerReader:
        return _ReadBack(self.path)

    def close(self) -> None:
        pass

    # internals

    def _value(self, state: _RunState, path: str, kind: str, value: Any) -> dict[str, Any]:
        column = {
            "string": "string_value",
            "bool": "bool_value",
            "datetime": "datetime_value",
            "string_set": "string_set_value",
            "file": None,
        }[kind]
        row: dict[str, Any] = {
            "project_id": state.project_id,
            "run_id": state.run_id,
            "attribute_path": path,
            "attribute_type": kind,
        }
        if column:
            row[column] = value
        return row

    def _journal(self, state: _RunState, rows: list[dict[str, Any]]) -> None:
        self._journal_table(state, _row_table(rows))

    def _journal_table(self, state: _RunState, table: pa.Table) -> None:
        name = f"{safe_path_part(state.run_id)}.journal-{state.next_journal:06d}.parquet"
        _atomic_parquet(table, state.directory / name)
        state.next_journal += 1
        state.complete = False

    def _state(self, project_id: str, run_id: str) -> _RunState:
        with self._lock:
            if run_id in self._states:
                return self._states[run_id]
        directory = self.data_dir / safe_path_part(project_id)
        directory.mkdir(parents=True, exist_ok=True)
        files = _run_files(directory).get(safe_path_part(run_id))
        state = (self._state_from_files(project_id, files) if files else None) or _RunState(
            project_id, run_id, directory
        )
        with self._lock:
            return self._states.setdefault(run_id, state)

    def _known(self, run_key: str) -> _RunState:
        with self._lock:
            state = self._states.get(run_key)
        if state is None:
            raise KeyError(
                f"Neptune export {self.path}: run {run_key!r} was not created or found by this writer"
            )
        return state

    def _state_from_files(self, project_id: str, files: _RunFiles) -> _RunState | None:
        """Rebuild a run's state from its parts and journals, tidying up an interrupted compaction."""
        directory = (files.parts + files.journals)[0].parent
        has_part_0 = any(p.name.endswith("_part_0.parquet") for p in files.parts)
        if files.journals and has_part_0:  # compaction finished, journals not yet removed
            for journal in files.journals:
                journal.unlink()
            files.journals = []
        elif files.journals and files.parts:  # compaction interrupted before part_0: redo it from journals
            for part in files.parts:
                part.unlink()
            files.parts = []
        for stale in directory.glob(f"{files.stem}_part_*.parquet.tmp"):
            stale.unlink()
        state: _RunState | None = None
        outcomes: list[Outcome] = []
        for path in files.parts + files.journals:
            for rows in _read_part(path, None, outcomes):
                ids, keys, kinds = rows.get("run_id"), rows.get("attribute_path"), rows.get("attribute_type")
                strings, sets = rows.get("string_value"), rows.get("string_set_value")
                files_column = rows.get("file_value")
                for i in range(rows.length):
                    if state is None:
                        state = _RunState(project_id, ids[i], directory)
                    key, kind = keys[i], kinds[i]
                    if kind == "float_series":
                        state.counts[key] = state.counts.get(key, 0) + 1
                    elif kind == "file":
                        stored = (files_column[i] or {}).get("path") or ""
                        location = self.files_dir / safe_path_part(project_id) / stored
                        state.files[key] = location.stat().st_size if location.is_file() else 0
                    elif key.startswith(TAG_NAMESPACE):
                        state.tags[key[len(TAG_NAMESPACE) :]] = strings[i]
                    elif key == "sys/tags":
                        state.plain_tags = set(sets[i] or [])
                    elif key == SYSTEM_METRICS_ATTRIBUTE:
                        state.system_keys = set(sets[i] or [])
                    elif key == SOURCE_STATE_ATTRIBUTE:
                        state.source_state = strings[i]
                    elif not key.startswith(("sys/", "ferryman/")):
                        state.params.add(key)
        if state is None:
            return None
        if files.journals:
            state.next_journal = int(_JOURNAL_RE.match(files.journals[-1].name)["n"]) + 1  # type: ignore[index]
        state.complete = has_part_0 and not files.journals and state.tags.get(COMPLETE_TAG) == "true"
        return state
