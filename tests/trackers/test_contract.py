"""Every tracker destination against the same contract: round trip, resume after a crash, the ledger's
verdicts, and bad input. Real components only: MLflow's SQL store on SQLite, W&B runs written by the wandb SDK
offline, TensorBoard event files, neptune-exporter parquet files; the round trip, the crash and resume and the
ledger also into an MLflow database on a real PostgreSQL server, the crash and resume on MariaDB as well (the
bulk path)."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.migrate.ledger import Action, after_high_water, decide
from ferryman.trackers.model import Run, TrackerWriter
from ferryman.trackers.registry import Credentials, open_reader, open_writer
from ferryman_dev.wandb_runs import quiet_offline_env
from tests.trackers.contract import (
    DATABASES,
    DESTINATIONS,
    EXPERIMENT,
    FILES,
    PARENT,
    RUN,
    SOURCES,
    DatabaseDestination,
    Destination,
    artifact,
    batches,
    identity,
    verify,
)

POINTS = 2_500


@pytest.fixture(autouse=True)
def quiet_wandb() -> Iterator[None]:
    with quiet_offline_env():
        yield


@pytest.fixture(params=DESTINATIONS, ids=lambda destination: destination.name)
def destination(request: pytest.FixtureRequest) -> Destination:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=[*DESTINATIONS, *DATABASES], ids=lambda destination: destination.name)
def destination_uri(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The URI of a new store of every destination, database servers included."""
    if isinstance(request.param, DatabaseDestination):
        monkeypatch.chdir(tmp_path)  # a server database's artifacts go below the working directory
        return str(request.getfixturevalue(request.param.fixture))
    return str(request.param.uri(tmp_path))


def start(writer: TrackerWriter) -> tuple[str, str, str]:
    """The experiment, the parent run (complete) and RUN created with its params and tags: (experiment key,
    parent key, run key)."""
    experiment_key = writer.ensure_experiment(EXPERIMENT)
    parent_key = writer.create_run(experiment_key, PARENT, identity(PARENT))
    writer.finish_run(parent_key, PARENT)
    key = writer.create_run(experiment_key, RUN, identity(RUN))
    writer.set_parent(key, parent_key)
    writer.write_params(key, RUN.params)
    writer.write_tags(key, RUN.tags, RUN.notes)
    return experiment_key, parent_key, key


WITH_POSTGRESQL = pytest.mark.parametrize(
    "destination_uri", [*DESTINATIONS, DATABASES[0]], indirect=True, ids=lambda destination: destination.name
)


@WITH_POSTGRESQL
def test_round_trip_verifies(destination_uri: str) -> None:
    writer = open_writer(destination_uri, Credentials())
    experiment_key, parent_key, key = start(writer)
    assert writer.ensure_experiment(EXPERIMENT) == experiment_key
    writer.write_metrics(key, batches(POINTS))
    for path in FILES:
        assert writer.write_artifact(key, artifact(path)) is None
    writer.finish_run(key, RUN)
    assert verify(writer, experiment_key, parent_key, batches(POINTS)) == []
    writer.close()


def test_resume_after_a_crash_loses_and_duplicates_nothing(destination_uri: str) -> None:
    uri = destination_uri
    writer = open_writer(uri, Credentials())
    experiment_key, parent_key, key = start(writer)
    handed = batches(POINTS // 2)
    writer.write_metrics(key, handed)
    writer.write_artifact(key, artifact("requirements.txt"))
    del writer  # the process dies: nothing is closed or finished
    gc.collect()

    again = open_writer(uri, Credentials())
    found = again.migrated_runs(experiment_key)[identity(RUN)]
    assert (found.key, found.complete) == (key, False)
    marks = again.high_water_marks(key)
    assert all(marks.get(b.key, 0) <= len(b) for b in handed), marks  # never more than was handed over
    again.write_params(key, RUN.params)
    again.write_tags(key, RUN.tags, RUN.notes)
    again.write_metrics(key, list(after_high_water(batches(POINTS), marks)))
    stored = again.stored_artifacts(key)
    for path, data in FILES.items():
        if stored.get(path) != len(data):
            again.write_artifact(key, artifact(path))
    again.finish_run(key, RUN)
    assert verify(again, experiment_key, parent_key, batches(POINTS)) == []
    again.close()


@WITH_POSTGRESQL
def test_the_ledger_skips_a_finished_run_until_it_moves_on(destination_uri: str) -> None:
    writer = open_writer(destination_uri, Credentials())
    experiment_key, _, key = start(writer)
    assert decide(RUN, writer.migrated_runs(experiment_key)[identity(RUN)]) is Action.RESUME  # not finished
    writer.write_metrics(key, batches(10))
    writer.finish_run(key, RUN)
    writer.close()
    found = open_writer(destination_uri, Credentials()).migrated_runs(experiment_key)
    assert found[identity(RUN)].complete and found[identity(PARENT)].complete
    assert decide(RUN, found[identity(RUN)]) is Action.SKIP
    moved_on = Run(**{**{name: getattr(RUN, name) for name in RUN.__slots__}, "end_time": RUN.end_time + 1})
    assert decide(moved_on, found[identity(RUN)]) is Action.RESUME


def test_a_destination_that_is_a_file_is_refused_by_name(destination: Destination, tmp_path: Path) -> None:
    location = destination.location(tmp_path)
    location.write_text("not a tracker\n")
    with pytest.raises(Exception, match=re.escape(str(location))):
        writer = open_writer(destination.uri(tmp_path), Credentials())
        writer.ensure_experiment(EXPERIMENT)
    assert location.read_text() == "not a tracker\n"  # nothing written over it


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.name)
def test_a_missing_source_is_refused_by_name(source: Destination, tmp_path: Path) -> None:
    with pytest.raises(Exception, match=re.escape(str(source.location(tmp_path)))):
        list(open_reader(source.uri(tmp_path), Credentials()).experiments())
    assert list(tmp_path.iterdir()) == []  # nothing created at the source
