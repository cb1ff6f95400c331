"""MLflow's schema at a destination: refuse an outdated one, give a new SQLite file the schema at once.

MLflow creates a new database by replaying every Alembic migration (20 s and more on a loaded machine). A new
SQLite destination instead gets a copy of a template made once per schema revision by MLflow itself (the same
replay, so the tables, indexes, constraints and the stamped revision are exactly MLflow's), kept in ferryman's
cache directory; MLflow then adds its default experiment when it opens the copy, as it does for any new store.
A new server database gets its schema from trackers/mlflow/server_schema.py.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from ferryman.trackers.mlflow.fields import MlflowError
from ferryman.trackers.registry import redact

MLFLOW_CREATES = (
    "import sys\n"
    "from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore\n"
    "SqlAlchemyStore(sys.argv[1], sys.argv[2]).engine.dispose()\n"
)


def cache_dir() -> Path:
    """`FERRYMAN_CACHE`, else `$XDG_CACHE_HOME/ferryman`, else `~/.cache/ferryman`."""
    explicit = os.environ.get("FERRYMAN_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ferryman"


_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+)$", re.MULTILINE)
_REVISION_ID = re.compile(r"[\"']([0-9a-zA-Z_]+)[\"']")


@functools.cache
def head_revision() -> str:
    """The Alembic revision the installed MLflow's stores require: the one migration script in MLflow's
    `db_migrations/versions` that no other names as its `down_revision`, read from those lines without
    importing MLflow or Alembic (which imports every script to know)."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        raise MlflowError("MLflow is not installed: `pip install mlflow`")
    versions = Path(next(iter(spec.submodule_search_locations))) / "store" / "db_migrations" / "versions"
    revisions: set[str] = set()
    replaced: set[str] = set()
    for script in versions.glob("*.py"):
        lines = dict(_REVISION_LINE.findall(script.read_text(encoding="utf-8")))
        if "revision" in lines:
            revisions.update(_REVISION_ID.findall(lines["revision"])[:1])
            replaced.update(_REVISION_ID.findall(lines.get("down_revision", "")))
    heads = revisions - replaced
    if len(heads) != 1:
        raise MlflowError(f"MLflow's migrations in {versions} have {len(heads)} heads, not one: {heads}")
    return heads.pop()


def upgrade_error(uri: str, found: str | None, head: str) -> MlflowError:
    import mlflow

    return MlflowError(
        f"destination MLflow database {redact(uri)} is at schema revision {found or 'none'}, but the "
        f"installed MLflow {mlflow.__version__} writes revision {head}: back it up, then run "
        f"`mlflow db upgrade {redact(uri)}` with MLflow {mlflow.__version__}, and migrate again"
    )


def _sqlite_revision(path: Path) -> tuple[bool, str | None]:
    """(whether the file holds any table, its Alembic revision), read without writing."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "alembic_version" not in tables:
            return bool(tables), None
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        return True, row[0] if row else None
    except sqlite3.DatabaseError as error:
        raise MlflowError(f"destination {path} is not an SQLite database: {error}") from None
    finally:
        connection.close()


def prepare_sqlite(uri: str, path: Path) -> bool:
    """A new (absent or empty) file gets the template's schema (True); an existing store must be at MLflow's
    head (False)."""
    head = head_revision()
    if path.exists() and path.stat().st_size:
        populated, found = _sqlite_revision(path)
        if populated and found != head:
            raise upgrade_error(uri, found, head)
        if populated:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".ferryman-partial")
    try:
        shutil.copyfile(_sqlite_template(head), partial)
    except BaseException:  # a full disk leaves no partial copy behind
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
    return True


def _sqlite_template(head: str) -> Path:
    """The cached empty store of this schema revision, made by MLflow the first time it is asked for."""
    template = cache_dir() / f"mlflow-schema-{head}.sqlite"
    if template.exists():
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=template.parent, prefix="schema-") as scratch:
        made = Path(scratch) / "mlflow.db"
        try:  # in a process of its own: MLflow's migrations depend on what else a process has loaded
            subprocess.run(
                [sys.executable, "-c", MLFLOW_CREATES, f"sqlite:///{made}", str(Path(scratch) / "art")],
                check=True,
                capture_output=True,
                text=True,
            )
        except subprocess.CalledProcessError as error:
            raise MlflowError(f"MLflow could not create its schema: {error.stderr[-2000:]}") from None
        with sqlite3.connect(made) as connection:  # MLflow adds it again, with the destination's location
            connection.execute("DELETE FROM experiments")
        connection.close()
        made.replace(template)  # atomic: a concurrent maker's identical file may win
    return template

