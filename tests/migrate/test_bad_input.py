"""Bad input: each failure names what failed, writes nothing half-way, and keeps the progress made."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ferryman.migrate.copy import migrate
from ferryman.migrate.plan import MigrationRequest
from ferryman.trackers.model import OutcomeKind
from ferryman.trackers.registry import Credentials
from ferryman_dev.lifetime import free_port
from ferryman_dev.mlflow import MlflowServer
from tests.migrate.sources import client, populate_bulk

pytestmark = pytest.mark.mlflow
PASSWORD = "ferryman-Test-pw-1"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "FERRYMAN_"))}
    return subprocess.run(
        [sys.executable, "-m", "ferryman", "migrate", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**base, **(env or {})},
    )


def test_unreachable_server_is_named(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("--from", url, "--to", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert result.returncode == 2
    assert f"source MLflow server {url} is unreachable" in result.stderr


def test_missing_experiment_is_named_and_nothing_is_written(
    mlflow_source: MlflowServer, tmp_path: Path
) -> None:
    result = run_cli(
        "--from",
        mlflow_source.url,
        "--to",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--experiment",
        "no-such-experiment",
    )
    assert result.returncode == 2
    assert "experiment(s) 'no-such-experiment' not found in " + mlflow_source.url in result.stderr
    assert not (tmp_path / "mlflow-artifacts").exists()


def test_wrong_credentials_are_rejected_clearly_and_each_end_has_its_own(
    mlflow_server_factory: object, mlflow_source: MlflowServer, tmp_path: Path
) -> None:
    secured: MlflowServer = mlflow_server_factory("secured", basic_auth_password=PASSWORD)  # type: ignore[operator]
    name = f"auth-{uuid.uuid4().hex[:6]}"
    populate_bulk(mlflow_source.url, name, runs=2, keys=1, steps=50)
    wrong = run_cli(
        "--from",
        mlflow_source.url,
        "--to",
        secured.url,
        "--experiment",
        name,
        env={"FERRYMAN_DESTINATION_USERNAME": "admin", "FERRYMAN_DESTINATION_PASSWORD": "wrong"},
    )
    assert wrong.returncode == 2
    assert f"destination MLflow server {secured.url} rejected the credentials (HTTP 401)" in wrong.stderr
    # the source is open, the destination needs a password: the source never sees the destination's secret
    right = run_cli(
        "--from",
        mlflow_source.url,
        "--to",
        secured.url,
        "--experiment",
        name,
        env={"FERRYMAN_DESTINATION_USERNAME": "admin", "FERRYMAN_DESTINATION_PASSWORD": PASSWORD},
    )
    assert right.returncode == 0, right.stderr
    # and back out again, reading with credentials while writing to an embedded store without any
    report = migrate(
        MigrationRequest(
            secured.url,
            f"sqlite:///{tmp_path / 'back.db'}",
            experiments=[name],
            source_credentials=Credentials(username="admin", password=PASSWORD),
            destination_credentials=Credentials(),
        )
    )
    assert report.ok and report.source_totals["points"] == 100


def test_corrupt_file_store_reports_what_it_could_not_read_and_migrates_the_rest(
    mlflow_destination: MlflowServer, tmp_path: Path
) -> None:
    store = tmp_path / "mlruns"
    (store / "7").mkdir(parents=True)
    (store / "7" / "meta.yaml").write_text(f"experiment_id: '7'\nname: corrupt-{uuid.uuid4().hex[:6]}\n")
    for run_id in ("good", "broken", "empty"):
        (store / "7" / run_id / "metrics").mkdir(parents=True)
    (store / "7" / "good" / "meta.yaml").write_text("run_id: good\nstatus: 3\nstart_time: 1\nend_time: 2\n")
    (store / "7" / "good" / "metrics" / "loss").write_text("10 0.5 0\n11 0.25 1\n")
    (store / "7" / "broken" / "meta.yaml").write_text("run_id: [unclosed\n")
    (store / "7" / "empty" / "meta.yaml").write_text("")
    (store / "8" / "orphan").mkdir(parents=True)
    (store / "8" / "orphan" / "meta.yaml").write_text("run_id: orphan\n")
    report = migrate(MigrationRequest(str(store), mlflow_destination.url))
    assert report.ok, report.summary()
    assert [r.name for r in report.runs] == [None] and report.points_written == 2
    unreadable = {o.item: o.reason for o in report.outcomes if o.kind is OutcomeKind.UNREADABLE}
    assert any("broken/meta.yaml" in item and "unreadable" in reason for item, reason in unreadable.items())
    assert any("empty/meta.yaml" in item for item in unreadable)
    assert "experiment 8" in unreadable and "meta.yaml is missing" in unreadable["experiment 8"]
    assert "unreadable" in report.summary()
    assert client(mlflow_destination.url).get_experiment_by_name(report.runs[0].experiment) is not None
