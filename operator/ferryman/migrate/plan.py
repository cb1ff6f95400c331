"""What a migration is asked to do (`MigrationRequest`) and what it will do run by run (`plan`)."""

from __future__ import annotations

import fnmatch
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ferryman.migrate.ledger import Action, decide, shard_of, source_identity
from ferryman.trackers.model import DestinationRun, Experiment, Run, TrackerReader, TrackerWriter
from ferryman.trackers.registry import Credentials


class MigrationError(RuntimeError):
    """The migration cannot start or go on; the message names what failed."""


@dataclass(slots=True)
class RunFilter:
    """Which runs of the selected experiments to migrate (all when empty)."""

    names: list[str] = field(default_factory=list)  # glob patterns on run names
    statuses: list[str] = field(default_factory=list)  # RUNNING, FINISHED, FAILED, KILLED, SCHEDULED
    tags: dict[str, str] = field(default_factory=dict)  # tags the run must carry with these values

    def matches(self, run: Run) -> bool:
        if self.names and not any(fnmatch.fnmatchcase(run.name or "", pattern) for pattern in self.names):
            return False
        if self.statuses and run.status.value not in {s.upper() for s in self.statuses}:
            return False
        return all(run.tags.get(key) == value for key, value in self.tags.items())


@dataclass(slots=True)
class MigrationRequest:
    source: str
    destination: str
    experiments: list[str] = field(default_factory=list)  # source experiment names; all when empty
    since: int | None = None  # only runs started at or after this time (ms since epoch)
    run_filter: RunFilter = field(default_factory=RunFilter)
    dry_run: bool = False
    verify: bool = True
    verify_only: bool = False
    workers: int = 4
    artifacts: bool = True
    models: bool = True
    include_deleted: bool = False  # copy deleted runs (as deleted); by default each is a SKIPPED outcome
    allow_empty: bool = False  # a source without runs is not an error
    shard_index: int = 0
    shard_count: int = 1
    source_credentials: Credentials | None = None
    destination_credentials: Credentials | None = None

    def check(self) -> None:
        """Refuse options that contradict each other."""
        if self.dry_run and self.verify_only:
            raise MigrationError(
                "dry run and verify-only exclude each other: a dry run plans a copy, verify-only checks one"
            )


@dataclass(slots=True)
class PlannedRun:
    run: Run
    identity: str
    action: Action
    existing: DestinationRun | None
    destination: str | None = None  # destination run key once known


@dataclass(slots=True)
class PlannedExperiment:
    experiment: Experiment
    destination_key: str | None  # None in a dry run when the destination has no such experiment yet
    runs: list[PlannedRun]
    identities: dict[str, str]  # source run key -> identity, for every run of the experiment (parents)
    deleted: list[str] = field(default_factory=list)  # identities of this shard's deleted runs left out


_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str | None, now: float | None = None) -> int | None:
    """`--since`: ISO 8601 date or time (UTC unless it says otherwise), epoch ms, or a duration ago (7d)."""
    if not text:
        return None
    text = text.strip()
    match = _DURATION.match(text)
    if match:
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        return int(((now if now is not None else time.time()) - seconds) * 1000)
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise MigrationError(
            f"--since {text!r}: expected an ISO date/time, epoch milliseconds or a duration such as 7d or 12h"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def root_key(run: Run, runs_by_key: dict[str, Run]) -> str:
    """The top-most ancestor present in the source (runs of one tree stay in one shard)."""
    seen = {run.key}
    while run.parent_key and run.parent_key in runs_by_key and run.parent_key not in seen:
        run = runs_by_key[run.parent_key]
        seen.add(run.key)
    return run.key


def selected_experiments(reader: TrackerReader, request: MigrationRequest) -> list[Experiment]:
    """The source experiments the request selects; `MigrationError` names any it asks for that are absent."""
    experiments = list(reader.experiments(request.experiments or None))
    missing = sorted(set(request.experiments) - {e.name for e in experiments})
    if missing:
        raise MigrationError(f"experiment(s) {', '.join(map(repr, missing))} not found in {request.source}")
    return experiments


def plan(
    reader: TrackerReader,
    writer: TrackerWriter,
    request: MigrationRequest,
    kind: str,
    *,
    create_experiments: bool,
) -> list[PlannedExperiment]:
    """Select experiments and runs, find what the destination already holds and decide each run's action."""
    experiments = selected_experiments(reader, request)
    destination_reader = None if create_experiments else writer.reader()
    planned: list[PlannedExperiment] = []
    for experiment in experiments:
        runs = list(reader.runs(experiment, request.since))
        by_key = {run.key: run for run in runs}
        identities = {run.key: source_identity(kind, experiment.key, run.key) for run in runs}
        selected = [
            run
            for run in runs
            if request.run_filter.matches(run)
            and shard_of(identities[root_key(run, by_key)], request.shard_count) == request.shard_index
        ]
        deleted = [identities[run.key] for run in selected if run.deleted and not request.include_deleted]
        selected = [run for run in selected if request.include_deleted or not run.deleted]
        if create_experiments:
            destination_key: str | None = writer.ensure_experiment(experiment)
        else:
            assert destination_reader is not None
            found = next(iter(destination_reader.experiments([experiment.name])), None)
            destination_key = found.key if found else None
        existing = writer.migrated_runs(destination_key) if destination_key is not None else {}
        entries = []
        for run in selected:
            identity = identities[run.key]
            present = existing.get(identity)
            entries.append(
                PlannedRun(run, identity, decide(run, present), present, present.key if present else None)
            )
        planned.append(PlannedExperiment(experiment, destination_key, entries, identities, deleted))
    return planned
