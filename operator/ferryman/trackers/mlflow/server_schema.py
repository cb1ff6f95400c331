"""MLflow's schema for a new PostgreSQL or MySQL/MariaDB destination, in one step.

MLflow creates a new database by replaying every Alembic migration (10-20 s and more on a loaded machine). A
server database cannot be copied from a template as a new SQLite file is (trackers/mlflow/schema.py), and
MLflow's models alone are not its migrated schema: they differ in column order, types, constraint names and
indexes, and hold an index of no columns (`index_trace_tags_request_id`) that `create_all` cannot emit. So the
first empty database of a kind is created by MLflow's own migrations, in a process of their own that records
every statement sent to the server (Alembic's offline `--sql` mode cannot: many migrations inspect the live
database). The statements that change something (not the reads of those inspections) are cached per schema
revision, driver and server version, and every later empty database of that kind gets them verbatim in one
transaction. On MySQL, whose DDL is not transactional, a failed replay drops the tables it made.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ferryman.trackers.mlflow.fields import MlflowError
from ferryman.trackers.mlflow.schema import cache_dir, head_revision, upgrade_error
from ferryman.trackers.registry import redact

# MLflow's creation of an empty server database (its URI on stdin, never in argv), every statement recorded.
MLFLOW_RECORDS = (
    "import json, sys\n"
    "import sqlalchemy\n"
    "from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine_with_retry\n"
    "sent = []\n"
    "def record(connection, cursor, statement, parameters, context, executemany):\n"
    "    sent.append([statement, parameters, executemany])\n"
    "engine = create_sqlalchemy_engine_with_retry(sys.stdin.read())\n"
    "sqlalchemy.event.listen(engine, 'before_cursor_execute', record)\n"
    "_initialize_tables(engine)\n"
    "engine.dispose()\n"
    "with open(sys.argv[1], 'w') as out:\n"
    "    json.dump(sent, out)\n"
)
READS = frozenset({"SELECT", "SHOW", "DESCRIBE", "PRAGMA", "EXPLAIN"})  # change nothing: not replayed
_CREATES_TABLE = re.compile(r"\s*CREATE\s+TABLE\s+[`\"]?(\w+)", re.IGNORECASE)


def prepare_server(uri: str) -> bool:
    """An empty server database gets MLflow's schema (True): replayed from the cache, or made by MLflow and
    recorded; one holding tables must be at MLflow's head (False). Workers preparing one database at once
    all succeed on PostgreSQL, whose DDL waits for the first one's transaction."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    try:
        if sqlalchemy.inspect(engine).get_table_names():
            _check_revision(uri, engine)
            return False
        recorded = cache_dir() / f"mlflow-schema-{head_revision()}-{server_kind(engine)}.json"
        if not recorded.exists():
            _record(uri, recorded)
            return True
        try:
            _replay(uri, engine, json.loads(recorded.read_text()))
        except MlflowError:  # another worker of the migration may have given it the schema meanwhile
            from mlflow.store.db.utils import _get_schema_version

            if _get_schema_version(engine) != head_revision():
                raise
        return True
    except sqlalchemy.exc.SQLAlchemyError as error:
        detail = redact(str(error))
        raise MlflowError(f"cannot open destination MLflow database {redact(uri)}: {detail}") from None
    finally:
        engine.dispose()


def server_kind(engine: Any) -> str:
    """What the recorded statements depend on: dialect, driver (its parameter style) and server version."""
    dialect = engine.dialect
    with engine.connect():  # the version is known once a connection was made
        version = ".".join(str(part) for part in dialect.server_version_info)
    flavour = "-mariadb" if getattr(dialect, "is_mariadb", False) else ""
    return f"{dialect.name}{flavour}-{dialect.driver}-{version}"


def _check_revision(uri: str, engine: Any) -> None:
    from mlflow.store.db.utils import _get_schema_version

    head, found = head_revision(), _get_schema_version(engine)
    if found != head:
        raise upgrade_error(uri, found, head)


def _record(uri: str, recorded: Path) -> None:
    """MLflow migrates the empty database in a process of its own; the statements that changed it are kept."""
    with tempfile.TemporaryDirectory(prefix="ferryman-schema-") as scratch:
        sent = Path(scratch) / "sent.json"
        try:
            subprocess.run(
                [sys.executable, "-c", MLFLOW_RECORDS, str(sent)],
                input=uri, check=True, capture_output=True, text=True,
            )
        except subprocess.CalledProcessError as error:
            detail = redact(error.stderr[-2000:].replace(uri, redact(uri)))
            raise MlflowError(f"MLflow could not create its schema in {redact(uri)}: {detail}") from None
        sent_all = json.loads(sent.read_text())
    kept = [entry for entry in sent_all if entry[0].split(None, 1)[0].upper() not in READS]
    try:
        recorded.parent.mkdir(parents=True, exist_ok=True)
        partial = recorded.with_name(f"{recorded.name}.{os.getpid()}")
        partial.write_text(json.dumps(kept, indent=0))
        partial.replace(recorded)  # atomic: a concurrent recorder's identical file may win
    except OSError:  # an unwritable cache only costs the next empty database MLflow's own pace
        pass


def _replay(uri: str, engine: Any, statements: list[list[Any]]) -> None:
    """The recorded statements, verbatim, in one transaction; what a non-transactional DDL made is dropped
    again when one fails."""
    import sqlalchemy

    made: list[str] = []
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        for statement, parameters, many in statements:
            (cursor.executemany if many else cursor.execute)(statement, parameters)
            if created := _CREATES_TABLE.match(statement):
                made.append(created[1])
        connection.commit()
    except Exception as error:
        connection.rollback()
        left = set(made) & set(sqlalchemy.inspect(engine).get_table_names())
        if left:
            with engine.begin() as cleanup:
                cleanup.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
                for table in left:
                    cleanup.exec_driver_sql(f"DROP TABLE {engine.dialect.identifier_preparer.quote(table)}")
        raise MlflowError(
            f"could not give destination MLflow database {redact(uri)} MLflow's schema: {redact(str(error))}"
        ) from None
    finally:
        connection.close()
