"""The W&B destination: runs written through the real wandb SDK (offline), read back by ferryman's reader."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from ferryman.trackers.model import (
    COMPLETE_TAG,
    SOURCE_TAG,
    Artifact,
    Experiment,
    MetricBatch,
    OutcomeKind,
    Run,
    RunStatus,
)
from ferryman.trackers.registry import open_writer
from ferryman.trackers.wandb.datastore import iter_payloads
from ferryman.trackers.wandb.offline import first_field
from ferryman.trackers.wandb.writer import WandbWriter, run_id_for
from ferryman_dev.wandb_runs import quiet_offline_env
from tests.trackers.contract import same_points

SOURCE = "mlflow:http://127.0.0.1:5000#run/abc"
START = 1_760_000_000_000

# loss: steps out of order, a duplicate step, a negative step, and per-point timestamps that differ within a
# step from the other keys; acc: a NaN; system/cpu: samples at their own timestamps, gpu_temp: unusual steps.
BATCHES = [
    MetricBatch(
        "loss",
        [0, 2, 1, 2, -1, 5],
        [START + 10, START + 30, START + 20, START + 31, START + 5, START + 60],
        [1.0, 0.5, 0.75, 0.45, 9.0, 0.1],
    ),
    MetricBatch(
        "acc", [0, 1, 2, 5], [START + 10, START + 21, START + 30, START + 60], [0.1, math.nan, 0.3, 0.9]
    ),
    MetricBatch(
        "system/cpu", [0, 1, 2], [START + 1000, START + 2000, START + 3000], [10.0, 20.0, 30.0], system=True
    ),
    MetricBatch("gpu_temp", [7, 9], [START + 1000, START + 2500], [40.0, 41.0], system=True),
]
FILES = {"model/weights.bin": b"\x00\x01" * 1000, "requirements.txt": b"torch==2.5\n", "notes.md": b"# hi\n"}


def source_run() -> Run:
    return Run(
        key="abc",
        experiment_key="1",
        name="my run",
        status=RunStatus.KILLED,
        start_time=START,
        end_time=START + 99_000,
        user="alice",
        tags={"team": "vision", "wandb.tags": '["a", "b"]'},
        notes="some notes",
        params={"lr": "0.001", "layers": "[64, 64]", "long": "x" * 600},
    )


def points_of(batches: list[MetricBatch]) -> dict[tuple[str, bool], list[tuple[int, int, float]]]:
    out: dict[tuple[str, bool], list[tuple[int, int, float]]] = {}
    for batch in batches:
        out.setdefault((batch.key, batch.system), []).extend(
            zip(batch.steps, batch.timestamps, batch.values, strict=True)
        )
    return {k: sorted(v, key=lambda p: (p[0], p[1])) for k, v in out.items()}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("wandb-dest")
    writer = open_writer(f"wandb:{root}")
    project = writer.ensure_experiment(Experiment(key="1", name="vision"))
    run = source_run()
    key = writer.create_run(project, run, SOURCE)
    assert key == run_id_for(SOURCE)
    writer.write_params(key, run.params)
    writer.write_tags(key, run.tags, run.notes)
    writer.write_metrics(key, BATCHES[:2])
    # a crash here: a new writer resumes from the staged points
    writer = WandbWriter(root)
    assert writer.high_water_marks(key) == {"loss": 6, "acc": 4}
    assert writer.migrated_runs("vision")[SOURCE].complete is False
    writer.write_metrics(key, BATCHES[2:])
    for path, blob in FILES.items():
        assert (
            writer.write_artifact(key, Artifact(path, lambda blob=blob: io.BytesIO(blob), len(blob))) is None
        )
    with quiet_offline_env():
        writer.finish_run(key, run)
    return root, key


def test_round_trip_is_exact(written: tuple[Path, str]) -> None:
    root, key = written
    reader = WandbWriter(root).reader()
    [experiment] = list(reader.experiments())
    [run] = list(reader.runs(experiment))
    expected = source_run()
    assert (
        run.key,
        experiment.name,
        run.name,
        run.status,
        run.start_time,
        run.end_time,
        run.user,
        run.notes,
    ) == (key, "vision", "my run", RunStatus.KILLED, START, START + 99_000, "alice", "some notes")
    assert run.params == expected.params
    assert run.tags == {**expected.tags, SOURCE_TAG: SOURCE, COMPLETE_TAG: "true"}
    got = points_of(list(reader.metrics(run)))
    want = points_of(BATCHES)
    assert got.keys() == want.keys()
    for series, points in want.items():
        assert same_points(points, got[series]), series
    files = {a.path: a.open().read() for a in reader.artifacts(run)}
    assert files == FILES


def test_w_and_b_sees_an_ordinary_run(written: tuple[Path, str]) -> None:
    """The directory `wandb sync` uploads: labels, steps in order, points W&B cannot hold set aside."""
    root, key = written
    [run_dir] = list((root / "wandb").glob(f"offline-run-*-{key}"))
    log = run_dir / f"run-{key}.wandb"
    from wandb.proto import wandb_internal_pb2 as pb

    steps = []
    for payload in iter_payloads(log.read_bytes(), []):
        if first_field(payload) in (2, 17):
            record = pb.Record()
            record.ParseFromString(payload)
            if record.HasField("run"):
                assert list(record.run.tags) == ["a", "b"] and record.run.display_name == "my run"
            else:
                steps.append(record.history.step.num)
    assert steps == sorted(steps) == [0, 1, 2, 5]
    leftovers = [
        json.loads(line)
        for line in (run_dir / "files" / "ferryman-unrepresentable-points.jsonl").read_text().splitlines()
    ]
    assert {(p["key"], p["step"]) for p in leftovers} == {("loss", -1), ("loss", 2)}
    assert (run_dir / "files" / "ferryman-source" / "requirements.txt").read_bytes() == FILES[
        "requirements.txt"
    ]


def test_rerun_is_idempotent(written: tuple[Path, str]) -> None:
    root, key = written
    writer = WandbWriter(root)
    found = writer.migrated_runs("vision")[SOURCE]
    assert found.complete and found.key == key
    assert writer.high_water_marks(key) == {"loss": 6, "acc": 4, "system/cpu": 3, "gpu_temp": 2}
    assert writer.stored_artifacts(key) == {p: len(b) for p, b in FILES.items()}
    assert writer.create_run("vision", source_run(), SOURCE) == key
    writer.finish_run(key, source_run())  # already complete: nothing is written twice
    assert len(list((root / "wandb").glob(f"offline-run-*-{key}"))) == 1
    assert (
        writer.write_artifact(key, Artifact("../escape", lambda: io.BytesIO(b""))).kind
        == OutcomeKind.UNSUPPORTED
    )


def test_neptune_workspace_project_becomes_a_w_and_b_project(tmp_path: Path) -> None:
    """Neptune experiments are `workspace/project`, a name W&B refuses: the runs go to project
    `workspace-project`, and verification and re-runs find them there."""
    from ferryman.migrate.copy import migrate
    from ferryman.migrate.plan import MigrationRequest

    export = Path(__file__).parent / "data" / "neptune_export"
    request = MigrationRequest(f"neptune-export:{export}", f"wandb:{tmp_path / 'out'}")
    with quiet_offline_env():
        report = migrate(request)
        assert report.ok and report.verified, report.summary()
        assert report.source_totals == report.destination_totals
        reader = open_writer(f"wandb:{tmp_path / 'out'}").reader()
        assert [e.name for e in reader.experiments()] == ["acme-vision"]
        again = migrate(request)
    assert again.ok and again.points_written == 0, again.summary()
