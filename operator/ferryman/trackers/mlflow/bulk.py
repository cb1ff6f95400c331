"""The bulk path into MLflow's own database (SQLite, PostgreSQL, MySQL/MariaDB destinations).

Experiments, runs, params, tags, inputs and logged models go through MLflow's `SqlAlchemyStore` (the
`MlflowWriter` this extends), so IDs, defaults and constraints stay MLflow's. Metric points, the bulk of the
data, go straight into the `metrics` table in one transaction per write (PostgreSQL `COPY`, `executemany`
elsewhere) together with the `latest_metrics` rows MLflow would have left: per key the point with the greatest
(step, timestamp, value), the first one logged among equals, NaN stored as 0 with `is_nan` set and infinities
as the largest finite doubles. Exact repeats of a stored point are dropped, as MLflow's primary key does.
Database sources, and the verification read-back, read every point of a run in one streamed query.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any

from ferryman.trackers.mlflow.backend import Backend
from ferryman.trackers.mlflow.reader import MlflowReader
from ferryman.trackers.mlflow.schema import check_server, prepare_sqlite
from ferryman.trackers.mlflow.writer import MlflowWriter
from ferryman.trackers.model import MetricBatch, Run
from ferryman.trackers.registry import Credentials, Endpoint, Store

_MAX_DOUBLE = 1.7976931348623157e308
_READ_BATCH = 50_000
_COLUMNS = ("{key}", "value", "timestamp", "step", "is_nan", "run_uuid")
# A row as stored: (key, value, timestamp, step, is_nan, run_uuid).
Row = tuple[str, float, int, int, bool, str]
_RANK = itemgetter(3, 2, 1)  # (step, timestamp, value): what makes a point MLflow's latest


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

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        self.engine = backend.tracking.engine
        self.sql = _Sql(self.engine.dialect.name)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A pooled DB-API connection of MLflow's own engine; one transaction, rolled back on error."""
        connection = self.engine.raw_connection()
        try:
            if self.sql.dialect == "sqlite":
                connection.execute("PRAGMA busy_timeout = 120000")  # parallel runs take turns writing
            yield connection
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()

    def high_water_marks(self, run_key: str) -> dict[str, int]:
        with self._connection() as connection:
            cursor = connection.cursor()
            cursor.execute(self.sql.counts, (run_key,))
            counts = {str(key): int(count) for key, count in cursor.fetchall()}
        source_keys = {stored: source for source, stored in self._renamed(run_key).items()}
        return {source_keys.get(key, key): count for key, count in counts.items()}

    def write_metrics(self, run_key: str, batches: list[MetricBatch]) -> None:
        renamed = self._stored_keys(run_key, batches)
        rows: list[Row] = []
        for batch in batches:
            key = renamed.get(batch.key, batch.key)
            for step, timestamp, value in zip(batch.steps, batch.timestamps, batch.values, strict=True):
                stored, nan = stored_value(value)
                rows.append((key, stored, timestamp, step, nan, run_key))
        if not rows:
            return
        with self._connection() as connection:
            self._insert_points(connection, rows)
            self._update_latest(connection, run_key, rows)

    def _insert_points(self, connection: Any, rows: list[Row]) -> None:
        cursor = connection.cursor()
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


class BulkReader(MlflowReader):
    """Reads an MLflow database like `MlflowReader`, but every point of a run in one streamed query, in a
    fixed order (key, step, timestamp, value: the primary key's), so a resumed copy skips the same points."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        self.engine = backend.tracking.engine
        self.sql = _Sql(self.engine.dialect.name)

    def metrics(self, run: Run) -> Iterator[MetricBatch]:
        connection = self.engine.raw_connection()
        try:
            server_side = {"name": "ferryman_points"} if self.sql.dialect == "postgresql" else {}
            cursor = connection.cursor(**server_side)
            cursor.execute(self.sql.points, (run.key,))
            batch: MetricBatch | None = None
            while rows := cursor.fetchmany(_READ_BATCH):
                for key, step, timestamp, value, nan in rows:
                    if batch is None or batch.key != key:
                        if batch is not None:
                            yield batch
                        batch = MetricBatch(key, [], [], [], system=key.startswith("system/"))
                    batch.steps.append(step)
                    batch.timestamps.append(timestamp)
                    batch.values.append(math.nan if nan else value)
                if batch is not None and len(batch) >= _READ_BATCH:
                    yield batch
                    batch = MetricBatch(batch.key, [], [], [], system=batch.system)
            if batch is not None and len(batch):
                yield batch
            cursor.close()
        finally:
            connection.rollback()
            connection.close()


def open_reader(endpoint: Endpoint, credentials: Credentials) -> BulkReader:
    """The reader for MLflow database sources (the URI registry's factory)."""
    return BulkReader(Backend.connect(endpoint, credentials, "source"))


def open_writer(endpoint: Endpoint, credentials: Credentials) -> BulkWriter:
    """The writer for MLflow database destinations (the URI registry's factory): the schema is checked (or
    made, for a new SQLite file) before MLflow's store opens the database."""
    uri = endpoint.uri
    if endpoint.tracker.store is Store.SQLITE:
        location = uri.split(":///", 1)[-1] if ":///" in uri else ""
        if location not in ("", ":memory:"):
            prepare_sqlite(uri, Path(location))
    else:
        check_server(uri)
    return BulkWriter(Backend.connect(endpoint, credentials, "destination"))
