"""The bulk path into MLflow's own database (SQLite, PostgreSQL, MySQL/MariaDB destinations).

Experiments with tags or a description, inputs, deletions and logged models go through MLflow's
`SqlAlchemyStore` (the `MlflowWriter` this extends), which is opened, and MLflow imported, only when there is
such a thing to write. Everything else is written and read with SQL on the database's own engine: a bare
experiment as the row `create_experiment` leaves (and MLflow's default experiment 0 in a new database, as
MLflow adds it when it opens one), runs, their params and tags as the rows MLflow's `create_run`,
`update_run_info` and `log_batch` leave (a run row RUNNING with MLflow's defaults, its artifact location below
the experiment's, a random MLflow name when it has none; tags replaced, `mlflow.runName` also naming the
run), and the listing of experiments, runs (params, tags, dataset inputs) and migrated runs. Metric points,
the bulk of the data, go straight into the `metrics` table in one transaction per write (PostgreSQL `COPY`,
`executemany` elsewhere) together with the `latest_metrics` rows MLflow would have left: per key the point
with the greatest (step, timestamp, value), the first one logged among equals, NaN stored as 0 with `is_nan`
set and infinities as the largest finite doubles. Exact repeats of a stored point are dropped, as MLflow's
primary key does.

An SQLite destination has one writer at a time: this process's threads take turns on a lock instead of
SQLite's sleeping busy handler. A new SQLite file (made by this writer) is written without a sync per
commit (`PRAGMA synchronous = OFF`: a killed process loses nothing committed, only a power loss could hurt
the half-made file) and synced once when the writer closes; an existing store keeps SQLite's full sync.
Database sources, and the verification read-back, read every point of a run in one streamed query.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import posixpath
import sqlite3
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import chain, groupby, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

from ferryman.migrate.validate import (
    HASH_FACTOR,
    HASH_MODULUS,
    HASH_OFFSET,
    NAN_BITS,
    SeriesDigest,
    points_hash,
)
from ferryman.trackers.mlflow.backend import Backend
from ferryman.trackers.mlflow.fields import MAX_TAG_LENGTH, NOTE_TAG, RUN_NAME_TAG, USER_TAG, run_from_fields
from ferryman.trackers.mlflow.reader import MlflowReader
from ferryman.trackers.mlflow.schema import prepare_sqlite
from ferryman.trackers.mlflow.server_schema import prepare_server
from ferryman.trackers.mlflow.writer import MlflowWriter
from ferryman.trackers.model import (
    COMPLETE_TAG,
    SOURCE_TAG,
    DatasetInput,
    DestinationRun,
    Experiment,
    LoggedModel,
    MetricBatch,
    RegisteredModel,
    Run,
    source_state,
)
from ferryman.trackers.registry import Credentials, Endpoint, Store

_MAX_DOUBLE = 1.7976931348623157e308
_READ_BATCH = 50_000
_COLUMNS = ("{key}", "value", "timestamp", "step", "is_nan", "run_uuid")
# A row as stored: (key, value, timestamp, step, is_nan, run_uuid).
Row = tuple[str, float, int, int, bool, str]
_RANK = itemgetter(3, 2, 1)  # (step, timestamp, value): what makes a point MLflow's latest
_WORKSPACE = "default"  # MLflow's single-tenant workspace, on every experiment row
# Points an SQLite statement inserts: 6 variables each, within SQLite's limit (32,766 since 3.32, 999 before)
_SQLITE_ROWS_PER_STATEMENT = 1000 if sqlite3.sqlite_version_info >= (3, 32) else 166
_MAX_EXPERIMENT_NAME = 256  # the experiments.name column; a longer (or empty) name is MLflow's to refuse


def append_to_location(location: str, *parts: str) -> str:
    """MLflow's `append_to_uri_path`: a plain path is joined here, a URI (`s3://…`) by MLflow itself."""
    if not urllib.parse.urlsplit(location).scheme:
        return posixpath.join(location, *parts)
    from mlflow.utils.uri import append_to_uri_path

    return str(append_to_uri_path(location, *parts))


