"""The migration engine: plan, copy runs in parallel through bounded pipelines, verify.

Each run is copied by one worker thread (writes) fed by one reader thread through a bounded queue, so reading
the source overlaps writing the destination and memory stays flat whatever a run's size. `workers` runs go
in parallel. Metric points are handed to the writer in whole requests' worth (multiples of 1,000 points), at
least `points_per_write` at a time when the writer asks for more (one bulk transaction each).
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from ferryman.migrate.ledger import Action, after_high_water, same_source
from ferryman.migrate.plan import (
    MigrationError,
    MigrationRequest,
    PlannedExperiment,
    PlannedRun,
    plan,
    selected_experiments,
)
from ferryman.migrate.report import MigrationReport, RunResult
from ferryman.migrate.validate import (
    RunDigest,
    StoreLimits,
    compare_runs,
    differing_points,
    digest_run,
    sha256_of,
    storable,
    totals,
)
from ferryman.trackers.model import (
    INTERNAL_PREFIX,
    SOURCE_TAG,
    SOURCE_VERSION_TAG,
    Artifact,
    DestinationRun,
    Experiment,
    LoggedModel,
    MetricBatch,
    Outcome,
    OutcomeKind,
    RegisteredModel,
    Run,
    TrackerReader,
    TrackerWriter,
    WithoutModelRegistry,
)
from ferryman.trackers.paths import UnsafePath, safe_relative, unsafe_outcome
from ferryman.trackers.registry import local_path, open_reader, open_writer, redact, tracker_for

POINTS_PER_REQUEST = 1000
QUEUE_BATCHES = 8  # per run: at most this many source batches wait for the writer


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot for progress bars and the operator's per-shard status."""

    shard: str
    phase: str  # planning / copying / verifying / done
    runs_total: int
    runs_done: int
    points_written: int
    bytes_written: int
    elapsed: float
    copy_seconds: float = 0.0  # time spent copying so far (the rate's denominator)

    @property
    def points_per_second(self) -> float:
        return self.points_written / self.copy_seconds if self.copy_seconds > 0 else 0.0


ProgressCallback = Callable[[Progress], None]
ReportCallback = Callable[[MigrationReport], None]  # receives the report as it grows (a partial report)


class _Tracker:
    """Thread-safe counters behind the progress callback (throttled to a few calls per second)."""

    def __init__(self, shard: str, callback: ProgressCallback | None) -> None:
        self.shard, self.callback = shard, callback
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.phase, self.runs_total, self.runs_done, self.points, self.bytes = "planning", 0, 0, 0, 0
        self.copy_started: float | None = None
        self.copy_seconds = 0.0
        self._last = 0.0

    def _copying(self, now: float) -> float:
        return self.copy_seconds + (now - self.copy_started if self.copy_started is not None else 0.0)

    def copying_seconds(self) -> float:
        """Time spent in the copying phase so far."""
        with self.lock:
            return self._copying(time.monotonic())

    def add(self, *, points: int = 0, bytes_: int = 0, runs: int = 0, force: bool = False) -> None:
        with self.lock:
            self.points += points
            self.bytes += bytes_
            self.runs_done += runs
            now = time.monotonic()
            if not force and now - self._last < 0.25:
                return
            self._last = now
            snapshot = Progress(
                self.shard,
                self.phase,
                self.runs_total,
                self.runs_done,
                self.points,
                self.bytes,
                now - self.started,
                self._copying(now),
            )
        if self.callback is not None:
            self.callback(snapshot)

    def set_phase(self, phase: str, runs_total: int | None = None) -> None:
        with self.lock:
            now = time.monotonic()
            self.copy_seconds = self._copying(now)
            self.copy_started = now if phase == "copying" else None
            self.phase = phase
            if runs_total is not None:
                self.runs_total, self.runs_done = runs_total, runs_total if phase == "done" else 0
        self.add(force=True)


