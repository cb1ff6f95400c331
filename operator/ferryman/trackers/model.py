"""The neutral, streaming data model every tracker reader produces and every writer consumes.

Times are integer milliseconds since the Unix epoch (MLflow's unit); steps are integers; metric series travel
as column batches so a reader never has to hold a whole history in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import BinaryIO, Protocol


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


class OutcomeKind(StrEnum):
    SKIPPED = "skipped"  # deliberately not copied (already present, filtered out)
    TRUNCATED = "truncated"  # copied in part; the message says what is missing
    UNSUPPORTED = "unsupported"  # the destination cannot hold it
    UNREADABLE = "unreadable"  # the source is corrupt, empty, dangling or missing
    STORED_AS_ARTIFACT = "stored-as-artifact"  # e.g. a parameter value too long for the destination


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
