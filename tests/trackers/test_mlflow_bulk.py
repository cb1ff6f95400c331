"""The bulk path into MLflow databases against MLflow's own store, on SQLite, PostgreSQL and MariaDB servers.

The same points written by the bulk writer and by MLflow's `SqlAlchemyStore.log_batch` leave the same
`metrics` and `latest_metrics` rows, and a run (and a bare experiment) written with the bulk connection reads
back through MLflow's store as one MLflow wrote, and the bulk reader's SQL lists experiments and runs
(params, tags, dataset inputs) as MLflow's store does; the series digests the database computes equal those
computed point by point, and a point changed in the database fails verification, named; a killed write
leaves exact marks (the tracker contract's crash and resume runs on these databases in test_contract.py); a
database at another schema revision is refused (that a new database gets exactly MLflow's schema:
test_mlflow_schema.py).
"""

from __future__ import annotations

import dataclasses
import gc
import math
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy

from ferryman.migrate.validate import RunDigest, differing_points
from ferryman.trackers.mlflow.bulk import BulkWriter
from ferryman.trackers.mlflow.fields import MlflowError
from ferryman.trackers.mlflow.reader import MlflowReader
from ferryman.trackers.mlflow.writer import MlflowWriter
from ferryman.trackers.model import DatasetInput, Experiment, MetricBatch, Run
from ferryman.trackers.registry import Credentials, open_writer
from tests.trackers.contract import (
    EXPERIMENT,
    PARENT,
    RUN,
    T0,
    batches,
    identity,
)
from tests.trackers.test_contract import start

