"""A new MLflow database gets exactly the schema MLflow's migrations give: on SQLite, PostgreSQL, MariaDB.

Compared by reflection: every table with its columns (types, nullability, defaults), primary key, foreign
keys, unique constraints, indexes, check constraints and options, and the rows every table holds (the
stamped Alembic revision, MLflow's default workspace). The reference database is made by MLflow's
migrations: for SQLite by MLflow's store in a process of its own; for a server by the first empty database
of its kind, which MLflow creates while its statements are recorded (the cache starts empty), the fast one
then from that recording. A recording that fails part way leaves the database as empty as it was.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from ferryman.trackers.mlflow.fields import MlflowError
from ferryman.trackers.mlflow.schema import MLFLOW_CREATES, head_revision
from ferryman.trackers.mlflow.server_schema import prepare_server, server_kind
from ferryman.trackers.registry import Credentials, open_writer, redact


def schema_of(uri: str) -> dict[str, Any]:
    """Every table's definition as SQLAlchemy reflects it, and its rows (the default experiment's aside: it
    names its store's own location and time)."""
    engine = sqlalchemy.create_engine(uri)
    try:
        inspector = sqlalchemy.inspect(engine)
        found: dict[str, Any] = {}
        with engine.connect() as connection:
            for table in inspector.get_table_names():
                found[table] = {
                    "columns": [
                        (c["name"], str(c["type"]), c["nullable"], c.get("default"), c.get("autoincrement"))
                        for c in inspector.get_columns(table)
                    ],
                    "primary key": inspector.get_pk_constraint(table),
                    "foreign keys": sorted(map(repr, inspector.get_foreign_keys(table))),
                    "unique": sorted(map(repr, inspector.get_unique_constraints(table))),
                    "indexes": sorted(map(repr, inspector.get_indexes(table))),
                    "checks": sorted(map(repr, inspector.get_check_constraints(table))),
                    "options": inspector.get_table_options(table),
                }
                if table != "experiments":
                    rows = connection.execute(sqlalchemy.text(f"SELECT * FROM {table}")).fetchall()
                    found[table]["rows"] = sorted(map(repr, rows))
        return found
    finally:
        engine.dispose()


def assert_same(fast: dict[str, Any], slow: dict[str, Any]) -> None:
    assert sorted(fast) == sorted(slow)
    for table, definition in slow.items():
        assert fast[table] == definition, table
    assert len(slow) > 50 and slow["alembic_version"]["rows"] == [repr((head_revision(),))]


@pytest.mark.filterwarnings("ignore:WARNING. SQL-parsed foreign key constraint")  # MLflow's own SQLite schema
def test_a_new_sqlite_file_gets_exactly_the_schema_mlflow_makes(tmp_path: Path) -> None:
    fast, slow = tmp_path / "fast.db", tmp_path / "slow.db"
    open_writer(f"sqlite:///{fast}", Credentials()).close()
    subprocess.run([sys.executable, "-c", MLFLOW_CREATES, f"sqlite:///{slow}", str(tmp_path)], check=True)
    assert_same(schema_of(f"sqlite:///{fast}"), schema_of(f"sqlite:///{slow}"))
    defaults = {}
    for path in (fast, slow):  # MLflow's default experiment, at each store's location
        engine = sqlalchemy.create_engine(f"sqlite:///{path}")
        with engine.connect() as connection:
            query = ("SELECT experiment_id, name, artifact_location, lifecycle_stage, workspace, "
                     "creation_time = last_update_time FROM experiments")
            defaults[path] = connection.execute(sqlalchemy.text(query)).fetchall()
        engine.dispose()
    assert defaults[fast] == [(0, "Default", str(tmp_path / "fast-artifacts" / "0"), "active", "default", 1)]
    assert defaults[slow] == [(0, "Default", str(tmp_path / "0"), "active", "default", 1)]


@pytest.mark.parametrize("server", ["postgres", "mariadb"])
def test_a_new_server_database_gets_exactly_the_schema_mlflow_makes(
    server: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERRYMAN_CACHE", str(tmp_path))
    database = request.getfixturevalue(f"{server}_server")
    slow, fast = (database.create_database(f"test_{uuid.uuid4().hex[:12]}") for _ in range(2))
    assert prepare_server(slow)  # MLflow's migrations, recorded
    (recorded,) = tmp_path.glob("mlflow-schema-*.json")
    assert prepare_server(fast)  # the recording, replayed
    assert_same(schema_of(fast), schema_of(slow))
    assert not prepare_server(fast)  # a database holding MLflow's schema is left as it is
    assert recorded.stat().st_size < 100_000 and "SELECT" not in {s.split()[0] for s, _, _ in json.loads(
        recorded.read_text())}


@pytest.mark.parametrize("server", ["postgres", "mariadb"])
def test_a_replay_that_fails_leaves_the_database_empty(
    server: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERRYMAN_CACHE", str(tmp_path))
    database = request.getfixturevalue(f"{server}_database")
    engine = sqlalchemy.create_engine(database)
    recorded = tmp_path / f"mlflow-schema-{head_revision()}-{server_kind(engine)}.json"
    statements = ["CREATE TABLE made_first (id INTEGER PRIMARY KEY)", "CREATE TABLE made_second (id INTEGER)",
                  "CREATE TABLE made_first (id INTEGER)"]  # MySQL commits each CREATE at once
    recorded.write_text(json.dumps([[statement, {}, False] for statement in statements]))
    named = f"could not give destination MLflow database {re.escape(redact(database))}"
    with pytest.raises(MlflowError, match=named):
        prepare_server(database)
    assert sqlalchemy.inspect(engine).get_table_names() == []
    engine.dispose()


def test_workers_preparing_one_new_database_at_once_all_succeed(postgres_database: str) -> None:
    prepare_server(postgres_database)  # the recording of this server's kind exists from here on
    engine = sqlalchemy.create_engine(postgres_database)
    with engine.begin() as connection:  # empty again
        connection.execute(sqlalchemy.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    with ThreadPoolExecutor(4) as workers:
        given = list(workers.map(prepare_server, [postgres_database] * 4))
    assert given.count(True) >= 1
    assert schema_of(postgres_database)["alembic_version"]["rows"] == [repr((head_revision(),))]
