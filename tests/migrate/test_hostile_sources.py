"""Crafted sources (issue #14): `ferryman migrate` writes nothing outside its destination and reads nothing
outside its source, whatever names and symlinks the source holds; each refusal is a counted outcome naming
the source file. Every test lists the whole temporary tree before and after the migration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ferryman.trackers.model import OutcomeKind
from ferryman.trackers.neptune.export import safe_path_part
from ferryman.trackers.paths import UnsafePath, files, inside, safe_relative
from tests.trackers.test_mlflow_filestore import write

HAND_BUILT = Path(__file__).parents[1] / "trackers" / "data" / "neptune_export"
SECRET = "ferryman-test-secret-token-5d1c"


def tree(root: Path) -> set[str]:
    """Every path below root (symlinks not followed)."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


def migrate_cli(tmp_path: Path, source: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    """Run `ferryman migrate` into an MLflow SQLite store below tmp_path/destination; returns the process and
    its JSON report. Asserts nothing outside the destination changed."""
    (tmp_path / "cwd").mkdir(exist_ok=True)
    before = tree(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FERRYMAN_"))}
    result = subprocess.run(
        [sys.executable, "-m", "ferryman", "migrate", "--from", source,
         "--to", f"sqlite:///{tmp_path / 'destination' / 'mlflow.db'}", "--json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path / "cwd",
        env={**env, "HOME": str(tmp_path / "cwd")},
    )
    created = tree(tmp_path) - before
    assert created, result.stderr
    assert all(path == "destination" or path.startswith("destination/") or path.startswith("cwd/")
               for path in created), sorted(created)
    assert not [p for p in created if p.startswith("cwd/") and "escaped" in p]
    assert SECRET not in result.stdout + result.stderr
    for path in created:
        if path.startswith("destination/") and (tmp_path / path).is_file():
            assert SECRET.encode() not in (tmp_path / path).read_bytes(), path
    return result, json.loads(result.stdout)


def outcomes(report: dict[str, object]) -> list[dict[str, str]]:
    return report["outcomes"]  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------- the one rule


@pytest.mark.parametrize(
    ("name", "normalised"),
    [("a/b.txt", "a/b.txt"), ("a//./b.txt", "a/b.txt"), ("./a/b", "a/b"), ("a\\b", "a/b")],
)
def test_destination_names_are_normalised(name: str, normalised: str) -> None:
    assert safe_relative(name) == normalised


@pytest.mark.parametrize(
    "name", ["../x", "a/../../x", "/etc/passwd", "C:/x", "\\\\server\\x", "", ".", "a\x00b"]
)
def test_destination_names_leaving_the_root_are_refused(name: str) -> None:
    with pytest.raises(UnsafePath):
        safe_relative(name)


def test_a_symlink_already_in_the_destination_is_not_followed_out(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafePath, match="through a symlink"):
        inside(tmp_path / "root", "link/x")
    assert inside(tmp_path / "root", "a//b") == tmp_path / "root" / "a" / "b"


def test_source_walk_follows_symlinks_only_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text(SECRET)
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a")
    (root / "inner").symlink_to(root / "sub")
    (root / "loop").symlink_to(root)
    (root / "out").symlink_to(tmp_path / "outside.txt")
    (root / "outdir").symlink_to(tmp_path)
    escaped: list[Path] = []
    found = [p.relative_to(root).as_posix() for p in files(root, escaped.append)]
    assert found == ["sub/a.txt"]  # each real directory once, under its real name
    assert sorted(p.name for p in escaped) == ["out", "outdir"]


# --------------------------------------------------------------------------------- crafted file names


def crafted_export(tmp_path: Path, names: list[str]) -> Path:
    """The hand-built neptune export with extra file attributes of the given names, each pointing at the
    export's real weights file."""
    export = tmp_path / "source"
    shutil.copytree(HAND_BUILT, export, ignore=shutil.ignore_patterns("build.py"))
    project = export / "data" / safe_path_part("acme/vision")
    part = sorted(project.glob(f"{safe_path_part('VIS-1')}_part_0*"))[0]
    table = pq.read_table(part)
    rows = table.to_pylist()
    weights = next(row for row in rows if row["attribute_path"] == "model/weights")
    rows.extend({**weights, "attribute_path": name} for name in names)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), part)
    return export


def test_file_names_leaving_the_destination_are_refused_and_counted(tmp_path: Path) -> None:
    absolute = tmp_path / "cwd" / "escaped-absolute"
    export = crafted_export(tmp_path, ["../../../../../escaped-relative", str(absolute), "model//weights"])
    result, report = migrate_cli(tmp_path, f"neptune-export:{export}")
    assert result.returncode == 0, result.stderr
    assert not absolute.exists() and not list(tmp_path.rglob("escaped-*"))
    refused = {o["item"]: o for o in outcomes(report) if "unsafe path" in o["reason"]}
    assert set(refused) == {"run VIS-1/artifact ../../../../../escaped-relative.pt",
                            f"run VIS-1/artifact {absolute}.pt"}
    assert all(o["kind"] == OutcomeKind.UNSUPPORTED for o in refused.values())
    collided = [o for o in outcomes(report) if o["item"] == "run VIS-1/artifact model//weights.pt"]
    assert collided and "already taken by 'model/weights.pt'" in collided[0]["reason"]
    stored = list((tmp_path / "destination" / "mlflow-artifacts").rglob("weights.pt"))
    assert len(stored) == 1


# ------------------------------------------------------------------------------------ crafted symlinks


def test_symlinks_out_of_an_mlruns_store_are_not_followed(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(SECRET)
    root = tmp_path / "source" / "mlruns"
    write(root / "0" / "meta.yaml", "experiment_id: '0'\nname: Default\nlifecycle_stage: active\n")
    run = root / "0" / "aaa"
    write(run / "meta.yaml", "run_id: aaa\nrun_name: r\nexperiment_id: '0'\nstatus: 3\nstart_time: 1\n"
          "end_time: 2\nlifecycle_stage: active\n")
    write(run / "params" / "lr", "0.1")
    write(run / "artifacts" / "ok.txt", "fine")
    (run / "params" / "stolen").symlink_to(tmp_path / "token")
    (run / "artifacts" / "token").symlink_to(tmp_path / "token")
    (run / "artifacts" / "secrets").symlink_to(tmp_path, target_is_directory=True)
    (run / "metrics").mkdir()
    (run / "metrics" / "loss").symlink_to(tmp_path / "token")
    result, report = migrate_cli(tmp_path, str(root))
    assert result.returncode == 0, result.stderr
    reasons = [o for o in outcomes(report) if "leads out of the source root" in o["reason"]]
    names = {Path(o["item"].removeprefix("file ")).name for o in reasons}
    assert names == {"stolen", "token", "secrets", "loss"}
    assert len(list((tmp_path / "destination" / "mlflow-artifacts").rglob("ok.txt"))) == 1


def test_symlinks_out_of_a_tensorboard_log_directory_are_not_followed(tmp_path: Path) -> None:
    from tensorboardX import SummaryWriter

    (tmp_path / "token").write_text(SECRET)
    logdir = tmp_path / "source" / "logs"
    with SummaryWriter(str(logdir / "run-1")) as events:
        events.add_scalar("loss", 1.0, 0)
    (logdir / "run-1" / "notes.txt").write_text("fine")
    (logdir / "run-1" / "token").symlink_to(tmp_path / "token")
    (logdir / "run-1" / "outside").symlink_to(tmp_path, target_is_directory=True)
    result, report = migrate_cli(tmp_path, f"tensorboard:{logdir}")
    assert result.returncode == 0, result.stderr
    escaped = {o["item"] for o in outcomes(report) if "leads out of the source root" in o["reason"]}
    assert escaped == {"file run-1/token", "file run-1/outside"}


# ------------------------------------------------------------------------------------ credentials


def test_credentials_in_urls_and_variables_never_reach_output_or_reports(tmp_path: Path) -> None:
    from ferryman_dev.lifetime import free_port

    source = f"https://alice:{SECRET}@127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FERRYMAN_"))}
    result = subprocess.run(
        [sys.executable, "-m", "ferryman", "migrate", "--from", source, "--to",
         f"sqlite:///{tmp_path / 'mlflow.db'}", "--report", str(tmp_path / "report.json")],
        capture_output=True, text=True, timeout=120,
        env={**env, "FERRYMAN_SOURCE_TOKEN": SECRET + "-token"},
    )
    assert result.returncode == 2
    assert "https://alice:***@127.0.0.1" in result.stderr and "unreachable" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