POINTS = 2_500


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def database(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The URI of a new MLflow database (artifacts of a server database go below the working directory)."""
    monkeypatch.chdir(tmp_path)
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mlflow.db'}"
    return str(request.getfixturevalue(f"{request.param}_database"))


def tricky() -> list[MetricBatch]:
    """Points that exercise every rule of MLflow's latest metric: steps out of order, NaN and infinities at
    the greatest step, ties broken by timestamp then value, a NaN tying a 0.0 (both stored as 0), repeats."""
    t = T0
    return [
        MetricBatch("loss", [3, 1, 7, 7, 7, 2], [t + 3, t + 1, t + 5, t + 9, t + 9, t], [0, 1, 1, 2, -1, 4]),
        MetricBatch("nan_last", [0, 1, 1], [t, t + 1, t + 1], [1.0, math.nan, math.nan]),
        MetricBatch("zero_then_nan", [4, 4], [t, t], [0.0, math.nan]),
        MetricBatch("nan_then_zero", [4, 4], [t, t], [math.nan, 0.0]),
        MetricBatch("inf", [5, 5, 5], [t, t, t], [math.inf, -math.inf, 3.0]),
        MetricBatch("repeat", [1, 1, 2, 1], [t, t, t, t], [0.25, 0.25, 0.5, 0.25]),
    ]


def rows(engine: sqlalchemy.Engine, table: str, run_id: str) -> list[tuple[object, ...]]:
    key = engine.dialect.identifier_preparer.quote("key")
    query = f"SELECT {key}, value, timestamp, step, is_nan FROM {table} WHERE run_uuid = :run"
    with engine.connect() as connection:
        found = connection.execute(sqlalchemy.text(query), {"run": run_id}).fetchall()
    return sorted((key, value, ts, step, bool(nan)) for key, value, ts, step, nan in found)


def test_the_bulk_path_stores_what_mlflow_log_batch_stores(database: str) -> None:
    from mlflow.entities import Metric

    writer = open_writer(database, Credentials())
    assert isinstance(writer, BulkWriter)
    experiment_key = writer.ensure_experiment(EXPERIMENT)
    bulk = writer.create_run(experiment_key, RUN, identity(RUN))
    theirs = writer.create_run(experiment_key, Run("mlflow", RUN.experiment_key, start_time=T0), "mlflow-own")
    series = tricky()
    for half in (series[:3], series[3:]):  # two writes: the latest metric carries across transactions
        writer.write_metrics(bulk, half)
    for batch in series:
        for step, timestamp, value in zip(batch.steps, batch.timestamps, batch.values, strict=True):
            writer.backend.tracking.log_batch(theirs, [Metric(batch.key, value, timestamp, step)], [], [])
    engine = writer.backend.tracking.engine
    for table in ("metrics", "latest_metrics"):
        assert rows(engine, table, bulk) == rows(engine, table, theirs), table
    store = writer.backend.tracking
    for key in {batch.key for batch in series}:
        ours = [(m.step, m.timestamp, m.value) for m in store.get_metric_history(bulk, key)]
        mlflows = [(m.step, m.timestamp, m.value) for m in store.get_metric_history(theirs, key)]
        assert repr(ours) == repr(mlflows), key  # repr: NaN equal to NaN
    assert writer.high_water_marks(bulk) == writer.high_water_marks(theirs)
    writer.close()


def test_a_run_written_in_bulk_reads_back_as_one_mlflow_wrote(database: str) -> None:
    writer = open_writer(database, Credentials())
    assert isinstance(writer, BulkWriter)
    through_store = MlflowWriter(writer.backend)
    experiment_key = writer.ensure_experiment(EXPERIMENT)
    store = writer.backend.tracking
    bare = {"bulk": writer.ensure_experiment(Experiment("b", "b1")), "mlflow": store.create_experiment("b2")}
    experiments = {
        name: (found.lifecycle_stage, found.artifact_location.replace(f"/{key}", "/<id>"), found.tags,
               found.creation_time == found.last_update_time, found.workspace)
        for name, key in bare.items() for found in [store.get_experiment(key)]
    }
    assert experiments["bulk"] == experiments["mlflow"]
    assert writer.ensure_experiment(Experiment("b", "b1")) == bare["bulk"]
    context = (("mlflow.data.context", "train"),)
    inputs = [DatasetInput("train", "d1", "local", '{"uri": "/data"}', tags=context)]
    found = {}
    for name, used in (("bulk", writer), ("mlflow", through_store)):
        parent = used.create_run(experiment_key, PARENT, f"{name}-parent")
        key = used.create_run(experiment_key, RUN, name)
        used.write_params(key, {"lr": "0.1", "layers": "50"})
        used.write_tags(key, {"team": "vision", "mlflow.runName": "renamed"}, "some notes")
        used.write_tags(key, {"team": "audio"})  # a tag set again is replaced
        used.set_parent(key, parent)
        used.finish_run(key, dataclasses.replace(RUN, inputs=inputs))
        nameless = used.create_run(
            experiment_key, Run("nameless", EXPERIMENT.key, start_time=T0), f"{name}-nameless"
        )
        runs = {"parent": parent, "run": key, "nameless": nameless}
        found[name] = {
            label: (
                run.info.status, run.info.start_time, run.info.end_time, run.info.lifecycle_stage,
                run.info.user_id, run.info.run_name if label != "nameless" else bool(run.info.run_name),
                run.info.artifact_uri.replace(run.info.run_id, "<id>"),
                run.data.params,
                {k: v.replace(parent, "<parent>").replace(name, "<source>") for k, v in run.data.tags.items()
                 if k != "mlflow.runName" or label != "nameless"},
            )
            for label, run in ((label, store.get_run(run_id)) for label, run_id in runs.items())
        }
    assert found["bulk"] == found["mlflow"]
    ours, theirs = writer.reader(), MlflowReader(writer.backend)
    by_key = {"key": lambda item: item.key}
    assert sorted(ours.experiments(), **by_key) == sorted(theirs.experiments(), **by_key)
    (experiment,) = ours.experiments([EXPERIMENT.name])
    assert sorted(ours.runs(experiment), **by_key) == sorted(theirs.runs(experiment), **by_key)
    assert [run.inputs for run in ours.runs(experiment) if run.inputs] == [inputs, inputs]
    writer.close()


def test_the_database_digests_series_as_they_are_digested_point_by_point(database: str) -> None:
    writer = open_writer(database, Credentials())
    assert isinstance(writer, BulkWriter)
    key = writer.create_run(writer.ensure_experiment(EXPERIMENT), RUN, identity(RUN))
    written = [*tricky(), MetricBatch("wide", [-(10**12), 0, 10**12], [T0, T0 + 1, -5], [-0.0, 1e-310, -2.5])]
    writer.write_metrics(key, written)
    writer.write_metrics(key, batches(1_000))
    reader, stored = writer.reader(), Run(key, EXPERIMENT.key)
    point_by_point = RunDigest(stored)
    for batch in reader.metrics(stored):
        point_by_point.add(batch)
    digests = reader.series_digests(stored)
    if writer.sql.dialect == "mysql":
        assert digests is None  # MySQL cannot read a double's bits: its points are read back
    else:
        assert digests == point_by_point.series
    changed = [MetricBatch("repeat", [1, 2, 3], [T0, T0, T0], [0.25, 0.75, 1.0])]
    assert differing_points(changed, reader.metrics(stored), {"repeat"}) == {
        "repeat": f"at the source only: step 2 at {T0} = 0.75, step 3 at {T0} = 1.0; "
        f"in the destination only: step 2 at {T0} = 0.5"
    }
    writer.close()


def test_a_killed_write_leaves_exact_marks(database: str) -> None:
    """The marks of a run whose process died after a write are exactly the points written (the contract's
    crash and resume, tests/trackers/test_contract.py, runs against these databases too)."""
    writer = open_writer(database, Credentials())
    _, _, key = start(writer)
    handed = batches(POINTS // 2)
    writer.write_metrics(key, handed)
    del writer  # the process dies: nothing is closed or finished
    gc.collect()
    again = open_writer(database, Credentials())
    assert again.high_water_marks(key) == {b.key: len(b) for b in handed}
    again.close()


def test_a_database_at_another_schema_revision_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    open_writer(f"sqlite:///{path}", Credentials()).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0a8213491aaa'")
    connection.close()
    before = path.read_bytes()
    with pytest.raises(MlflowError, match=rf"revision 0a8213491aaa.*`mlflow db upgrade sqlite:///{path}`"):
        open_writer(f"sqlite:///{path}", Credentials())
    assert path.read_bytes() == before  # neither upgraded nor written


def test_a_server_database_at_another_schema_revision_is_refused(postgres_database: str) -> None:
    open_writer(postgres_database, Credentials()).close()
    engine = sqlalchemy.create_engine(postgres_database)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = '0a8213491aaa'"))
    engine.dispose()
    with pytest.raises(MlflowError, match=r"revision 0a8213491aaa.*`mlflow db upgrade postgresql://"):
        open_writer(postgres_database, Credentials())


@pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
def test_a_point_changed_in_the_database_is_found_and_named(database: str, tmp_path: Path) -> None:
    from ferryman.migrate.copy import migrate
    from ferryman.migrate.plan import MigrationRequest

    source = f"sqlite:///{tmp_path / 'source.db'}"
    writer = open_writer(source, Credentials())
    _, _, key = start(writer)
    writer.write_metrics(key, batches(100))
    writer.finish_run(key, RUN)
    writer.close()
    assert migrate(MigrationRequest(source, database, workers=1, artifacts=False)).ok
    engine = sqlalchemy.create_engine(database)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("UPDATE metrics SET value = 9.5 WHERE step = 3 AND value < 1"))
    engine.dispose()
    report = migrate(MigrationRequest(source, database, workers=1, artifacts=False, verify_only=True))
    (changed,) = [run for run in report.runs if run.mismatches]
    assert changed.mismatches == [
        "metric 'loss': same number of points but different (step, value) pairs",
        f"metric 'loss': at the source only: step 3 at {T0 + 21} = 0.16666666666666666; "
        f"in the destination only: step 3 at {T0 + 21} = 9.5",
    ]
