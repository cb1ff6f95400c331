"""The neptune-exporter layout shared by the reader and the writer: the parquet schema, attribute types and
names, path-safe ids, and reading parts and journals with a schema check."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ferryman.trackers.model import Outcome, OutcomeKind
from ferryman.trackers.registry import Endpoint

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
JOURNAL_RE = re.compile(r"^(?P<run>.+)\.journal-(?P<n>\d+)\.parquet$")


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

def export_path(endpoint: Endpoint) -> Path:
    """The export directory a `neptune-export:PATH` URI names."""
    if not endpoint.location:
        raise NeptuneExportError(
            f"{endpoint.uri!r}: give the export directory, e.g. neptune-export:./exports"
        )
    return Path(endpoint.location).expanduser()


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


def read_part(
    path: Path, types: tuple[str, ...] | None, outcomes: list[Outcome], columns: tuple[str, ...] | None = None
) -> Iterator[_Rows]:
    """Rows of one part, filtered by attribute type. A corrupt file, a missing required column or a column of
    the wrong type is reported (naming the file and column); unusable value columns read as null."""
    try:
        part = pq.ParquetFile(path)
        schema = part.schema_arrow
    except (OSError, pa.ArrowException, UnicodeDecodeError) as error:  # the last: a damaged column name
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
            batch.validate(full=True)  # damaged strings (invalid UTF-8) fail here, not when a value is read
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
    except (OSError, pa.ArrowException, UnicodeDecodeError) as error:
        outcomes.append(Outcome(OutcomeKind.UNREADABLE, f"file {path}", f"corrupt parquet data: {error}"))


def series_slices(
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


def parameter_text(kind: str, row: dict[str, Any]) -> str | None:
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
class RunFiles:
    stem: str  # path-safe run id
    parts: list[Path] = field(default_factory=list)  # by part number
    journals: list[Path] = field(default_factory=list)  # by sequence number (writer only)


def run_files(project_dir: Path) -> dict[str, RunFiles]:
    """Parts and journals of every run in a project directory, each in number order."""
    numbered: dict[str, list[tuple[bool, int, Path]]] = {}
    for path in project_dir.iterdir():
        part = _PART_RE.match(path.name)
        match = part or JOURNAL_RE.match(path.name)
        if match is not None and path.is_file():
            numbered.setdefault(match["run"], []).append((part is None, int(match["n"]), path))
    found: dict[str, RunFiles] = {}
    for stem, files in sorted(numbered.items()):
        entry = found[stem] = RunFiles(stem)
        for is_journal, _, path in sorted(files):
            (entry.journals if is_journal else entry.parts).append(path)
    return found
