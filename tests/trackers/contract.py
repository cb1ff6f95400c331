"""The contract every tracker destination keeps with the migration engine; helpers the tracker tests share.

A destination is named by its URI under a temporary directory; its writer is opened through the registry and
read back through `TrackerWriter.reader()`, as the engine does. The run written covers every field of the
neutral model (nested under a parent, params with a long value, tags, notes, a user metric with values that
need all 64 bits, a system metric, artifacts in sub-directories), and verification is the engine's own:
`compare_runs` between the source run's digest and the destination run read back.
"""

from __future__ import annotations

import copy
import functools
import io
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ferryman.migrate.validate import RunDigest, compare_runs, digest_run, sha256_of
from ferryman.trackers.model import (
    Artifact,
    DatasetInput,
    Experiment,
    LoggedModel,
    MetricBatch,
    ModelMetric,
    ModelVersion,
    Outcome,
    RegisteredModel,
    Run,
    RunStatus,
    TrackerReader,
    TrackerWriter,
)


class RunData(NamedTuple):
    """One run as a reader gives it: the run, its series merged per key, its artifacts' bytes."""

    run: Run
    series: dict[str, MetricBatch]
    files: dict[str, bytes]


def merged_series(batches: Iterable[MetricBatch]) -> dict[str, MetricBatch]:
    """Batches merged per metric key, points in the order read."""
    series: dict[str, MetricBatch] = {}
    for batch in batches:
        into = series.setdefault(batch.key, MetricBatch(batch.key, [], [], [], batch.system))
        into.steps += batch.steps
        into.timestamps += batch.timestamps
        into.values += batch.values
    return series


def points(batch: MetricBatch) -> list[tuple[int, int, float]]:
    """(step, timestamp, value) of every point."""
    return list(zip(batch.steps, batch.timestamps, batch.values, strict=True))


def point_lists(batches: Iterable[MetricBatch]) -> dict[str, list[tuple[int, int, float]]]:
    """Every point per metric key, in the order read."""
    return {key: points(batch) for key, batch in merged_series(batches).items()}


def same_points(expected: list[tuple[int, int, float]], got: list[tuple[int, int, float]]) -> bool:
    """The same points in the same order, NaN equal to NaN."""
    return len(expected) == len(got) and all(
        a[:2] == b[:2] and (a[2] == b[2] or (math.isnan(a[2]) and math.isnan(b[2])))
        for a, b in zip(expected, got, strict=True)
    )


def read_run(reader: TrackerReader, run: Run) -> RunData:
    """The run's series and artifacts; each artifact's declared size must be the size of its bytes."""
    files = {}
    for artifact in reader.artifacts(run):
        with artifact.open() as stream:
            files[artifact.path] = stream.read()
        assert artifact.size in (None, len(files[artifact.path])), artifact.path
    return RunData(run, merged_series(reader.metrics(run)), files)


def read_all(reader: TrackerReader) -> dict[str, RunData]:
    """Every run of every experiment, by run key."""
    runs = (run for experiment in reader.experiments() for run in reader.runs(experiment))
    return {run.key: read_run(reader, run) for run in runs}


# --------------------------------------------------------------------------------------------- the contract


@dataclass(frozen=True, slots=True)
class Destination:
    name: str
    prefix: str  # the URI's prefix before the path
    leaf: str  # the store's name in a temporary directory

    def location(self, root: Path) -> Path:
        return root / self.leaf

    def uri(self, root: Path) -> str:
        return f"{self.prefix}{self.location(root)}"


DESTINATIONS = [
    Destination("mlflow-sqlite", "sqlite:///", "mlflow.db"),
    Destination("tensorboard", "tensorboard:", "logs"),
    Destination("wandb-offline", "wandb:", "wandb"),
    Destination("neptune-export", "neptune-export:", "export"),
]
SOURCES = [*DESTINATIONS, Destination("mlflow-file-store", "", "mlruns")]  # readers of a location on disk


@dataclass(frozen=True, slots=True)
class DatabaseDestination:
    """An MLflow database on a real server: a new database from the harness fixture named `fixture`."""

    name: str
    fixture: str


DATABASES = [
    DatabaseDestination("mlflow-postgresql", "postgres_database"),
    DatabaseDestination("mlflow-mariadb", "mariadb_database"),
]

T0 = 1_748_779_200_000  # ms
EXPERIMENT = Experiment("exp-1", "contract", {"team": "vision"}, "the contract's experiment")
PARENT = Run("parent", "exp-1", name="sweep", status=RunStatus.FINISHED, start_time=T0, end_time=T0 + 1)
RUN = Run(
    "child",
    "exp-1",
    name="resnet lr=0.1",
    status=RunStatus.KILLED,
    start_time=T0,
    end_time=T0 + 99_000,
    user="ada",
    tags={"team": "vision", "stage": "b"},
    notes="some notes",
    parent_key="parent",
    params={"lr": "0.1", "layers": "50", "long": "x" * 7_000},
)
FILES = {"model/weights.bin": b"\x00\x01" * 5_000, "requirements.txt": b"torch==2.5\n"}


def identity(run: Run) -> str:
    return f"contract:{run.experiment_key}/{run.key}"


def batches(n: int) -> list[MetricBatch]:
    """A user metric whose values need all 64 bits, and a system metric sampled at its own times."""
    steps = list(range(n))
    return [
        MetricBatch("loss", steps, [T0 + 7 * s for s in steps], [1 / (s + 3) for s in steps]),
        MetricBatch(
            "system/gpu_util", steps, [T0 + 7 * s + 1 for s in steps], [float(s % 100) for s in steps], True
        ),
    ]


