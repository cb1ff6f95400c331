"""The W&B run-directory reader against runs written by the real wandb SDK (offline mode), damaged copies of
them, hand-built logs and the pre-0.10 file layout."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from ferryman.migrate.copy import migrate
from ferryman.migrate.plan import MigrationRequest
from ferryman.trackers.model import MetricBatch, Outcome, OutcomeKind, Run, RunStatus
from ferryman.trackers.registry import open_reader
from ferryman.trackers.wandb.datastore import BLOCK_LEN, Damage, LogWriter, NotAWandbLog, iter_payloads
from ferryman.trackers.wandb.offline import OBJECTS_FILE, WandbDirReader, first_field
from ferryman_dev.wandb_runs import LoggedRun, write_sdk_run, write_synthetic_log
from tests.trackers.contract import point_lists, same_points


@pytest.fixture(scope="module")
def sdk_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LoggedRun, LoggedRun, LoggedRun]:
    """One finished run with media and an artifact, and one run resumed once (two directories, one id)."""
    root = tmp_path_factory.mktemp("wandb-sdk")
    main = write_sdk_run(root, "mainrun1")
    first = write_sdk_run(root, "resumed1", rows=4, media=False, artifact=False)
    second = write_sdk_run(
        root, "resumed1", rows=3, media=False, artifact=False, resume=True, extra_step_offset=100
    )
    return root, main, first, second


def runs_by_key(reader: WandbDirReader) -> dict[str, Run]:
    return {run.key: run for experiment in reader.experiments() for run in reader.runs(experiment)}


def test_history_is_read_point_by_point(sdk_root: tuple[Path, LoggedRun, LoggedRun, LoggedRun]) -> None:
    root, main, _, _ = sdk_root
    reader = open_reader(f"wandb:{root}")
    run = runs_by_key(reader)["mainrun1"]
    points = point_lists(reader.metrics(run))
    for key, expected in main.points.items():
        assert same_points(expected, points[key]), key
    # the summary value no history row carries is one point at the last step
    assert points["best_loss"] == [(60, main.points["loss"][-1][1] + 1000, 0.125)]
    assert set(points) == {"loss", "acc", "best_loss"}


def test_run_metadata(sdk_root: tuple[Path, LoggedRun, LoggedRun, LoggedRun]) -> None:
    root, main, _, _ = sdk_root
    reader = WandbDirReader(root)
    assert [e.name for e in reader.experiments()] == ["ferryman-test"]
    run = runs_by_key(reader)["mainrun1"]
    assert run.name == main.name and run.notes == main.notes and run.status == RunStatus.FINISHED
    assert json.loads(run.tags["wandb.tags"]) == main.tags
    assert run.tags["wandb.group"] == "group-a" and run.tags["wandb.job_type"] == "train"
    assert run.tags["wandb.sdk_version"] == "0.31.0" and run.tags["wandb.state"] == "finished"
    assert run.params == {
        "lr": "0.01",
        "optimizer.name": "adam",
        "optimizer.betas": "[0.9, 0.99]",
        "epochs": "3",
        "label": "x",
    }
    assert run.start_time is not None and run.end_time is not None and run.end_time >= run.start_time


def test_media_objects_and_artifact_manifests(sdk_root: tuple[Path, LoggedRun, LoggedRun, LoggedRun]) -> None:
    root, _, _, _ = sdk_root
    reader = WandbDirReader(root)
    run = runs_by_key(reader)["mainrun1"]
    list(reader.metrics(run))
    artifacts = {a.path: a for a in reader.artifacts(run)}
    images = [p for p in artifacts if p.startswith("media/images/") and p.endswith(".png")]
    assert len(images) == 1
    with artifacts[images[0]].open() as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"
    objects = [json.loads(line) for line in artifacts[OBJECTS_FILE].open().read().decode().splitlines()]
    assert {(o["key"], o["step"]) for o in objects} == {("note", 60), ("sample", 60)}
    assert next(o for o in objects if o["key"] == "sample")["value"]["path"] == images[0]
    manifest = json.loads(
        artifacts["wandb-artifacts/000-dataset-dataset-mainrun1/manifest.json"].open().read()
    )
    assert [(c["path"], c["size"]) for c in manifest["contents"]] == [("data.txt", 10)]
    stored = {o.item for o in reader.outcomes() if o.kind == OutcomeKind.STORED_AS_ARTIFACT}
    assert stored == {"run mainrun1/metric note", "run mainrun1/metric sample"}


def test_resumed_run_is_one_run(sdk_root: tuple[Path, LoggedRun, LoggedRun, LoggedRun]) -> None:
    root, _, first, second = sdk_root
    reader = WandbDirReader(root)
    run = runs_by_key(reader)["resumed1"]
    assert run.tags["wandb.resumed"] == "true" and run.status == RunStatus.FINISHED
    points = point_lists(reader.metrics(run))
    for key in ("loss", "acc"):
        assert same_points(first.points[key] + second.points[key], points[key]), key


def copy_run(source: Path, target_root: Path) -> tuple[Path, Path]:
    target = target_root / "wandb" / source.name
    shutil.copytree(source, target)
    return target, next(target.glob("*.wandb"))


def rewrite_log(log: Path, keep: object) -> None:
    """Re-frame a log's records, keeping those for which `keep(payload)` is true."""
    payloads = list(iter_payloads(log.read_bytes(), []))
    with log.open("wb") as stream:
        writer = LogWriter(stream)
        for payload in payloads:
            if keep(payload):  # type: ignore[operator]
                writer.write(payload)