class _HashingReader:
    """Wraps an artifact stream; counts and hashes what the writer reads from it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self.sha256, self.size = stream, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size)
        self.sha256.update(chunk)
        self.size += len(chunk)
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1 << 20):
            yield chunk

    def __enter__(self) -> _HashingReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.stream.close()

    def close(self) -> None:
        self.stream.close()


def _prefetch(batches: Iterator[MetricBatch], stop: threading.Event) -> Iterator[MetricBatch]:
    """Read on a separate thread into a bounded queue (the reader/writer pipeline of one run)."""
    pipe: queue.Queue[Any] = queue.Queue(QUEUE_BATCHES)
    done = object()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        pipe.put(batch, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            pipe.put(done)
        except BaseException as error:  # handed to the consumer, which raises it
            pipe.put(error)

    thread = threading.Thread(target=produce, daemon=True, name="ferryman-read")
    thread.start()
    while True:
        item = pipe.get()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _split(batch: MetricBatch, count: int) -> tuple[MetricBatch, MetricBatch]:
    head = MetricBatch(
        batch.key, batch.steps[:count], batch.timestamps[:count], batch.values[:count], batch.system
    )
    tail = MetricBatch(
        batch.key, batch.steps[count:], batch.timestamps[count:], batch.values[count:], batch.system
    )
    return head, tail


class Migration:
    """One migration (or one shard of it): `run()` returns the report."""

    def __init__(
        self,
        request: MigrationRequest,
        progress: ProgressCallback | None = None,
        reader: TrackerReader | None = None,
        writer: TrackerWriter | None = None,
        on_report: ReportCallback | None = None,
    ) -> None:
        self.request = request
        self.on_report = on_report
        self.kind = tracker_for(request.source).kind
        self.shard = f"{request.shard_index}/{request.shard_count}"
        self.progress = _Tracker(self.shard, progress)
        self._reader, self._writer = reader, writer
        self.report = MigrationReport(
            redact(request.source),
            redact(request.destination),
            dry_run=request.dry_run,
            verify_only=request.verify_only,
            shard=self.shard,
        )
        self._outcomes = self.report.outcomes
        self._outcomes_seen: set[Outcome] = set()
        self._lock = threading.Lock()
        self._digests: dict[str, RunDigest] = {}

    def _outcome(self, outcomes: list[Outcome] | Outcome | None) -> None:
        if outcomes is None:
            return
        with self._lock:  # once each: a source read again (to verify a failed run) reports the same again
            for outcome in outcomes if isinstance(outcomes, list) else [outcomes]:
                if outcome not in self._outcomes_seen:
                    self._outcomes_seen.add(outcome)
                    self._outcomes.append(outcome)

    def run(self) -> MigrationReport:
        request = self.request
        if not 0 <= request.shard_index < max(request.shard_count, 1):
            raise MigrationError(f"shard index {request.shard_index} is outside 0..{request.shard_count - 1}")
        request.check()
        self.report.started = time.time()
        reader = self._reader or open_reader(request.source, request.source_credentials)
        try:
            selected_experiments(reader, request)  # an unknown --experiment fails before any destination
            writer = self._writer or self._open_destination()
        except BaseException:
            reader.close()
            raise
        try:
            create = not (request.dry_run or request.verify_only)
            experiments = plan(reader, writer, request, self.kind, create_experiments=create)
            runs = [entry for experiment in experiments for entry in experiment.runs]
            if not request.allow_empty and not any(experiment.identities for experiment in experiments):
                self.report.errors.append(
                    f"no runs found in {redact(request.source)}: an empty or mistyped source? "
                    "(--allow-empty, spec.options.allowEmpty, accepts an empty source)"
                )
            self._outcome([
                Outcome(OutcomeKind.SKIPPED, f"run {identity}",
                        "deleted in the source; --include-deleted copies it as a deleted run")
                for experiment in experiments for identity in experiment.deleted
            ])
            self._checkpoint()
            if request.dry_run:
                self._dry_run(reader, experiments)
            elif request.verify_only:
                self._verify(reader, writer, experiments)
            else:
                self._copy(reader, writer, experiments)
                if request.models:
                    self._models(reader, writer, experiments)
                if request.verify:
                    self._verify(reader, writer, experiments)
            self._outcome(reader.outcomes())
            self.progress.set_phase("done", len(runs))
        finally:
            self.report.copy_seconds = self.progress.copying_seconds()
            self.report.finished = time.time()
            reader.close()
            writer.close()
        self._checkpoint()
        return self.report

    def _checkpoint(self) -> None:
        """Hand the report as it stands to `on_report` (a killed migration leaves what it finished)."""
        if self.on_report is not None:
            with self._lock:
                self.on_report(self.report)

    def _open_destination(self) -> TrackerWriter:
        """The destination's writer; a dry run or verify-only of a local store that does not exist yet opens
        nothing (so creates nothing: no file, no schema) and plans against an empty destination."""
        request = self.request
        path = local_path(request.destination)
        if (request.dry_run or request.verify_only) and path is not None and not path.exists():
            return cast(TrackerWriter, _AbsentDestination())
        if path is not None and not (request.dry_run or request.verify_only):
            _check_writable(request.destination, path)
        return open_writer(request.destination, request.destination_credentials)

    # ----------------------------------------------------------------------------------------------- dry run

    def _dry_run(self, reader: TrackerReader, experiments: list[PlannedExperiment]) -> None:
        self.progress.set_phase("planning", sum(len(e.runs) for e in experiments))
        for experiment in experiments:
            for entry in experiment.runs:
                self.report.runs.append(
                    RunResult(
                        experiment.experiment.name,
                        entry.identity,
                        entry.run.name,
                        entry.action.value,
                        entry.destination,
                    )
                )
                self.progress.add(runs=1)
        source = totals(
            self._source_digest(reader, entry.run, with_artifacts=False)
            for experiment in experiments
            for entry in experiment.runs
            if entry.action != Action.SKIP
        )
        self.report.source_totals = source.to_dict()

    def _source_digest(self, reader: TrackerReader, run: Run, *, with_artifacts: bool) -> RunDigest:
        return digest_run(reader, run, with_artifacts=with_artifacts)

    # ---------------------------------------------------------------------------------------------- copying

    def _copy(
        self, reader: TrackerReader, writer: TrackerWriter, experiments: list[PlannedExperiment]
    ) -> None:
        work = [(experiment, entry) for experiment in experiments for entry in experiment.runs]
        self.progress.set_phase("copying", len(work))
        for experiment in experiments:  # run shells first, so parents exist before children are linked
            assert experiment.destination_key is not None
            for entry in experiment.runs:
                if entry.action == Action.CREATE:
                    entry.destination = writer.create_run(
                        experiment.destination_key, entry.run, entry.identity
                    )
        with ThreadPoolExecutor(max(self.request.workers, 1), thread_name_prefix="ferryman-run") as pool:
            list(pool.map(lambda item: self._copy_run(reader, writer, *item), work))
        order = {entry.identity: index for index, (_, entry) in enumerate(work)}
        self.report.runs.sort(key=lambda result: order.get(result.source, len(order)))

    def _copy_run(
        self, reader: TrackerReader, writer: TrackerWriter, experiment: PlannedExperiment, entry: PlannedRun
    ) -> RunResult:
        result = RunResult(
            experiment.experiment.name, entry.identity, entry.run.name, entry.action.value, entry.destination
        )
        try:
            if entry.action != Action.SKIP:
                self._copy_run_data(reader, writer, experiment, entry, result)
        except Exception as error:
            result.error = f"{type(error).__name__}: {error}"
        with self._lock:
            self.report.runs.append(result)
        self._checkpoint()
        self.progress.add(runs=1, force=True)
        return result

    def _copy_run_data(
        self,
        reader: TrackerReader,
        writer: TrackerWriter,
        experiment: PlannedExperiment,
        entry: PlannedRun,
        result: RunResult,
    ) -> None:
        run, key = entry.run, entry.destination
        assert key is not None
        self._outcome(writer.write_params(key, run.params))
        self._outcome(
            writer.write_tags(key, {k: v for k, v in run.tags.items() if k != SOURCE_TAG}, run.notes)
        )
        if run.parent_key:
            parent = self._destination_of(experiment, run.parent_key)
            if parent is None:
                self._outcome(
                    Outcome(
                        OutcomeKind.SKIPPED,
                        f"run {entry.identity}/parent",
                        f"parent run {run.parent_key} is not migrated (not selected)",
                    )
                )
            else:
                writer.set_parent(key, parent)
        digest = RunDigest(run)
        marks = writer.high_water_marks(key) if entry.action == Action.RESUME else {}
        stop = threading.Event()
        try:
            self._copy_metrics(reader, writer, run, key, marks, digest, result, stop)
        finally:
            stop.set()
        if self.request.artifacts:
            self._copy_artifacts(reader, writer, run, key, entry.action, digest, result)
        writer.finish_run(key, run)
        if run.inputs and not getattr(writer, "keeps_inputs", False):
            self._outcome(Outcome(OutcomeKind.UNSUPPORTED, f"run {entry.identity}/dataset inputs",
                                  f"{len(run.inputs)} dataset input(s) "
                                  f"({', '.join(i.name for i in run.inputs)}): the destination has none"))
        if run.deleted and not getattr(writer, "marks_deleted", False):
            self._outcome(Outcome(OutcomeKind.UNSUPPORTED, f"run {entry.identity}/deleted",
                                  "the destination cannot mark a run deleted; copied as an ordinary run"))
        with self._lock:
            self._digests[entry.identity] = digest

    def _destination_of(self, experiment: PlannedExperiment, source_run_key: str) -> str | None:
        identity = experiment.identities.get(source_run_key)
        for entry in experiment.runs:
            if entry.identity == identity:
                return entry.destination
        return None

    def _copy_metrics(
        self,
        reader: TrackerReader,
        writer: TrackerWriter,
        run: Run,
        key: str,
        marks: dict[str, int],
        digest: RunDigest,
        result: RunResult,
        stop: threading.Event,
    ) -> None:
        def digested() -> Iterator[MetricBatch]:
            for batch in storable(_prefetch(reader.metrics(run), stop), limits):
                digest.add(batch)
                yield batch

        limits = StoreLimits.of(writer)

        pending: list[MetricBatch] = []
        pending_points = 0
        per_write = max(getattr(writer, "points_per_write", POINTS_PER_REQUEST), POINTS_PER_REQUEST)

        def flush(count: int) -> None:
            nonlocal pending, pending_points
            out: list[MetricBatch] = []
            needed = count
            while needed and pending:
                batch = pending[0]
                if len(batch) <= needed:
                    out.append(pending.pop(0))
                    needed -= len(batch)
                else:
                    head, pending[0] = _split(batch, needed)
                    out.append(head)
                    needed = 0
            writer.write_metrics(key, out)
            pending_points -= count
            result.points_written += count
            self.progress.add(points=count)

        for batch in after_high_water(digested(), marks):
            if not len(batch):
                continue
            pending.append(batch)
            pending_points += len(batch)
            if pending_points >= per_write:
                flush(pending_points - pending_points % POINTS_PER_REQUEST)
        if pending_points:
            flush(pending_points)
        self._outcome(limits.outcomes(run.key))

    def _copy_artifacts(
        self,
        reader: TrackerReader,
        writer: TrackerWriter,
        run: Run,
        key: str,
        action: Action,
        digest: RunDigest,
        result: RunResult,
    ) -> None:
        stored = writer.stored_artifacts(key) if action == Action.RESUME else {}
        stored_path = getattr(writer, "stored_artifact_path", str)  # the name the writer stores a path under
        names: dict[str, str] = {}  # normalised name -> the source name that took it
        for artifact in reader.artifacts(run):
            try:
                path = safe_relative(artifact.path)
            except UnsafePath as error:
                self._outcome(unsafe_outcome(f"run {run.key}/artifact {artifact.path}", error))
                continue
            if path in names:
                self._outcome(Outcome(OutcomeKind.SKIPPED, f"run {run.key}/artifact {artifact.path}",
                                      f"its name normalises to {path!r}, already taken by {names[path]!r}; "
                                      "not written"))
                continue
            names[path] = artifact.path
            artifact = Artifact(path, artifact.open, artifact.size, artifact.sha256)
            if artifact.path.startswith(INTERNAL_PREFIX):
                continue
            if artifact.size is not None and stored.get(stored_path(artifact.path)) == artifact.size:
                digest.artifacts[artifact.path] = sha256_of(artifact.open)
                continue
            hashing: list[_HashingReader] = []

            def open_hashing(artifact: Artifact = artifact, hashing: list[_HashingReader] = hashing) -> Any:
                hashing.append(_HashingReader(artifact.open()))
                return hashing[-1]

            try:
                outcome = writer.write_artifact(
                    key, Artifact(artifact.path, open_hashing, artifact.size, artifact.sha256)
                )
            except OSError as error:
                self._outcome(
                    Outcome(OutcomeKind.UNREADABLE, f"run {run.key}/artifact {artifact.path}", str(error))
                )
                continue
            self._outcome(outcome)
            if hashing:
                digest.artifacts[artifact.path] = (hashing[-1].size, hashing[-1].sha256.hexdigest())
                result.artifacts_written += 1
                result.bytes_written += hashing[-1].size
                self.progress.add(bytes_=hashing[-1].size)

    # ----------------------------------------------------------------------------------------------- models

    def _models(
        self, reader: TrackerReader, writer: TrackerWriter, experiments: list[PlannedExperiment]
    ) -> None:
        run_keys: dict[str, str] = {}
        for experiment in experiments:
            assert experiment.destination_key is not None
            migrated = writer.migrated_runs(experiment.destination_key)
            for source_key, identity in experiment.identities.items():
                if identity in migrated:
                    run_keys[source_key] = migrated[identity].key
            try:
                for logged in reader.logged_models(experiment.experiment):
                    if logged.run_key is not None and logged.run_key not in run_keys:
                        continue
                    outcomes = writer.write_logged_model(logged, experiment.destination_key, run_keys)
                    self._outcome(outcomes)
                    if _stored(outcomes):
                        self._count_model("loggedModels")
            except Exception as error:
                self.report.errors.append(
                    f"logged models of experiment {experiment.experiment.name!r}: {error}"
                )
        if self.request.shard_index != 0:
            return  # the registry is global: shard 0 writes it, once
        try:
            for model in reader.registered_models():
                linked = [v for v in model.versions if v.run_key in run_keys]
                if self.request.experiments and not linked:
                    continue  # belongs to experiments outside the selection
                skipped = [v for v in model.versions if v.run_key and v.run_key not in run_keys]
                for version in skipped:
                    self._outcome(
                        Outcome(
                            OutcomeKind.SKIPPED,
                            f"model {model.name} version {version.version}",
                            f"its run {version.run_key} is not migrated (yet); a re-run links it",
                        )
                    )
                model.versions = [v for v in model.versions if v not in skipped]
                outcomes = writer.write_registered_model(model, run_keys)
                self._outcome(outcomes)
                if _stored(outcomes):
                    self._count_model("registeredModels")
                    self._count_model("modelVersions", len(model.versions))
        except Exception as error:
            self.report.errors.append(f"registered models: {type(error).__name__}: {error}")

    def _count_model(self, kind: str, count: int = 1) -> None:
        """Models the destination stored (not those it reported unsupported)."""
        self.report.models[kind] = self.report.models.get(kind, 0) + count

    # ----------------------------------------------------------------------------------------- verification

    def _verify(
        self, reader: TrackerReader, writer: TrackerWriter, experiments: list[PlannedExperiment]
    ) -> None:
        destination_reader = writer.reader()
        work: list[tuple[PlannedExperiment, PlannedRun, dict[str, Run]]] = []
        copies: dict[str, list[str]] = {}  # source identity -> every destination run that is a copy of it
        for experiment in experiments:
            found = next(iter(destination_reader.experiments([experiment.experiment.name])), None)
            found_runs = [] if found is None else list(destination_reader.runs(found))
            tagged = [(run.tags[SOURCE_TAG], run) for run in found_runs if run.tags.get(SOURCE_TAG)]
            destination_runs = dict(tagged)
            for entry in experiment.runs:
                copies[entry.identity] = [run.key for tag, run in tagged if same_source(tag, entry.identity)]
            work.extend((experiment, entry, destination_runs) for entry in experiment.runs)
        self.progress.set_phase("verifying", len(work))
        results = {r.source: r for r in self.report.runs}

        def verify(
            item: tuple[PlannedExperiment, PlannedRun, dict[str, Run]],
        ) -> tuple[RunDigest, RunDigest | None]:
            experiment, entry, destination_runs = item
            result = results.get(entry.identity)
            if result is None:
                result = results[entry.identity] = RunResult(
                    experiment.experiment.name, entry.identity, entry.run.name, "verify", entry.destination
                )
            with self._lock:
                source = self._digests.get(entry.identity)
            if source is None or (
                self.request.artifacts and not source.artifacts and entry.action == Action.SKIP
            ):
                limits = StoreLimits.of(writer)
                source = digest_run(reader, entry.run, with_artifacts=self.request.artifacts, limits=limits)
                self._outcome(limits.outcomes(entry.run.key))
            for key, series in source.series.items():
                if series.duplicates:
                    self._outcome(
                        Outcome(
                            OutcomeKind.SKIPPED,
                            f"run {entry.identity}/metric {key}",
                            f"{series.duplicates} exact repeat(s) of the previous point (same step, "
                            "timestamp and value) are stored once",
                        )
                    )
            if len(copies.get(entry.identity, [])) > 1:
                result.mismatches.append(
                    f"{len(copies[entry.identity])} copies of this source run in the destination "
                    f"(runs {', '.join(copies[entry.identity])})"
                )
            target_run = destination_runs.get(entry.identity)
            if target_run is None:
                result.mismatches.append("run missing in the destination")
                self.progress.add(runs=1)
                return source, None
            result.destination = target_run.key
            target = digest_run(destination_reader, target_run, with_artifacts=self.request.artifacts)
            if source.run.deleted and not getattr(writer, "marks_deleted", False):  # an outcome already
                target.run.deleted = True
            if not getattr(writer, "keeps_inputs", False):  # an outcome already
                target.run.inputs = source.run.inputs
            parent_identity = experiment.identities.get(entry.run.parent_key or "")
            parent = destination_runs.get(parent_identity) if parent_identity else None
            expected_parent = parent.key if parent else None
            if not self.request.artifacts:
                source.artifacts.clear()
            stored_path = getattr(writer, "stored_artifact_path", None)
            if stored_path is not None:
                source.artifacts = {stored_path(path): found for path, found in source.artifacts.items()}
            notes: list[Outcome] = []
            result.mismatches.extend(compare_runs(source, target, destination_reader, expected_parent, notes))
            self._outcome(notes)
            differing = {
                key for key, series in source.series.items()
                if key in target.series and series.differences(target.series[key])
            }
            if differing:  # name the points, read point by point from both sides
                named = differing_points(
                    storable(reader.metrics(entry.run), StoreLimits.of(writer)),
                    destination_reader.metrics(target_run),
                    differing,
                )
                result.mismatches.extend(f"metric {key!r}: {text}" for key, text in sorted(named.items()))
            self.progress.add(runs=1)
            return source, target

        with ThreadPoolExecutor(max(self.request.workers, 1), thread_name_prefix="ferryman-verify") as pool:
            digests = list(pool.map(verify, work))
        if self.request.verify_only:
            self.report.runs = list(results.values())
        self.report.source_totals = totals(s for s, _ in digests).to_dict()
        self.report.destination_totals = totals(d for _, d in digests if d is not None).to_dict()
        has_registry = not isinstance(writer, WithoutModelRegistry)  # else every model is an outcome
        if self.request.models and has_registry:
            self._verify_logged_models(reader, destination_reader, experiments)
        if self.request.models and self.request.shard_index == 0 and has_registry:
            self._verify_models(reader, destination_reader, experiments)
        self.report.verified = True

    def _verify_models(
        self, reader: TrackerReader, destination_reader: TrackerReader, experiments: list[PlannedExperiment]
    ) -> None:
        """Registered models: every version whose run was migrated exists, with its stage and aliases."""
        selected = {key for experiment in experiments for key in experiment.identities}
        try:
            copies = {model.name: model for model in destination_reader.registered_models()}
            for model in reader.registered_models():
                versions = [v for v in model.versions if v.run_key is None or v.run_key in selected]
                if not versions or (self.request.experiments and all(v.run_key is None for v in versions)):
                    continue
                copy = copies.get(model.name)
                if copy is None:
                    self.report.errors.append(f"mismatch: registered model {model.name!r} missing")
                    continue
                by_source = {v.tags.get(SOURCE_VERSION_TAG): v for v in copy.versions}
                for version in versions:
                    twin = by_source.get(version.version)
                    if twin is None:
                        self.report.errors.append(
                            f"mismatch: model {model.name!r} version {version.version} missing"
                        )
                    elif (twin.stage, sorted(twin.aliases)) != (version.stage, sorted(version.aliases)):
                        self.report.errors.append(
                            f"mismatch: model {model.name!r} version {version.version}: stage/aliases "
                            f"{version.stage}/{version.aliases} became {twin.stage}/{twin.aliases}"
                        )
        except NotImplementedError:
            return

    def _verify_logged_models(
        self, reader: TrackerReader, destination_reader: TrackerReader, experiments: list[PlannedExperiment]
    ) -> None:
        """Logged models of this shard's runs (and, in shard 0, those of no run): each is in the destination
        with its name, params, tags and metrics."""
        for experiment in experiments:
            runs = {entry.run.key for entry in experiment.runs}
            found = next(iter(destination_reader.experiments([experiment.experiment.name])), None)
            copies = {} if found is None else {
                model.tags.get(SOURCE_TAG): model for model in destination_reader.logged_models(found)
            }
            for model in reader.logged_models(experiment.experiment):
                if model.run_key not in runs and (model.run_key is not None or self.request.shard_index):
                    continue
                copy = copies.get(model.key)
                if copy is None:
                    self.report.errors.append(f"mismatch: logged model {model.name!r} ({model.key}) missing")
                    continue
                tags = {k: v for k, v in copy.tags.items() if k != SOURCE_TAG}
                differences = [
                    what for what, theirs, ours in (
                        ("name", model.name, copy.name),
                        ("params", model.params, copy.params),
                        ("tags", model.tags, tags),
                        ("metrics", _model_points(model), _model_points(copy)),
                    ) if theirs != ours
                ]
                if differences:
                    self.report.errors.append(
                        f"mismatch: logged model {model.name!r} ({model.key}): "
                        f"{', '.join(differences)} differ"
                    )


def _model_points(model: LoggedModel) -> list[tuple[Any, ...]]:
    """A logged model's metric points, comparable across trackers (the run that logged them aside)."""
    return sorted(
        (m.key, m.step, m.timestamp, repr(m.value), m.dataset_name, m.dataset_digest) for m in model.metrics
    )


