"""The cross-tracker contract: a synthetic source holding every kind of object a tracker can store
(`contract.SyntheticSource`) migrated into every destination. Each object is in the destination, verified by
the engine point by point, or a counted outcome with a reason; a second run writes nothing and says so. Real
destinations: MLflow's SQL store on SQLite, wandb SDK offline runs, TensorBoard event files, neptune-exporter
parquet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.migrate.copy import Migration
from ferryman.migrate.plan import MigrationRequest
from ferryman.migrate.report import MigrationReport
from ferryman_dev.wandb_runs import quiet_offline_env
from tests.trackers.contract import DESTINATIONS, Destination, SyntheticSource

SOURCE = "synthetic-source"  # classified as an MLflow file store: identities read mlflow:exp-x/<run>


@pytest.fixture(autouse=True)
def quiet_wandb() -> Iterator[None]:
    with quiet_offline_env():
        yield


def migrate_synthetic(destination: str, **options: object) -> MigrationReport:
    return Migration(MigrationRequest(SOURCE, destination, **options), reader=SyntheticSource()).run()


@pytest.mark.parametrize("destination", DESTINATIONS, ids=lambda destination: destination.name)
def test_every_object_is_in_the_destination_or_a_counted_outcome(
    destination: Destination, tmp_path: Path
) -> None:
    uri = destination.uri(tmp_path)
    report = migrate_synthetic(uri, include_deleted=True, workers=2)
    assert report.ok and report.verified, report.summary()  # verification agrees with what was written
    assert all(outcome.reason for outcome in report.outcomes)
    assert {run.source: run.destination is not None for run in report.runs} == {
        f"mlflow:exp-x/{key}": True for key in ("p", "c", "e", "d")
    }
    said = {(outcome.kind.value, outcome.item.rsplit("/", 1)[-1]) for outcome in report.outcomes}
    if destination.name == "mlflow-sqlite":
        assert report.models == {"loggedModels": 1, "registeredModels": 1, "modelVersions": 1}
        assert ("truncated", "metric loss") in said  # ±inf stored as the largest doubles
    else:  # no registry, no dataset inputs, no deleted runs: each said
        assert report.models == {}
        assert {("unsupported", "registered model clf"), ("unsupported", "logged model clf"),
                ("unsupported", "dataset inputs"), ("unsupported", "deleted")} <= said, report.summary()
    if destination.name == "neptune-export":
        assert ("truncated", "metric tokens") in said  # steps of 10^12 and more
    if destination.name == "tensorboard":
        assert any(o.kind.value == "renamed" and o.item.endswith("/artifact tb/events.out.tfevents.1.laptop")
                   for o in report.outcomes)

    again = migrate_synthetic(uri, include_deleted=True)
    assert again.ok, again.summary()
    summary = again.to_dict()["summary"]
    written = summary["created"], summary["resumed"], summary["pointsWritten"], summary["artifactsWritten"]
    assert written == (0, 0, 0, 0), again.summary()
    assert "nothing to write" in again.summary()


def test_deleted_runs_are_counted_when_left_out(tmp_path: Path) -> None:
    report = migrate_synthetic(f"neptune-export:{tmp_path / 'out'}")
    assert report.ok, report.summary()
    assert [run.source for run in report.runs if run.source.endswith("/d")] == []
    assert [(o.kind.value, o.item) for o in report.outcomes if o.item.endswith("/d")] == [
        ("skipped", "run mlflow:exp-x/d")
    ]
