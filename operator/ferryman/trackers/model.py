"""The neutral, streaming data model every tracker reader produces and every writer consumes.

Times are integer milliseconds since the Unix epoch (MLflow's unit); steps are integers; metric series travel
as column batches so a reader never has to hold a whole history in memory.

A reader (`TrackerReader`) streams a source; a writer (`TrackerWriter`) fills a destination. The migration
engine (`ferryman.migrate`) drives both: it finds already-migrated runs through the writer (`migrated_runs`,
keyed by the `ferryman.source` identity), resumes each metric key after its high-water mark, and verifies by
reading the destination back through `TrackerWriter.reader()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import BinaryIO, Protocol

SOURCE_TAG = "ferryman.source"  # tag on every destination run: the source identity it was copied from
COMPLETE_TAG = "ferryman.complete"  # set by `finish_run` once everything of the run is written
SOURCE_VERSION_TAG = "ferryman.source.version"  # on destination model versions: the source version number
INTERNAL_PREFIX = "ferryman/"  # artifacts ferryman itself adds to destination runs
LONG_VALUES_ARTIFACT = "ferryman/long-values.json"  # where writers keep values too long for the destination


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    SCHEDULED = "SCHEDULED"


@dataclass(slots=True)
class Experiment:
    key: str  # stable identity inside the source (experiment id, W&B entity/project, TensorBoard root)
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None


@dataclass(slots=True, frozen=True)
class DatasetInput:
    """A dataset a run used (MLflow's `log_input`): the dataset's fields and the input's tags."""

    name: str
    digest: str
    source_type: str
    source: str
    schema: str | None = None
    profile: str | None = None
    tags: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs, e.g. mlflow.data.context


@dataclass(slots=True)
class Run:
    key: str  # stable identity inside the source (run id, run directory)
    experiment_key: str
    name: str | None = None
    status: RunStatus = RunStatus.FINISHED
    start_time: int | None = None
    end_time: int | None = None
    user: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    notes: str | None = None
    parent_key: str | None = None  # key of the parent run (nested runs)
    params: dict[str, str] = field(default_factory=dict)
    deleted: bool = False  # deleted at the source (MLflow's lifecycle stage `deleted`), not yet purged
    inputs: list[DatasetInput] = field(default_factory=list)  # datasets the run used


def source_state(run: Run) -> str:
    """What the completion mark records of the source run; a change means the source run moved on."""
    return f"{run.status.value}:{run.end_time}" + (":deleted" if run.deleted else "")


@dataclass(slots=True)
class MetricBatch:
    """Consecutive points of one metric key of one run, in the source's order."""

    key: str
    steps: list[int]
    timestamps: list[int]
    values: list[float]
    system: bool = False  # a system metric (GPU, CPU, memory …) rather than a user metric

    def __len__(self) -> int:
        return len(self.values)


@dataclass(slots=True)
class Artifact:
    """A file of a run. `open` streams its bytes; size and sha256 are filled when the source knows them."""

    path: str  # relative, forward slashes
    open: Callable[[], BinaryIO]
    size: int | None = None
    sha256: str | None = None


@dataclass(slots=True)
class ModelVersion:
    version: str
    run_key: str | None  # source run the version was logged from
    source: str  # artifact location or path relative to the run, as the source records it
    stage: str | None = None
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    status: str | None = None
    creation_time: int | None = None


@dataclass(slots=True)
class RegisteredModel:
    name: str
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    versions: list[ModelVersion] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class ModelMetric:
    """A metric point logged against a logged model (MLflow 3), with the dataset it was measured on."""

    key: str
    value: float
    timestamp: int
    step: int
    run_key: str | None = None  # the run that logged it
    dataset_name: str | None = None
    dataset_digest: str | None = None


@dataclass(slots=True)
class LoggedModel:
    """An MLflow 3 logged model (or a W&B model artifact) attached to a run."""

    key: str
    name: str
    run_key: str | None
    experiment_key: str
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    creation_time: int | None = None
    metrics: list[ModelMetric] = field(default_factory=list)


class OutcomeKind(StrEnum):
    SKIPPED = "skipped"  # deliberately not copied (already present, filtered out)
    TRUNCATED = "truncated"  # copied in part; the message says what is missing
    UNSUPPORTED = "unsupported"  # the destination cannot hold it
    UNREADABLE = "unreadable"  # the source is corrupt, empty, dangling or missing
    STORED_AS_ARTIFACT = "stored-as-artifact"  # e.g. a parameter value too long for the destination
    RENAMED = "renamed"  # stored under another name the destination accepts (e.g. a metric key)
    APPROXIMATE = "approximate"  # copied with an estimated step or time; the message says which and why


@dataclass(slots=True, frozen=True)
class Outcome:
    """An explicit, counted outcome for an item that was not copied exactly as it is."""

    kind: OutcomeKind
    item: str  # what it concerns: "run abc/metric loss", "file wandb/run-1/run-1.wandb"
    reason: str


class TrackerReader(Protocol):
    """A source. Iterators are lazy; every problem found while reading is reported through `outcomes`."""

    def experiments(self, names: list[str] | None = None) -> Iterator[Experiment]: ...

    def runs(self, experiment: Experiment, since: int | None = None) -> Iterator[Run]: ...

    def metrics(self, run: Run) -> Iterator[MetricBatch]: ...

    def artifacts(self, run: Run) -> Iterator[Artifact]: ...

    def registered_models(self) -> Iterator[RegisteredModel]: ...

    def logged_models(self, experiment: Experiment) -> Iterator[LoggedModel]: ...

    def outcomes(self) -> list[Outcome]: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class DestinationRun:
    """A run already present in the destination, found by the source identity it carries."""

    key: str  # destination run id
    source: str  # the `ferryman.source` identity
    complete: bool  # `finish_run` ran: params, tags, metrics and artifacts are all written
    source_state: str | None = None  # what `finish_run` recorded of the source run (status and end time)


class WithoutModelRegistry:
    """Writer mix-in for destinations without a model registry: each model is an UNSUPPORTED outcome."""

    no_registry_reason = "the destination has no model registry"

    def write_registered_model(self, model: RegisteredModel, run_keys: dict[str, str]) -> list[Outcome]:
        return [Outcome(OutcomeKind.UNSUPPORTED, f"registered model {model.name}", self.no_registry_reason)]

    def write_logged_model(
        self, model: LoggedModel, experiment_key: str, run_keys: dict[str, str]
    ) -> list[Outcome]:
        return [Outcome(OutcomeKind.UNSUPPORTED, f"logged model {model.name}", self.no_registry_reason)]


class TrackerWriter(Protocol):
    """A destination. The engine calls it from several threads, but never concurrently for the same run.

    A writer whose destination can mark a run deleted sets `marks_deleted = True` and does so in
    `finish_run` for a run with `deleted` set (the engine counts the others as outcomes). Likewise a writer
    that stores a run's dataset inputs sets `keeps_inputs = True` and writes them in `finish_run`. A writer
    that stores some artifacts under another name reports each as RENAMED and has `stored_artifact_path(path)`
    give the name, so verification compares the artifact under it. A destination whose points cannot hold
    every step or value declares `max_step` and `largest_value` (see `migrate.validate.StoreLimits`).

    Resume contract: for one run the engine hands over each metric key's points in source order, and after a
    crash `high_water_marks` must never report more points for a key than were handed over (a count of points
    stored is correct, since writes are in order; a writer that may lose the tail of a write reports less).
    The engine then skips that many source points, so nothing is lost and nothing is written twice.
    """

    def ensure_experiment(self, experiment: Experiment) -> str:
        """Find or create the destination experiment of this source experiment; return its key."""
        ...

    def migrated_runs(self, experiment_key: str) -> dict[str, DestinationRun]:
        """Every run of the destination experiment that carries a `ferryman.source` identity, by identity."""
        ...

    def create_run(self, experiment_key: str, run: Run, source: str) -> str:
        """Create the run with its name, status RUNNING, start time and user, tagged with `source`; return
        its key. Params, tags, notes and the parent are written by the calls below."""
        ...

    def set_parent(self, run_key: str, parent_key: str) -> None:
        """Nest the run under another destination run (both are destination keys)."""
        ...

    def write_params(self, run_key: str, params: dict[str, str]) -> list[Outcome]:
        """Write params not yet present. Values the destination cannot hold whole are kept whole elsewhere
        (e.g. as an artifact) and reported."""
        ...

    def write_tags(self, run_key: str, tags: dict[str, str], notes: str | None = None) -> list[Outcome]:
        """Set tags and the run notes (idempotent)."""
        ...

    def high_water_marks(self, run_key: str) -> dict[str, int]:
        """Number of points stored per metric key (see the resume contract above)."""
        ...

    def write_metrics(self, run_key: str, batches: list[MetricBatch]) -> None:
        """Append points with their original steps and timestamps; batches of several keys may come
        together."""
        ...

    def stored_artifacts(self, run_key: str) -> dict[str, int]:
        """Files already stored for the run: relative path -> size in bytes."""
        ...

    def write_artifact(self, run_key: str, artifact: Artifact) -> Outcome | None:
        """Store one file at its relative path; return an outcome if it could not be stored exactly."""
        ...

    def finish_run(self, run_key: str, run: Run) -> None:
        """Set the final status and end time of the source run and mark the run complete."""
        ...

    def write_registered_model(self, model: RegisteredModel, run_keys: dict[str, str]) -> list[Outcome]:
        """Create the model and its versions, aliases and stages (idempotent); `run_keys` maps source run keys
        to destination run keys so versions are re-linked to the migrated runs."""
        ...

    def write_logged_model(
        self, model: LoggedModel, experiment_key: str, run_keys: dict[str, str]
    ) -> list[Outcome]:
        """Create an MLflow 3 logged model (idempotent) linked to the migrated run."""
        ...

    def reader(self) -> TrackerReader:
        """A reader over this destination, used to verify the migration."""
        ...

    def close(self) -> None: ...