def artifact(path: str) -> Artifact:
    data = FILES[path]
    return Artifact(path, lambda: io.BytesIO(data), len(data))


def source_digest(run: Run, series: list[MetricBatch]) -> RunDigest:
    digest = RunDigest(run)
    for batch in series:
        digest.add(batch)
    for path in FILES:
        digest.artifacts[path] = sha256_of(artifact(path).open)
    return digest


def verify(
    writer: TrackerWriter, experiment_key: str, parent_key: str, series: list[MetricBatch]
) -> list[str]:
    """What the engine's verification finds different between RUN and its copy, read back by the writer."""
    key = writer.migrated_runs(experiment_key)[identity(RUN)].key
    reader = writer.reader()
    (experiment,) = reader.experiments([EXPERIMENT.name])
    (copy,) = [run for run in reader.runs(experiment) if run.key == key]
    return compare_runs(source_digest(RUN, series), digest_run(reader, copy), reader, parent_key)


# ------------------------------------------------------------------------------ the cross-tracker source


class SyntheticSource:
    """A source (`TrackerReader`) holding every kind of object a tracker can store, for the cross-tracker
    contract: nested runs, a deleted run, dataset inputs, NaN and ±inf, negative, repeated and 10^12-sized
    steps, unicode keys, a run without any history, odd artifact names, a registered and a logged model."""

    experiment = Experiment("exp-x", "cross-tracker", {"team": "vision"}, "every kind of object")
    inputs = [DatasetInput("mnist", "d1g35t", "local", '{"uri": "/data/mnist"}', None, None,
                           (("mlflow.data.context", "training"),))]
    runs_ = [
        Run("p", "exp-x", name="sweep", status=RunStatus.FINISHED, start_time=T0, end_time=T0 + 10,
            params={"sweep": "lr"}),
        Run("c", "exp-x", name="trial λ", status=RunStatus.FAILED, start_time=T0 + 1, end_time=T0 + 9,
            user="ada", tags={"stage": "b", "größe": "groß"}, notes="notes ✓", parent_key="p",
            params={"lr": "0.1", "long": "x" * 7_000}, inputs=inputs),
        Run("e", "exp-x", name="empty", status=RunStatus.FINISHED, start_time=T0 + 2, end_time=T0 + 3),
        Run("d", "exp-x", name="deleted", status=RunStatus.KILLED, start_time=T0 + 4, end_time=T0 + 5,
            deleted=True),
    ]
    series = {
        "c": [
            MetricBatch("loss", [0, 1, 2, 3], [T0 + i for i in range(4)], [1, math.nan, math.inf, -math.inf]),
            MetricBatch("negative", [-5, -1, 0], [T0, T0 + 1, T0 + 2], [0.5, -0.25, 1e-300]),
            MetricBatch("repeated", [7, 7, 7], [T0, T0 + 1, T0 + 2], [1.0, 2.0, 3.0]),
            MetricBatch("tokens", [10**12 - 1, 10**12, 3 * 10**12], [T0, T0 + 1, T0 + 2], [3.0, 2.0, 1.0]),
            MetricBatch("ünïcødé/ключ", [0], [T0], [42.0]),
            MetricBatch("system/gpu", [0, 1], [T0, T0 + 5], [50.0, 75.0], True),
            MetricBatch("accuracy", [1], [T0 + 1], [0.5]),  # the logged model's metric (MLflow keeps both)
        ],
        "p": [MetricBatch("best", [0], [T0 + 9], [0.9])],
        "d": [MetricBatch("loss", [0], [T0 + 4], [1.0])],
    }
    files = {
        "c": {"model/weights.bin": b"\x00\x01" * 1_000, "tb/events.out.tfevents.1.laptop": b"not events",
              "résumé ✓.txt": "ünïcødé".encode(), "with space/a b.json": b"{}"},
    }
    model = RegisteredModel("clf", "a model", {"owner": "ada"},
                            [ModelVersion("1", "c", "runs:/c/model", stage="Staging", aliases=["champion"])])
    logged = LoggedModel("m-1", "clf", "c", "exp-x", {"k": "v"}, {"depth": "3"}, [], T0,
                         [ModelMetric("accuracy", 0.5, T0 + 1, 1, "c", "eval", "abc")])

    def experiments(self, names: list[str] | None = None) -> Iterator[Experiment]:
        return iter([self.experiment] if not names or self.experiment.name in names else [])

    def runs(self, experiment: Experiment, since: int | None = None) -> Iterator[Run]:
        return (copy.deepcopy(run) for run in self.runs_)

    def metrics(self, run: Run) -> Iterator[MetricBatch]:
        return (copy.deepcopy(batch) for batch in self.series.get(run.key, []))

    def artifacts(self, run: Run) -> Iterator[Artifact]:
        for path, data in self.files.get(run.key, {}).items():
            yield Artifact(path, functools.partial(io.BytesIO, data), len(data))

    def registered_models(self) -> Iterator[RegisteredModel]:
        return iter([copy.deepcopy(self.model)])

    def logged_models(self, experiment: Experiment) -> Iterator[LoggedModel]:
        return iter([copy.deepcopy(self.logged)])

    def outcomes(self) -> list[Outcome]:
        return []

    def close(self) -> None:
        pass
