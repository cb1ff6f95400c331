"""Writing a neptune-exporter export (`neptune-export:PATH` as a destination), through journals compacted into
parts when a run finishes."""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ferryman.trackers import paths
from ferryman.trackers.model import (
    COMPLETE_TAG,
    SOURCE_TAG,
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
from ferryman.trackers.neptune.export import (
    JOURNAL_RE,
    SCHEMA,
    SOURCE_STATE_ATTRIBUTE,
    STATUS_ATTRIBUTE,
    SYSTEM_METRICS_ATTRIBUTE,
    TAG_NAMESPACE,
    TARGET_PART_BYTES,
    RunFiles,
    export_dirs,
    export_path,
    read_part,
    run_files,
    safe_path_part,
)
from ferryman.trackers.neptune.reader import ReadBack
from ferryman.trackers.registry import Endpoint


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
    max_step = 10**12 - 1  # the step column is decimal(18,6): the engine leaves out points beyond it

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
        for files in run_files(project_dir).values():
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
        try:
            relative = Path(paths.safe_relative(artifact.path))
        except paths.UnsafePath as error:
            return paths.unsafe_outcome(f"run {run_key}/artifact {artifact.path}", error)
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
        files = run_files(state.directory).get(safe_path_part(state.run_id), RunFiles(state.run_id))
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
        return ReadBack(self.path)

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
        files = run_files(directory).get(safe_path_part(run_id))
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

    def _state_from_files(self, project_id: str, files: RunFiles) -> _RunState | None:
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
            for rows in read_part(path, None, outcomes):
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
            state.next_journal = int(JOURNAL_RE.match(files.journals[-1].name)["n"]) + 1  # type: ignore[index]
        state.complete = has_part_0 and not files.journals and state.tags.get(COMPLETE_TAG) == "true"
        return state


def open_writer(endpoint: Endpoint, credentials: object = None) -> NeptuneExportWriter:
    """The `neptune-export:PATH` destination of the URI registry."""
    return NeptuneExportWriter(export_path(endpoint))