def test_run_without_exit_record_is_crashed(
    sdk_root: tuple[Path, LoggedRun, LoggedRun, LoggedRun], tmp_path: Path
) -> None:
    _, main, _, _ = sdk_root
    _, log = copy_run(main.run_dir, tmp_path)
    rewrite_log(log, lambda payload: first_field(payload) not in (18, 20, 22))  # exit, final, footer
    reader = WandbDirReader(tmp_path)
    run = runs_by_key(reader)["mainrun1"]
    assert run.status == RunStatus.FAILED and run.tags["wandb.state"] == "crashed"
    assert same_points(main.points["loss"], point_lists(reader.metrics(run))["loss"])
    assert [o.kind for o in reader.outcomes() if o.item == "run mainrun1"] == [OutcomeKind.TRUNCATED]


def test_bad_checksum_costs_one_block(tmp_path: Path) -> None:
    log = tmp_path / "wandb" / "offline-run-20260101_000000-big1" / "run-big1.wandb"
    total = write_synthetic_log(log, rows=3000, keys=3, run_id="big1")
    data = bytearray(log.read_bytes())
    assert len(data) > 3 * BLOCK_LEN
    data[BLOCK_LEN + 100] ^= 0xFF  # inside the second block
    log.write_bytes(bytes(data))
    reader = WandbDirReader(tmp_path)
    run = runs_by_key(reader)["big1"]
    points = sum(len(b) for b in reader.metrics(run))
    damaged = [o for o in reader.outcomes() if "bad checksum" in o.reason or "split record" in o.reason]
    assert damaged and all(o.kind == OutcomeKind.TRUNCATED for o in damaged)
    assert total * 0.9 < points < total  # one block's rows lost, everything else read
    assert run.status == RunStatus.FINISHED


def test_truncated_log_keeps_what_precedes_the_cut(
    sdk_root: tuple[Path, LoggedRun, LoggedRun, LoggedRun], tmp_path: Path
) -> None:
    _, main, _, _ = sdk_root
    _, log = copy_run(main.run_dir, tmp_path)
    payloads = list(iter_payloads(log.read_bytes(), []))
    history = [i for i, p in enumerate(payloads) if first_field(p) == 2]
    cut_after = history[9]  # keep ten history rows, then a half record
    with log.open("wb") as stream:
        writer = LogWriter(stream)
        for payload in payloads[: cut_after + 1]:
            writer.write(payload)
        writer.write(payloads[cut_after + 1])
    log.write_bytes(log.read_bytes()[:-5])
    reader = WandbDirReader(tmp_path)
    run = runs_by_key(reader)["mainrun1"]
    assert same_points(main.points["loss"][:10], point_lists(reader.metrics(run))["loss"])
    reasons = [o.reason for o in reader.outcomes()]
    assert any("truncated record" in r for r in reasons) and run.status == RunStatus.FAILED


