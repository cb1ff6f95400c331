"""The bulk path writes what the REST path writes: the same source migrated into a real MLflow server and, in
bulk, into an SQLite file and a PostgreSQL database leaves the same rows in every tracking table (run IDs
mapped through the `ferryman.source` identity), and MLflow's own API reads back the same histories and orders
runs by a metric the same way."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest
import sqlalchemy

from ferryman.migrate.copy import migrate
from ferryman.migrate.plan import MigrationRequest
from ferryman_dev.mlflow import MlflowServer
from tests.migrate.sources import SourceExperiment, client, populate_rich

pytestmark = pytest.mark.mlflow

# Per table: the columns compared, and the column holding a run ID (mapped to the run's source identity).
RUN_TABLES = {
    "params": ("key", "value"),
    "tags": ("key", "value"),
    "metrics": ("key", "value", "timestamp", "step", "is_nan"),
    "latest_metrics": ("key", "value", "timestamp", "step", "is_nan"),
}


@pytest.fixture(scope="module")
def rich_source(mlflow_source: MlflowServer) -> SourceExperiment:
    return populate_rich(mlflow_source.url, f"bulk-{uuid.uuid4().hex[:8]}")


def _normal(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def snapshot(database: str, experiment: str) -> dict[str, list[tuple[object, ...]]]:
    """The experiment's rows of every tracking table, with run IDs replaced by source identities."""
    engine = sqlalchemy.create_engine(database)
    tables: dict[str, list[tuple[object, ...]]] = {}
    try:
        with engine.connect() as connection:

            def query(sql: str, **params: object) -> list[tuple[object, ...]]:
                return [tuple(row) for row in connection.execute(sqlalchemy.text(sql), params)]

            ((experiment_id, stage),) = query(
                "SELECT experiment_id, lifecycle_stage FROM experiments WHERE name = :name", name=experiment
            )
            tables["experiments"] = [(experiment, stage)]
            tables["experiment_tags"] = sorted(
                query('SELECT "key", value FROM experiment_tags WHERE experiment_id = :e', e=experiment_id)
            )
            runs = query(
                "SELECT r.run_uuid, t.value, r.name, r.status, r.start_time, r.end_time, r.user_id, "
                "r.lifecycle_stage FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                "AND t.\"key\" = 'ferryman.source' WHERE r.experiment_id = :e",
                e=experiment_id,
            )
            identity = {run_id: source for run_id, source, *_ in runs}
            tables["runs"] = sorted(row[1:] for row in runs)

            def mapped(value: object) -> object:
                return identity.get(value, value) if isinstance(value, str) else _normal(value)

            for table, columns in RUN_TABLES.items():
                listed = ", ".join(f'"{c}"' if c == "key" else c for c in columns)
                rows = []
                for run_id, source in identity.items():
                    for row in query(f"SELECT {listed} FROM {table} WHERE run_uuid = :r", r=run_id):
                        rows.append((source, *(bool(v) if c == "is_nan" else mapped(v) for c, v in
                                               zip(columns, row, strict=True))))
                tables[table] = sorted(rows, key=repr)
            tables["logged_models"] = sorted(
                (name, status, lifecycle, mapped(run))
                for name, status, lifecycle, run in query(
                    "SELECT name, status, lifecycle_stage, source_run_id FROM logged_models "
                    "WHERE experiment_id = :e",
                    e=experiment_id,
                )
            )
            tables["model_versions"] = sorted(
                (name, version, stage, mapped(run), status)
                for name, version, stage, run, status in query(
                    "SELECT name, version, current_stage, run_id, status FROM model_versions "
                    "WHERE name = :m",
                    m=f"{experiment}-model",
                )
            )
    finally:
        engine.dispose()
    return tables


def test_rest_and_bulk_paths_write_the_same_tables(
    mlflow_source: MlflowServer,
    mlflow_destination: MlflowServer,
    rich_source: SourceExperiment,
    postgres_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # a server database's artifacts go below the working directory
    sqlite = f"sqlite:///{tmp_path / 'bulk.db'}"
    destinations = {"rest": mlflow_destination.url, "sqlite": sqlite, "postgresql": postgres_database}
    for name, uri in destinations.items():
        report = migrate(MigrationRequest(mlflow_source.url, uri, experiments=[rich_source.name], workers=2))
        assert report.ok, f"{name}: {report.summary()}"
        assert report.verified and report.source_totals == report.destination_totals, name
    databases = {"rest": mlflow_destination.backend_uri, "sqlite": sqlite, "postgresql": postgres_database}
    tables = {name: snapshot(uri, rich_source.name) for name, uri in databases.items()}
    assert len(tables["rest"]["runs"]) == 4 and len(tables["rest"]["metrics"]) == rich_source.points
    for name in ("sqlite", "postgresql"):
        for table, rows in tables["rest"].items():
            assert tables[name][table] == rows, f"{name}: {table}"

    readings = {}
    for name, uri in destinations.items():
        mlflow = client(uri)
        (experiment_id,) = [mlflow.get_experiment_by_name(rich_source.name).experiment_id]
        ordered = mlflow.search_runs([experiment_id], order_by=["metrics.loss DESC", "attributes.run_name"])
        histories = {
            (run.info.run_name, key): repr(
                [(m.step, m.timestamp, m.value) for m in mlflow.get_metric_history(run.info.run_id, key)]
            )
            for run in ordered
            for key in run.data.metrics
        }
        readings[name] = ([run.info.run_name for run in ordered], histories)
    assert readings["sqlite"] == readings["rest"]
    assert readings["postgresql"] == readings["rest"]