def stored_value(value: float) -> tuple[float, bool]:
    """(value, is_nan) as MLflow's SQL store keeps a metric value."""
    if math.isnan(value):
        return 0.0, True
    if math.isinf(value):
        return (_MAX_DOUBLE if value > 0 else -_MAX_DOUBLE), False
    return value, False


class _Sql:
    """The statements of one SQL dialect."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.mark = "?" if dialect == "sqlite" else "%s"
        key = "`key`" if dialect == "mysql" else '"key"'
        columns = ", ".join(c.format(key=key) for c in _COLUMNS)
        marks = ", ".join([self.mark] * len(_COLUMNS))
        ignore = {"sqlite": "INSERT OR IGNORE", "mysql": "INSERT IGNORE"}.get(dialect, "INSERT")
        conflict = " ON CONFLICT DO NOTHING" if dialect == "postgresql" else ""
        self.insert_points = f"{ignore} INTO metrics ({columns}) VALUES ({marks}){conflict}"
        self._point_rows = f"{ignore} INTO metrics ({columns}) VALUES {{rows}}{conflict}"
        self._marks = f"({marks})"
        self.copy_points = f"COPY metrics ({columns}) FROM STDIN"
        self.insert_latest = f"INSERT INTO latest_metrics ({columns}) VALUES ({marks})"
        self.update_latest = (
            f"UPDATE latest_metrics SET value = {self.mark}, timestamp = {self.mark}, step = {self.mark}, "
            f"is_nan = {self.mark} WHERE run_uuid = {self.mark} AND {key} = {self.mark}"
        )
        self.latest = (
            f"SELECT {key}, value, timestamp, step, is_nan FROM latest_metrics WHERE run_uuid = {self.mark}"
        )
        self.counts = f"SELECT {key}, COUNT(*) FROM metrics WHERE run_uuid = {self.mark} GROUP BY {key}"
        self.points = (
            f"SELECT {key}, step, timestamp, value, is_nan FROM metrics WHERE run_uuid = {self.mark} "
            f"ORDER BY {key}, step, timestamp, value, is_nan"
        )
        self.points_by_key = (
            f"SELECT {key}, step, timestamp, value, is_nan FROM metrics WHERE run_uuid = {self.mark} "
            f"ORDER BY {key}"
        )
        self.digests = _digests_statement(dialect, key, self.mark)
        m = self.mark
        self.experiment_location = f"SELECT artifact_location FROM experiments WHERE experiment_id = {m}"
        self.experiment_by_name = f"SELECT experiment_id, lifecycle_stage FROM experiments WHERE name = {m}"
        returning = " RETURNING experiment_id" if dialect == "postgresql" else ""
        self.insert_experiment = (
            "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, "
            f"last_update_time, workspace) VALUES ({m}, NULL, 'active', {m}, {m}, '{_WORKSPACE}'){returning}"
        )
        self.insert_default_experiment = (
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, "
            f"creation_time, last_update_time, workspace) "
            f"VALUES (0, 'Default', {m}, 'active', {m}, {m}, '{_WORKSPACE}')"
        )
        self.set_experiment_location = (
            f"UPDATE experiments SET artifact_location = {m} WHERE experiment_id = {m}"
        )
        self.active_experiments = (
            "SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active' "
            "ORDER BY experiment_id"
        )
        self.experiment_tags = f"SELECT experiment_id, {key}, value FROM experiment_tags"
        in_experiment = f"IN (SELECT run_uuid FROM runs WHERE experiment_id = {m})"
        self.runs = (
            "SELECT run_uuid, name, status, start_time, end_time, user_id, lifecycle_stage, artifact_uri "
            f"FROM runs WHERE experiment_id = {m} ORDER BY start_time, run_uuid"
        )
        self.runs_since = self.runs.replace(" ORDER BY", f" AND start_time >= {m} ORDER BY")
        self.run_tags = f"SELECT run_uuid, {key}, value FROM tags WHERE run_uuid {in_experiment}"
        self.run_params = f"SELECT run_uuid, {key}, value FROM params WHERE run_uuid {in_experiment}"
        self.run_metric_keys = f"SELECT run_uuid, {key} FROM latest_metrics WHERE run_uuid {in_experiment}"
        self.run_inputs = (
            "SELECT i.destination_id, i.input_uuid, d.name, d.digest, d.dataset_source_type, "
            "d.dataset_source, d.dataset_schema, d.dataset_profile "
            "FROM inputs i JOIN datasets d ON d.dataset_uuid = i.source_id "
            "WHERE i.source_type = 'DATASET' AND i.destination_type = 'RUN' "
            f"AND i.destination_id {in_experiment}"
        )
        self.input_tags = (
            "SELECT t.input_uuid, t.name, t.value FROM input_tags t "
            "JOIN inputs i ON i.input_uuid = t.input_uuid "
            f"WHERE i.destination_type = 'RUN' AND i.destination_id {in_experiment}"
        )
        self.run_details = (
            f"SELECT r.artifact_uri, l.{key} FROM runs r "
            "LEFT JOIN latest_metrics l ON l.run_uuid = r.run_uuid "
            f"WHERE r.run_uuid = {m}"
        )
        self.migrated = (
            "SELECT r.run_uuid, r.artifact_uri, r.lifecycle_stage, s.value, c.value FROM runs r "
            f"JOIN tags s ON s.run_uuid = r.run_uuid AND s.{key} = '{SOURCE_TAG}' "
            f"LEFT JOIN tags c ON c.run_uuid = r.run_uuid AND c.{key} = '{COMPLETE_TAG}' "
            f"WHERE r.experiment_id = {m}"
        )
        self.params_of_run = f"SELECT {key}, value FROM params WHERE run_uuid = {m}"
        self.any_registered_model = "SELECT name FROM registered_models LIMIT 1"
        self.any_logged_model = f"SELECT model_id FROM logged_models WHERE experiment_id = {m} LIMIT 1"
        self.insert_run = (
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
            "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id, "
            "deleted_time) "
            f"VALUES ({m}, {m}, 'UNKNOWN', '', '', {m}, 'RUNNING', {m}, NULL, '', 'active', {m}, {m}, NULL)"
        )
        self.end_run = (
            f"UPDATE runs SET status = {m}, end_time = COALESCE({m}, end_time) WHERE run_uuid = {m}"
        )
        self.rename_run = f"UPDATE runs SET name = {m} WHERE run_uuid = {m}"
        self.insert_param = f"INSERT INTO params ({key}, value, run_uuid) VALUES ({m}, {m}, {m})"
        replace = {
            "mysql": " ON DUPLICATE KEY UPDATE value = VALUES(value)",
        }.get(dialect, f" ON CONFLICT ({key}, run_uuid) DO UPDATE SET value = excluded.value")
        self.set_tag = f"INSERT INTO tags ({key}, value, run_uuid) VALUES ({m}, {m}, {m}){replace}"


    def insert_point_rows(self, count: int) -> str:
        """`insert_points` for `count` rows in one statement."""
        return self._point_rows.format(rows=", ".join([self._marks] * count))


def _digests_statement(dialect: str, key: str, mark: str) -> str | None:
    """Per key of a run: count, step and timestamp ranges and the sum of `validate.point_hash` over its
    points, computed by PostgreSQL (a double's bits through `float8send`). SQLite and MySQL have no way to a
    double's bits: None (SQLite's points are digested as streamed, `_digest_rows`; MySQL's read back)."""
    if dialect != "postgresql":
        return None
    modulus, factor, offset = HASH_MODULUS, HASH_FACTOR, HASH_OFFSET
    bits = (
        f"CASE WHEN is_nan THEN {NAN_BITS} WHEN value = 0 THEN 0 "
        "ELSE ('x' || encode(float8send(value), 'hex'))::bit(64)::bigint END"
    )
    mixed = (
        f"MOD(MOD(MOD(step, {modulus}) + {modulus}, {modulus}) * {factor} "
        f"+ MOD(MOD({bits}, {modulus}) + {modulus}, {modulus}) + {offset}, {modulus})"
    )
    return (
        f"SELECT {key}, COUNT(*), MIN(step), MAX(step), MIN(timestamp), MAX(timestamp), "
        f"SUM(MOD(MOD(h * h, {modulus}) * h, {modulus})) FROM (SELECT {key}, step, timestamp, {mixed} AS h "
        f"FROM metrics WHERE run_uuid = {mark}) AS points GROUP BY {key}"
    )


def _digest_rows(cursor: Any) -> dict[str, SeriesDigest]:
    """Series digests of the (key, step, timestamp, value, is_nan) rows a cursor yields grouped by key, as
    MLflow stores them (NaN as 0 and is_nan), streamed and hashed a column at a time."""
    import numpy as np

    found: dict[str, tuple[int, int, int, int, int, int]] = {}  # count, step and timestamp ranges, hash
    while rows := cursor.fetchmany(_READ_BATCH):
        for key, group in groupby(rows, itemgetter(0)):
            _, steps, timestamps, values, nans = zip(*group, strict=True)
            stored = np.asarray(values, dtype=np.float64)
            bits = stored.view(np.int64).copy()
            bits[stored == 0] = 0
            bits[np.asarray(nans, dtype=bool)] = NAN_BITS
            count, low, high, first, last, total = found.get(key, (0, *steps[:1] * 2, *timestamps[:1] * 2, 0))
            found[key] = (
                count + len(steps), min(low, *steps), max(high, *steps), min(first, *timestamps),
                max(last, *timestamps), total + points_hash(steps, bits),
            )
    return {key: SeriesDigest(*values) for key, values in found.items()}


def _copy_text(rows: list[Row]) -> str:
    """Rows in COPY's text format (keys are MLflow-valid, so they hold no tab, newline or backslash)."""
    return "".join(
        f"{key}\t{value!r}\t{timestamp}\t{step}\t{'t' if nan else 'f'}\t{run}\n"
        for key, value, timestamp, step, nan, run in rows
    )


def copy_rows(cursor: Any, statement: str, rows: list[Row]) -> None:
    """COPY through psycopg 3 (`cursor.copy`, SQLAlchemy's default driver) or psycopg2 (`copy_expert`)."""
    text = _copy_text(rows)
    if hasattr(cursor, "copy_expert"):
        cursor.copy_expert(statement, io.StringIO(text))
    else:
        with cursor.copy(statement) as copy:
            copy.write(text)


def _unique_violation(error: Exception) -> bool:
    return "23505" in (getattr(error, "pgcode", None), getattr(error, "sqlstate", None))


class BulkWriter(MlflowWriter):
    """Writes into an MLflow database: everything through MLflow's store but the metric points."""

    points_per_write = 100_000  # the engine hands over this many points at a time: one transaction each

    def __init__(self, backend: Backend, new_file: Path | None = None) -> None:
        super().__init__(backend)
        self.new_file = new_file  # an SQLite file this writer made: synced once, on close
        self.engine = backend.engine
        self.sql = _Sql(self.engine.dialect.name)
        self._turn: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if self.sql.dialect == "sqlite" else contextlib.nullcontext()
        )
        self._locations: dict[str, str] = {}  # experiment -> its artifact location
        self._add_default_experiment()

    def _add_default_experiment(self) -> None:
        """MLflow's default experiment 0, as MLflow adds it to a database that lacks it when it opens one."""
        with self._connection() as connection:
            cursor = connection.cursor()
            cursor.execute(self.sql.experiment_location, (0,))
            if cursor.fetchone() is not None:
                return
            now = int(time.time() * 1000)
            location = append_to_location(self.backend.artifact_root, "0")
            mode = None
            if self.sql.dialect == "mysql":  # an explicit 0 in an auto-increment column, as MLflow does
                cursor.execute("SELECT @@SESSION.sql_mode")
                (mode,) = cursor.fetchone()
                cursor.execute("SET @@SESSION.sql_mode = 'NO_AUTO_VALUE_ON_ZERO'")
            try:
                cursor.execute(self.sql.insert_default_experiment, (location, now, now))
            finally:
                if mode is not None:
                    cursor.execute("SET @@SESSION.sql_mode = %s", (mode,))

    def _find_experiment(self, name: str) -> tuple[str, str] | None:
        """(id, lifecycle stage) of the experiment of this name."""
        with self._connection() as connection:
            cursor = connection.cursor()
            cursor.execute(self.sql.experiment_by_name, (name,))
            found = cursor.fetchone()
        return None if found is None else (str(found[0]), found[1])

    def ensure_experiment(self, experiment: Experiment) -> str:
        """An active experiment of this name, or a new bare one as the row MLflow's `create_experiment` leaves
        (its artifact location below the store's root); tags, a description, a name MLflow may refuse, a
        deleted experiment of this name and a concurrent creation are MLflow's store's."""
        found = self._find_experiment(experiment.name)
        if found is not None and found[1] == "active":
            return found[0]
        bare = not (experiment.tags or experiment.description)
        if found is not None or not bare or not 0 < len(experiment.name) <= _MAX_EXPERIMENT_NAME:
            return super().ensure_experiment(experiment)
        now = int(time.time() * 1000)
        try:
            with self._connection() as connection:
                cursor = connection.cursor()
                cursor.execute(self.sql.insert_experiment, (experiment.name, now, now))
                key = cursor.fetchone()[0] if self.sql.dialect == "postgresql" else cursor.lastrowid
                location = append_to_location(self.backend.artifact_root, str(key))
                cursor.execute(self.sql.set_experiment_location, (location, key))
        except Exception:  # created by another shard meanwhile
            return super().ensure_experiment(experiment)
        with self._lock:
            self._locations[str(key)] = location
        return str(key)

    def migrated_runs(self, experiment_key: str) -> dict[str, DestinationRun]:
        found: dict[str, DestinationRun] = {}
        with self._connection() as connection:
            cursor = connection.cursor()
            cursor.execute(self.sql.migrated, (int(experiment_key),))
            rows = cursor.fetchall()
        with self._lock:
            for run_id, artifact_uri, stage, source, state in rows:
                self._artifact_uris[run_id] = artifact_uri
                if stage == "deleted":
                    self._deleted.add(run_id)
                found[source] = DestinationRun(run_id, source, state is not None, state)
        return found

    def _artifact_uri(self, run_key: str) -> str:
        with self._lock:
            uri = self._artifact_uris.get(run_key)
        if uri is None:
            with self._connection() as connection:
                cursor = connection.cursor()
                cursor.execute(self.sql.run_details, (run_key,))
                (uri, _), *_ = cursor.fetchall()
            with self._lock:
                self._artifact_uris[run_key] = uri
        return uri

    def _stored_params(self, run_key: str) -> dict[str, str]:
        with self._connection() as connection:
            cursor = connection.cursor()
            cursor.execute(self.sql.params_of_run, (run_key,))
            return dict(cursor.fetchall())

    def high_water_marks(self, run_key: str) -> dict[str, int]:
        """Per source key the points stored (MLflow keeps one row per point)."""
        with self._connection() as connection:
            cursor = connection.cursor()
            cursor.execute(self.sql.counts, (run_key,))
            counts = cursor.fetchall()
        source_keys = {stored: source for source, stored in self._renamed(run_key).items()}
        return {source_keys.get(key, key): int(count) for key, count in counts}

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A pooled DB-API connection of MLflow's own engine; one transaction, rolled back on error."""
        with self._turn:
            connection = self.engine.raw_connection()
            try:
                if self.sql.dialect == "sqlite":
                    connection.execute("PRAGMA busy_timeout = 120000")  # other processes' shards
                    if self.new_file is not None:
                        connection.execute("PRAGMA synchronous = OFF")
                yield connection
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
            finally:
                connection.close()

    def create_run(self, experiment_key: str, run: Run, source: str) -> str:
        run_id = uuid.uuid4().hex
        name = (run.name or "")[:MAX_TAG_LENGTH]
        if not name:
            from mlflow.utils.name_utils import _generate_random_name

            name = _generate_random_name()
        tags = {SOURCE_TAG: source, RUN_NAME_TAG: name}
        if run.user:
            tags[USER_TAG] = run.user[:MAX_TAG_LENGTH]
        with self._connection() as connection:
            cursor = connection.cursor()
            location = self._locations.get(experiment_key)
            if location is None:
                cursor.execute(self.sql.experiment_location, (int(experiment_key),))
                (location,) = cursor.fetchone()
                self._locations[experiment_key] = location
            artifact_uri = append_to_location(location, run_id, "artifacts")
            row = (run_id, name, run.user or "", run.start_time, artifact_uri, int(experiment_key))
            cursor.execute(self.sql.insert_run, row)
            cursor.executemany(self.sql.set_tag, [(key, value, run_id) for key, value in tags.items()])
        with self._lock:
            self._artifact_uris[run_id] = artifact_uri
            self._fresh.add(run_id)
        return run_id

    def _log_entries(
        self, run_key: str, params: dict[str, str] | None = None, tags: dict[str, str] | None = None
    ) -> None:
        if not params and not tags:
            return
        with self._connection() as connection:
            cursor = connection.cursor()
            if params:
                cursor.executemany(self.sql.insert_param, [(k, v, run_key) for k, v in params.items()])
            if tags:
                cursor.executemany(self.sql.set_tag, [(k, v, run_key) for k, v in tags.items()])
                if RUN_NAME_TAG in tags:
                    cursor.execute(self.sql.rename_run, (tags[RUN_NAME_TAG], run_key))

    def finish_run(self, run_key: str, run: Run) -> None:
        """Inputs first (through MLflow's store), then status, end time and the completion tag in one
        transaction; a deleted source run is deleted through the store."""
        if run.inputs:
            self._write_inputs(run_key, run)
        with self._connection() as connection:
            cursor = connection.cursor()
            cursor.execute(self.sql.end_run, (run.status.value, run.end_time, run_key))
            cursor.execute(self.sql.set_tag, (COMPLETE_TAG, source_state(run), run_key))
        if run.deleted:
            self.backend.tracking.delete_run(run_key)

    def write_metrics(self, run_key: str, batches: list[MetricBatch]) -> None:
        renamed = self._stored_keys(run_key, batches)
        rows: list[Row] = []
        for batch in batches:
            values: Iterable[float] = batch.values
            nans: Iterable[bool] = repeat(False)
            if not all(map(math.isfinite, batch.values)):
                values, nans = zip(*map(stored_value, batch.values), strict=True)
            key = renamed.get(batch.key, batch.key)
            rows.extend(zip(repeat(key), values, batch.timestamps, batch.steps, nans, repeat(run_key)))
        if not rows:
            return
        with self._connection() as connection:
            self._insert_points(connection, rows)
            self._update_latest(connection, run_key, rows)

    def _insert_points(self, connection: Any, rows: list[Row]) -> None:
        cursor = connection.cursor()
        if self.sql.dialect == "sqlite":
            self._insert_sqlite(cursor, rows)
            return
        if self.sql.dialect != "postgresql":
            cursor.executemany(self.sql.insert_points, rows)
            return
        cursor.execute("SAVEPOINT ferryman_points")
        try:
            copy_rows(cursor, self.sql.copy_points, rows)
        except Exception as error:  # a point stored before (a resumed write): the slower, idempotent path
            if not _unique_violation(error):
                raise
            cursor.execute("ROLLBACK TO SAVEPOINT ferryman_points")
            cursor.executemany(self.sql.insert_points, rows)

    def _insert_sqlite(self, cursor: Any, rows: list[Row]) -> None:
        """Many rows a statement: `executemany` gives up Python's GIL for every row, and another busy thread
        then holds each row up for its switch interval (a 100,000-row insert took 5x as long beside one)."""
        size = _SQLITE_ROWS_PER_STATEMENT
        whole = len(rows) - len(rows) % size
        flat = [tuple(chain.from_iterable(rows[start : start + size])) for start in range(0, whole, size)]
        cursor.executemany(self.sql.insert_point_rows(size), flat)
        if whole < len(rows):
            rest = rows[whole:]
            cursor.execute(self.sql.insert_point_rows(len(rest)), tuple(chain.from_iterable(rest)))

    def _update_latest(self, connection: Any, run_key: str, rows: list[Row]) -> None:
        """Fold this write's points into `latest_metrics` as MLflow's `log_batch` does, point by point in
        order: a point replaces the latest only when its (step, timestamp, value) is strictly greater."""
        best: dict[str, Row] = {}
        for row in rows:
            current = best.get(row[0])
            if current is None or _RANK(row) > _RANK(current):
                best[row[0]] = row
        cursor = connection.cursor()
        cursor.execute(self.sql.latest, (run_key,))
        stored = {
            key: (key, value, timestamp, step, bool(nan), run_key)
            for key, value, timestamp, step, nan in cursor.fetchall()
            if key in best
        }
        inserts = [row for key, row in best.items() if key not in stored]
        updates = [
            (row[1], row[2], row[3], row[4], run_key, key)
            for key, row in best.items()
            if key in stored and _RANK(row) > _RANK(stored[key])
        ]
        if inserts:
            cursor.executemany(self.sql.insert_latest, inserts)
        if updates:
            cursor.executemany(self.sql.update_latest, updates)

    def reader(self) -> BulkReader:
        return BulkReader(self.backend)

    def close(self) -> None:
        super().close()
        if self.new_file is not None and self.new_file.exists():
            descriptor = os.open(self.new_file, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)


