"""Reading a neptune-exporter export (`neptune-export:PATH` as a source)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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
from ferryman.trackers.neptune.export import (
    BATCH_POINTS,
    FILE_TYPES,
    PARAMETER_TYPES,
    SCHEMA,
    SOURCE_STATE_ATTRIBUTE,
    STATUS_ATTRIBUTE,
    SYSTEM_METRICS_ATTRIBUTE,
    SYSTEM_PREFIXES,
    TAG_NAMESPACE,
    TEXT_SERIES_TYPES,
    NeptuneExportError,
    RunFiles,
    export_dirs,
    export_path,
    parameter_text,
    read_part,
    run_files,
    safe_path_part,
    series_slices,
)
from ferryman.trackers.registry import Endpoint


@dataclass(slots=True)
class _SourceRun:
    """What the reader keeps about a run between `runs` and `metrics`/`artifacts`."""

    parts: list[Path]
    run_id: str
    system_keys: set[str]
    start_time: int | None


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

    def _project_id(self, project_dir: Path, files: dict[str, RunFiles]) -> str | None:
        for run in files.values():
            for path in run.parts + run.journals:
                try:
                    table = pq.read_table(path, columns=["project_id"]).slice(0, 1)
                    table.validate(full=True)  # damaged strings (invalid UTF-8)
                except (OSError, pa.ArrowException, KeyError, UnicodeDecodeError):
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
            files = run_files(project_dir)
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
        for stem, files in run_files(self._project_dir(experiment)).items():
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
            for rows in read_part(part, PARAMETER_TYPES, outcomes):
                paths, kinds, ids = rows.get("attribute_path"), rows.get("attribute_type"), rows.get("run_id")
                value_columns = {name: rows.get(name) for name in SCHEMA.names[6:12]}
                for i in range(rows.length):
                    run_id = run_id or ids[i]
                    values[paths[i]] = (kinds[i], {name: column[i] for name, column in value_columns.items()})
            if run_id is None:  # a run with series only: take the id from any row
                for rows in read_part(
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
            text = parameter_text(kind, row)
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
            for rows in read_part(path, ("float_series",), outcomes, columns):
                for key, steps, stamps, values, nulls in series_slices(rows, source.start_time or 0):
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
            for rows in read_part(part, FILE_TYPES + TEXT_SERIES_TYPES, outcomes, columns):
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
        try:
            paths.safe_relative(stored)
        except paths.UnsafePath as error:
            outcomes.append(Outcome(OutcomeKind.UNREADABLE, f"run {run.key}/file {key}", str(error)))
            return

        def escaped(path: Path) -> None:
            outcomes.append(Outcome(OutcomeKind.UNREADABLE, f"run {run.key}/file {key}",
                                    paths.escape_reason(path)))

        if paths.leaves(self.path, location):
            escaped(location)
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
            for file in (p for p in paths.files(location, escaped, self.path) if p.is_file()):
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


class ReadBack(NeptuneExportReader):
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
            for rows in read_part(part, (self.kind,), []):
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


def open_reader(endpoint: Endpoint, credentials: object = None) -> NeptuneExportReader:
    """The `neptune-export:PATH` source of the URI registry."""
    return NeptuneExportReader(export_path(endpoint))
