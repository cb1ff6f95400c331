"""What `ferryman migrate` does to its destination when it should not write, cannot write or runs out of room
(issue #14): dry runs and verify-only create nothing, an unknown experiment leaves nothing behind, a full disk
leaves no half state and a re-run resumes, an unwritable destination fails in seconds naming it."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

NEPTUNE = Path(__file__).parents[1] / "trackers" / "data" / "neptune_export"


def migrate(*args: str | Path, limit_bytes: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FERRYMAN_"))}

    def limit() -> None:  # a full disk, as far as this process can tell (Python ignores SIGXFSZ: EFBIG)
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "ferryman", "migrate", *map(str, args)], capture_output=True,
                          text=True, timeout=600, env=env, preexec_fn=limit)


def files(root: Path) -> dict[str, str]:
    """Every path below root with its content's digest (directories as '/')."""
    found = {}
    for path in sorted(root.rglob("*")):
        digest = "/" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        found[str(path.relative_to(root))] = digest
    return found


@pytest.fixture
def source(tmp_path: Path) -> str:
    shutil.copytree(NEPTUNE, tmp_path / "source", ignore=shutil.ignore_patterns("build.py"))
    return f"neptune-export:{tmp_path / 'source'}"


@pytest.mark.parametrize("mode", ["--dry-run", "--verify-only"])
def test_dry_run_and_verify_only_create_nothing(tmp_path: Path, source: str, mode: str) -> None:
    before = files(tmp_path)
    for destination in (f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}", f"tensorboard:{tmp_path / 'tb'}"):
        result = migrate("--from", source, "--to", destination, mode, "--json")
        assert result.returncode == (0 if mode == "--dry-run" else 1), result.stderr
        if mode == "--verify-only":
            assert "run missing in the destination" in result.stdout
    assert files(tmp_path) == before


def test_dry_run_and_verify_only_leave_an_existing_destination_as_it_is(tmp_path: Path, source: str) -> None:
    destination = f"sqlite:///{tmp_path / 'dest' / 'mlflow.db'}"
    assert migrate("--from", source, "--to", destination, "-q").returncode == 0
    before = files(tmp_path)
    assert migrate("--from", source, "--to", destination, "--dry-run").returncode == 0
    assert migrate("--from", source, "--to", destination, "--verify-only").returncode == 0
    assert files(tmp_path) == before


def test_dry_run_with_verify_only_is_a_usage_error(tmp_path: Path, source: str) -> None:
    result = migrate("--from", source, "--to", f"sqlite:///{tmp_path / 'x.db'}", "--dry-run", "--verify-only")
    assert result.returncode == 2 and "exclude each other" in result.stderr and "Usage:" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_an_unknown_experiment_leaves_nothing_behind(tmp_path: Path, source: str) -> None:
    before = files(tmp_path)
    destination = f"sqlite:///{tmp_path / 'd' / 'mlflow.db'}"
    result = migrate("--from", source, "--to", destination, "--experiment", "nope")
    assert result.returncode == 2 and "experiment(s) 'nope' not found" in result.stderr
    assert files(tmp_path) == before


def test_a_spec_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    spec = tmp_path / "migration.yaml"
    spec.write_bytes(b"spec:\n  source: {uri: '\xff\xfe'}\n")
    result = migrate("-f", spec)
    assert result.returncode == 2 and f"{spec}: not UTF-8 text (byte" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_alias_bomb_spec_file_fails_fast(tmp_path: Path) -> None:
    from tests.convert.test_hostile_manifests import alias_bomb

    spec = tmp_path / "migration.yaml"
    spec.write_text(alias_bomb())
    started = time.monotonic()
    result = migrate("-f", spec)
    assert result.returncode == 2 and "alias bomb" in result.stderr
    assert time.monotonic() - started < 60  # the interpreter's start included, on a loaded machine


@pytest.fixture
def tensorboard_source(tmp_path: Path) -> str:
    """Three runs of 20,000 points each: several MB in an MLflow database."""
    from tensorboardX import SummaryWriter

    for run in range(3):
        with SummaryWriter(str(tmp_path / "logs" / f"run-{run}")) as events:
            for step in range(20_000):
                events.add_scalar("loss", 1.0 / (step + 1), step)
    return f"tensorboard:{tmp_path / 'logs'}"


def test_a_full_disk_leaves_no_half_state_and_a_rerun_resumes(
    tmp_path: Path, tensorboard_source: str
) -> None:
    database = tmp_path / "dest" / "mlflow.db"
    full = migrate("--from", tensorboard_source, "--to", f"sqlite:///{database}", "--json", "-q",
                   limit_bytes=2 << 20)
    assert full.returncode != 0
    assert "Traceback" not in full.stderr
    with sqlite3.connect(database) as db:  # whatever was written is whole
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    resumed = migrate("--from", tensorboard_source, "--to", f"sqlite:///{database}", "--json")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    report = json.loads(resumed.stdout)
    assert report["ok"] and report["destinationTotals"]["points"] == 60_000


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only file system needs root")
def test_an_unwritable_destination_fails_in_seconds_naming_it(
    read_only_mount: Path, tensorboard_source: str, source: str
) -> None:
    existing = f"sqlite:///{read_only_mount / 'mlflow.db'}"
    assert migrate("--from", source, "--to", existing, "-q").returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_mount)], check=True)
    for destination in (existing, f"sqlite:///{read_only_mount / 'new.db'}",
                        f"tensorboard:{read_only_mount / 'tb'}"):
        started = time.monotonic()
        result = migrate("--from", tensorboard_source, "--to", destination)
        assert result.returncode == 2, result.stderr
        assert time.monotonic() - started < 60, result.stderr  # not 108 s of retries
        assert str(read_only_mount) in result.stderr and "Traceback" not in result.stderr


def test_a_disk_full_before_the_schema_is_in_place_leaves_no_file(tmp_path: Path, source: str) -> None:
    destination = f"sqlite:///{tmp_path / 'dest' / 'mlflow.db'}"
    full = migrate("--from", source, "--to", destination, limit_bytes=256 << 10)  # less than the schema
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    assert not [path for path in (tmp_path / "dest").rglob("*") if path.is_file()]
    assert migrate("--from", source, "--to", destination, "-q").returncode == 0