class BulkReader(MlflowReader):
    """Reads an MLflow database like `MlflowReader`, but with SQL: experiments and runs (params, tags, dataset
    inputs) a query each, every point of a run in one streamed query, in a fixed order (key, step, timestamp,
    value: the primary key's), so a resumed copy skips the same points. Models are read through MLflow's
    stores, opened only when the database holds any."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        self.engine = backend.engine
        self.sql = _Sql(self.engine.dialect.name)

    def _query(self, statement: str, parameters: tuple[Any, ...] = ()) -> list[Any]:
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute(statement, parameters)
            return list(cursor.fetchall())
        finally:
            connection.rollback()
            connection.close()

    def experiments(self, names: list[str] | None = None) -> Iterator[Experiment]:
        found = {str(key): name for key, name in self._query(self.sql.active_experiments)}
        tags: dict[str, dict[str, str]] = {}
        for key, tag, value in self._query(self.sql.experiment_tags):
            tags.setdefault(str(key), {})[tag] = value
        by_name = {name: key for key, name in found.items()}
        for key in [by_name[name] for name in names if name in by_name] if names else found:
            own = tags.get(key, {})
            description = own.pop(NOTE_TAG, None)
            yield Experiment(key, found[key], own, description)

    def runs(self, experiment: Experiment, since: int | None = None) -> Iterator[Run]:
        key = int(experiment.key)
        runs = self._query(self.sql.runs_since, (key, since)) if since else self._query(self.sql.runs, (key,))
        tags: dict[str, dict[str, str]] = {}
        params: dict[str, dict[str, str]] = {}
        metric_keys: dict[str, list[str]] = {}
        for run_id, name, value in self._query(self.sql.run_tags, (key,)):
            tags.setdefault(run_id, {})[name] = value
        for run_id, name, value in self._query(self.sql.run_params, (key,)):
            params.setdefault(run_id, {})[name] = value
        for run_id, name in self._query(self.sql.run_metric_keys, (key,)):
            metric_keys.setdefault(run_id, []).append(name)
        inputs = self._inputs(key)
        for run_id, name, status, start, end, user, stage, artifact_uri in runs:
            with self._lock:
                self._runs[run_id] = (sorted(metric_keys.get(run_id, [])), artifact_uri)
            yield run_from_fields(
                run_id, experiment.key, name=name, status=status, start=start, end=end, user=user,
                tags=tags.get(run_id, {}), params=params.get(run_id, {}), lifecycle_stage=stage,
                inputs=inputs.get(run_id, []),
            )

    def _inputs(self, experiment: int) -> dict[str, list[DatasetInput]]:
        """The dataset inputs of the experiment's runs, as MLflow's `Run.inputs` lists them."""
        tags: dict[str, list[tuple[str, str]]] = {}
        for input_id, name, value in self._query(self.sql.input_tags, (experiment,)):
            tags.setdefault(input_id, []).append((name, value))
        found: dict[str, list[DatasetInput]] = {}
        for run_id, input_id, name, digest, kind, source, schema, profile in self._query(
            self.sql.run_inputs, (experiment,)
        ):
            own = tuple(sorted(tags.get(input_id, [])))
            found.setdefault(run_id, []).append(
                DatasetInput(name, digest, kind, source, schema or None, profile or None, own)
            )
        return found

    def _run_details(self, run_key: str) -> tuple[list[str], str]:
        with self._lock:
            cached = self._runs.get(run_key)
        if cached is not None:
            return cached
        rows = self._query(self.sql.run_details, (run_key,))
        details = (sorted(key for _, key in rows if key is not None), rows[0][0])
        with self._lock:
            self._runs[run_key] = details
        return details

    def registered_models(self) -> Iterator[RegisteredModel]:
        if self._query(self.sql.any_registered_model):
            yield from super().registered_models()

    def logged_models(self, experiment: Experiment) -> Iterator[LoggedModel]:
        if self._query(self.sql.any_logged_model, (int(experiment.key),)):
            yield from super().logged_models(experiment)

    def metrics(self, run: Run) -> Iterator[MetricBatch]:
        connection = self.engine.raw_connection()
        try:
            server_side = {"name": "ferryman_points"} if self.sql.dialect == "postgresql" else {}
            cursor = connection.cursor(**server_side)
            cursor.execute(self.sql.points, (run.key,))
            batch: MetricBatch | None = None
            while rows := cursor.fetchmany(_READ_BATCH):
                for key, group in groupby(rows, itemgetter(0)):
                    _, steps, timestamps, values, nans = zip(*group, strict=True)
                    if any(nans):
                        values = tuple(math.nan if nan else v for v, nan in zip(values, nans, strict=True))
                    if batch is None or batch.key != key:
                        if batch is not None:
                            yield batch
                        batch = MetricBatch(key, [], [], [], system=key.startswith("system/"))
                    batch.steps.extend(steps)
                    batch.timestamps.extend(timestamps)
                    batch.values.extend(values)
                if batch is not None and len(batch) >= _READ_BATCH:
                    yield batch
                    batch = MetricBatch(batch.key, [], [], [], system=batch.system)
            if batch is not None and len(batch):
                yield batch
            cursor.close()
        finally:
            connection.rollback()
            connection.close()

    def series_digests(self, run: Run) -> dict[str, SeriesDigest] | None:
        """The run's series digested in one query: by PostgreSQL, or as SQLite streams them (None for MySQL,
        whose points are read back)."""
        if self.sql.dialect not in ("postgresql", "sqlite"):
            return None
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            if self.sql.digests is None:
                cursor.execute(self.sql.points_by_key, (run.key,))
                return _digest_rows(cursor)
            cursor.execute(self.sql.digests, (run.key,))
            return {
                str(key): SeriesDigest(int(count), step_min, step_max, ts_min, ts_max, int(total))
                for key, count, step_min, step_max, ts_min, ts_max, total in cursor.fetchall()
            }
        finally:
            connection.rollback()
            connection.close()


def open_reader(endpoint: Endpoint, credentials: Credentials) -> BulkReader:
    """The reader for MLflow database sources (the URI registry's factory)."""
    return BulkReader(Backend.connect(endpoint, credentials, "source"))


def open_writer(endpoint: Endpoint, credentials: Credentials) -> BulkWriter:
    """The writer for MLflow database destinations (the URI registry's factory): the schema is checked (or
    given, to a new database) before MLflow's store opens the database."""
    uri, new_file = endpoint.uri, None
    if endpoint.tracker.store is Store.SQLITE:
        location = uri.split(":///", 1)[-1] if ":///" in uri else ""
        if location not in ("", ":memory:") and prepare_sqlite(uri, Path(location)):
            new_file = Path(location)
    else:
        prepare_server(uri)
    return BulkWriter(Backend.connect(endpoint, credentials, "destination"), new_file)