def torn_copy(main: LoggedRun, root: Path) -> None:
    """A copy of `main` whose .wandb log lost its last four history rows (steps 51 to 60) but kept the
    summary, which is at step 60."""
    _, log = copy_run(main.run_dir, root)
    history = [p for p in iter_payloads(log.read_bytes(), []) if first_field(p) == 2]
    rewrite_log(log, lambda payload: payload not in history[-4:])


def test_summary_values_newer_than_a_torn_history_are_points_at_the_summary_step(
    sdk_root: tuple[Path, LoggedRun, LoggedRun, LoggedRun], tmp_path: Path
) -> None:
    _, main, _, _ = sdk_root
    torn_copy(main, tmp_path)
    reader = WandbDirReader(tmp_path)
    run = runs_by_key(reader)["mainrun1"]
    points = point_lists(reader.metrics(run))
    summary_time = main.points["loss"][-1][1] + 1000  # the final row's _timestamp, one second later
    for key in ("loss", "acc"):  # last logged at steps 57 and 54: one point at the summary's step 60
        kept = [p for p in main.points[key] if p[0] <= 48]
        assert same_points([*kept, (60, summary_time, main.points[key][-1][2])], points[key]), key
    approximate = [o for o in reader.outcomes() if o.kind == OutcomeKind.APPROXIMATE]
    assert sorted(o.item for o in approximate) == ["run mainrun1/metric acc", "run mainrun1/metric loss"]
    assert all("summary at step 60" in o.reason and "ends at step 48" in o.reason for o in approximate)


def test_points_recovered_from_the_summary_migrate_verify_and_resume(
    sdk_root: tuple[Path, LoggedRun, LoggedRun, LoggedRun], tmp_path: Path
) -> None:
    _, main, _, _ = sdk_root
    torn_copy(main, tmp_path / "source")
    source, destination = f"wandb:{tmp_path / 'source'}", f"tensorboard:{tmp_path / 'destination'}"
    request = MigrationRequest(source=source, destination=destination)
    report = migrate(request)
    assert report.ok, report.to_dict()
    assert report.to_dict()["summary"]["outcomes"]["approximate"] == 2
    assert report.source_totals == report.destination_totals
    again = migrate(request)
    assert again.ok and again.points_written == 0


def test_unknown_record_type_is_counted(tmp_path: Path) -> None:
    log = tmp_path / "run-20260101_000000-unk1" / "run-unk1.wandb"
    write_synthetic_log(log, rows=10, keys=2, run_id="unk1")
    payloads = list(iter_payloads(log.read_bytes(), []))
    unknown = bytes([0x08, 0x07, 0x9A, 0x06, 0x03]) + b"new"  # num=7, then field 99 (not in the proto): "new"
    with log.open("wb") as stream:
        writer = LogWriter(stream)
        for payload in [*payloads[:3], unknown, unknown, *payloads[3:]]:
            writer.write(payload)
    reader = open_reader(f"wandb:{tmp_path / 'run-20260101_000000-unk1'}")
    run = runs_by_key(reader)["unk1"]
    assert sum(len(b) for b in reader.metrics(run)) == 20
    assert (
        Outcome(
            OutcomeKind.UNSUPPORTED,
            "run unk1/file run-unk1.wandb",
            f"{log}: 2 records of unknown type (field 99) skipped",
        )
        in reader.outcomes()
    )


def test_empty_log_missing_config_and_dangling_symlink(tmp_path: Path) -> None:
    run_dir = tmp_path / "wandb" / "run-20260101_000000-empty1"
    (run_dir / "files").mkdir(parents=True)
    (run_dir / "run-empty1.wandb").write_bytes(b"")
    (run_dir / "files" / "output.log").write_text("hello\n")
    (run_dir / "files" / "gone.txt").symlink_to("/nonexistent/gone.txt")
    reader = WandbDirReader(tmp_path)
    run = runs_by_key(reader)["empty1"]
    assert run.params == {} and list(reader.metrics(run)) == []
    assert [a.path for a in reader.artifacts(run)] == ["output.log"]
    kinds = {(o.item, o.kind) for o in reader.outcomes()}
    assert ("run empty1/file run-empty1.wandb", OutcomeKind.UNREADABLE) in kinds
    assert ("run empty1/file gone.txt", OutcomeKind.UNREADABLE) in kinds
    assert ("run empty1", OutcomeKind.TRUNCATED) in kinds
    assert run.experiment_key == tmp_path.name  # no project known: the root's directory name