def test_meta_files_out_of_the_store_or_full_of_aliases_are_not_read(tmp_path: Path) -> None:
    from ferryman.trackers.mlflow.filestore import FileStoreReader
    from tests.convert.test_hostile_manifests import alias_bomb
    from tests.trackers.contract import read_all

    (tmp_path / "outside.yaml").write_text(f"run_id: aaa\nrun_name: {SECRET}\nexperiment_id: '0'\n")
    root = tmp_path / "mlruns"
    write(root / "0" / "meta.yaml", "experiment_id: '0'\nname: Default\nlifecycle_stage: active\n")
    (root / "0" / "aaa").mkdir()
    (root / "0" / "aaa" / "meta.yaml").symlink_to(tmp_path / "outside.yaml")
    write(root / "0" / "bbb" / "meta.yaml", alias_bomb() + "run_id: bbb\nrun_name: *i\n")
    reader = FileStoreReader(root)
    started = time.monotonic()
    runs = read_all(reader)
    assert time.monotonic() - started < 5
    assert not runs and SECRET not in repr(reader.outcomes())
    reasons = {Path(o.item.removeprefix("file ")).parent.name: o.reason for o in reader.outcomes()}
    assert "leads out of the source root" in reasons["aaa"] and "alias bomb" in reasons["bbb"]


def test_wandb_run_files_out_of_the_directory_or_full_of_aliases_are_not_read(tmp_path: Path) -> None:
    from ferryman.trackers.wandb.offline import WandbDirReader
    from tests.convert.test_hostile_manifests import alias_bomb
    from tests.trackers.contract import read_all

    (tmp_path / "token").write_text(f'{{"secret": "{SECRET}"}}')
    files_dir = tmp_path / "wandb" / "offline-run-20260101_000000-hostile1" / "files"
    write(files_dir / "config.yaml", alias_bomb() + "lr: *i\n")
    write(files_dir / "wandb-history.jsonl", '{"_step": 0, "loss": 1.0}\n')
    (files_dir / "wandb-summary.json").symlink_to(tmp_path / "token")
    (files_dir / "wandb-metadata.json").symlink_to(tmp_path / "token")
    reader = WandbDirReader(tmp_path / "wandb")
    started = time.monotonic()
    runs = read_all(reader)
    assert time.monotonic() - started < 5
    assert SECRET not in repr(runs) + repr(reader.outcomes())
    reasons = " ".join(o.reason for o in reader.outcomes())
    assert "alias bomb" in reasons and "leads out of the source root" in reasons