def _stored(outcomes: list[Outcome]) -> bool:
    """Whether the destination stored a model (it reports the models it cannot hold as unsupported)."""
    return not any(outcome.kind is OutcomeKind.UNSUPPORTED for outcome in outcomes)


def _check_writable(uri: str, path: Path) -> None:
    """Fail at once, naming the destination, when its file or directory (or the directory it would be made
    in) cannot be written: a read-only file system or missing permissions."""
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    for candidate in {existing, existing.parent if existing.is_file() else existing}:
        if not os.access(candidate, os.W_OK):
            raise MigrationError(
                f"destination {redact(uri)} cannot be written: {candidate} is on a read-only file system "
                "or not writable by this user"
            )


class _AbsentDestination:
    """What a dry run or verify-only sees of a destination that does not exist: no experiments, no runs."""

    def migrated_runs(self, experiment_key: str) -> dict[str, DestinationRun]:
        return {}

    def reader(self) -> _AbsentDestination:
        return self

    def experiments(self, names: list[str] | None = None) -> Iterator[Experiment]:
        return iter(())

    def registered_models(self) -> Iterator[RegisteredModel]:
        return iter(())

    def close(self) -> None:
        pass


def migrate(
    request: MigrationRequest,
    progress: ProgressCallback | None = None,
    on_report: ReportCallback | None = None,
) -> MigrationReport:
    """Run a migration (or one shard of it) and return its report; `report.ok` says whether all went well.
    `on_report` receives the report as it grows, after planning and after each run."""
    return Migration(request, progress, on_report=on_report).run()