def test_legacy_layout(tmp_path: Path) -> None:
    root = tmp_path / "legacy-project" / "wandb"
    run_dir = root / "run-20191230_142345-old1"
    run_dir.mkdir(parents=True)
    (root / "settings").write_text("[default]\nproject = old-project\nentity = someone\n")
    (run_dir / "config.yaml").write_text(
        "wandb_version: 1\n_wandb:\n  desc: null\n  value:\n    cli_version: 0.8.19\n"
        "lr:\n  desc: null\n  value: 0.01\n"
    )
    rows = [
        {"loss": 1.0 / (i + 1), "label": "x", "_step": i, "_runtime": 1.0, "_timestamp": 1577715800.25 + i}
        for i in range(5)
    ]
    (run_dir / "wandb-history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    (run_dir / "wandb-events.jsonl").write_text(
        json.dumps({"system.cpu": 12.5, "system.gpu.0.temp": 40, "_wandb": True, "_timestamp": 1577715830})
        + "\n"
    )
    (run_dir / "wandb-summary.json").write_text(
        json.dumps({"loss": 0.2, "final_acc": 0.9, "_step": 4, "_timestamp": 1577715804.25})
    )
    (run_dir / "wandb-metadata.json").write_text(
        json.dumps(
            {
                "startedAt": "2019-12-30T14:23:45.621057",
                "state": "finished",
                "exitcode": 0,
                "username": "pablo",
                "host": "desk",
            }
        )
    )
    reader = WandbDirReader(tmp_path / "legacy-project")
    run = runs_by_key(reader)["old1"]
    assert run.experiment_key == "old-project" and run.user == "pablo" and run.status == RunStatus.FINISHED
    assert run.params == {"lr": "0.01"} and run.start_time == 1577715825621
    assert run.tags["wandb.sdk_version"] == "0.8.19"
    points = point_lists(reader.metrics(run))
    assert points["loss"] == [(i, 1577715800250 + i * 1000, 1.0 / (i + 1)) for i in range(5)]
    assert points["final_acc"] == [(4, 1577715804250, 0.9)]
    assert points["system/cpu"] == [(0, 1577715830000, 12.5)]
    batches = list(reader.metrics(run))
    assert {b.key for b in batches if b.system} == {"system/cpu", "system/gpu.0.temp"}
    assert any("line 6 is not JSON" in o.reason for o in reader.outcomes())


def test_framing_round_trip_across_blocks() -> None:
    payloads = [b"", b"x", b"y" * (BLOCK_LEN - 14), b"z" * 100_000, b"w" * 7, b"v" * (BLOCK_LEN * 2)]
    stream = io.BytesIO()
    writer = LogWriter(stream)
    for payload in payloads:
        writer.write(payload)
    damage: list[Damage] = []
    assert list(iter_payloads(stream.getvalue(), damage)) == payloads and damage == []
    with pytest.raises(NotAWandbLog):
        list(iter_payloads(b"LevelDB!", []))


def test_metric_batches_are_bounded(tmp_path: Path) -> None:
    log = tmp_path / "run-20260101_000000-many1" / "run-many1.wandb"
    write_synthetic_log(log, rows=12_000, keys=1, run_id="many1")
    reader = WandbDirReader(log.parent)
    batches: list[MetricBatch] = list(reader.metrics(runs_by_key(reader)["many1"]))
    assert [len(b) for b in batches] == [5000, 5000, 2000]
    assert batches[1].steps[0] == 5000 and batches[1].timestamps[0] == 1_700_000_000_000 + 50_000


def test_corpus_style_roots_are_found_once(sdk_root: tuple[Path, LoggedRun, LoggedRun, LoggedRun]) -> None:
    root, _, _, _ = sdk_root
    reader = WandbDirReader(root)
    assert sorted(runs_by_key(reader)) == ["mainrun1", "resumed1"]  # latest-run symlink not read twice
