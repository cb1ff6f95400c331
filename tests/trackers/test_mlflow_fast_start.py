"""A small migration into a new MLflow database starts fast: the schema head is read without Alembic, and the
bulk path imports MLflow only for what MLflow's own store must write."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tensorboardX import SummaryWriter

from ferryman.trackers.mlflow.schema import head_revision

MIGRATES_WITHOUT_MLFLOW = """
import sys
from ferryman.cli import cli
try:
    cli.main(["migrate", "--from", sys.argv[1], "--to", sys.argv[2], "--report", sys.argv[3]])
except SystemExit as done:
    assert done.code == 0, done.code
print(sorted(name for name in sys.modules if name.split(".")[0] in ("mlflow", "alembic")))
"""


def test_the_head_revision_is_the_one_alembic_finds() -> None:
    from mlflow.store.db.utils import _get_latest_schema_revision

    assert head_revision() == _get_latest_schema_revision()


def test_a_tensorboard_run_goes_into_a_new_sqlite_file_without_importing_mlflow(tmp_path: Path) -> None:
    with SummaryWriter(str(tmp_path / "logs" / "run")) as writer:
        for step in range(27):
            writer.add_scalar("loss", 1 / (step + 1), step)
            writer.add_scalar("accuracy", step / 27, step)
    database, report = tmp_path / "new.db", tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-c", MIGRATES_WITHOUT_MLFLOW, f"tensorboard:{tmp_path / 'logs'}",
         f"sqlite:///{database}", str(report)],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    assert done.stdout.splitlines()[-1] == "[]", done.stdout
    totals = json.loads(report.read_text())
    assert totals["ok"] and totals["verified"] and totals["destinationTotals"]["points"] == 54, totals
