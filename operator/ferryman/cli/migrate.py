"""`ferryman migrate` on a terminal: build the request, show progress, write the report, exit code."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ferryman.migrate.copy import Progress, ProgressCallback, ReportCallback, migrate
from ferryman.migrate.plan import MigrationError, MigrationRequest, RunFilter, parse_since
from ferryman.migrate.report import MigrationReport
from ferryman.trackers.mlflow.backend import artifact_root_of
from ferryman.trackers.registry import redact

if TYPE_CHECKING:
    from ferryman.cli.worker import MigrationReporter

DEFAULT_DESTINATION = "sqlite:///./mlflow.db"  # embedded MLflow store, artifacts in ./mlflow-artifacts
EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2
PROGRESS_LINE_SECONDS = 5.0  # without a terminal: one progress line this often (and at each phase)
REPORT_WRITE_SECONDS = 1.0  # a growing report is rewritten at most this often
TRACKER_LOGGERS = ("mlflow", "alembic")  # libraries that log INFO lines of their own


def request_from_spec(path: Path) -> MigrationRequest:
    """A request from an ExperimentMigration manifest (or bare spec); credentials come from the
    environment (the operator maps the spec's Secret references to FERRYMAN_SOURCE_* / _DESTINATION_*)."""
    from pydantic import ValidationError

    from ferryman.api.experimentmigration import load_spec
    from ferryman.convert.manifests import load_document

    try:
        document = load_document(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise MigrationError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None
    except (OSError, yaml.YAMLError) as error:
        raise MigrationError(f"{path}: {error}") from None
    if not isinstance(document, dict):
        raise MigrationError(f"{path}: expected an ExperimentMigration manifest (a mapping)")
    try:
        spec = load_spec(document)
    except ValidationError as error:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise MigrationError(f"{path}: {problems}") from None
    selection, options = spec.selection, spec.options
    return MigrationRequest(
        source=spec.source.uri,
        destination=spec.destination.uri,
        experiments=list(selection.experiments),
        since=parse_since(selection.since),
        run_filter=RunFilter(
            list(selection.runs.names), list(selection.runs.statuses), dict(selection.runs.tags)
        ),
        dry_run=options.dry_run,
        verify=options.verify,
        verify_only=options.verify_only,
        workers=options.workers,
        artifacts=options.artifacts,
        models=options.models,
        include_deleted=options.include_deleted,
        allow_empty=options.allow_empty,
        shard_count=spec.parallelism,
    )


def shard_from_env(env: dict[str, str] | None = None) -> tuple[int, int]:
    """(index, count) of an Indexed Job pod: JOB_COMPLETION_INDEX and FERRYMAN_SHARDS."""
    env = dict(os.environ) if env is None else env
    try:
        return int(env.get("JOB_COMPLETION_INDEX", "0")), int(env.get("FERRYMAN_SHARDS", "1"))
    except ValueError:
        raise MigrationError("JOB_COMPLETION_INDEX and FERRYMAN_SHARDS must be integers") from None


def progress_lines(interval: float = PROGRESS_LINE_SECONDS) -> ProgressCallback:
    """Progress as plain lines on stderr (CI, `kubectl logs`): at each phase and every `interval` seconds."""
    last: dict[str, float] = {}

    def update(progress: Progress) -> None:
        now = time.monotonic()
        if progress.phase in last and now - last[progress.phase] < interval:
            return
        last[progress.phase] = now
        print(f"ferryman migrate: {progress.phase} shard {progress.shard}: runs {progress.runs_done}/"
              f"{progress.runs_total}, points {progress.points_written:,} "
              f"({progress.points_per_second:,.0f}/s), {progress.bytes_written:,} bytes, "
              f"{progress.elapsed:.0f}s", file=sys.stderr, flush=True)

    return update


def report_writer(path: Path, interval: float = REPORT_WRITE_SECONDS) -> ReportCallback:
    """Rewrite the JSON report at `path` as the migration goes (atomically: a reader or a kill never finds
    half a document): at most once per `interval`, and at once for the first finished run; the final
    report is always written."""
    last = [0.0]
    runs_written = [False]

    def write(report: MigrationReport) -> None:
        now = time.monotonic()
        first_run = bool(report.runs) and not runs_written[0]
        if report.partial and now - last[0] < interval and not first_run:
            return
        last[0] = now
        runs_written[0] = runs_written[0] or bool(report.runs)
        write_report(path, report)

    return write


def write_report(path: Path, report: MigrationReport) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(report.to_json() + "\n")
    partial.replace(path)


def quiet_tracker_logs() -> None:
    """MLflow's and alembic's INFO lines off (MLflow reads MLFLOW_LOGGING_LEVEL when first imported)."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in TRACKER_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def progress_display(enabled: bool) -> Iterator[ProgressCallback | None]:
    """Rich progress bars (runs, points/s, ETA) on a terminal; progress lines otherwise."""
    if not enabled:
        yield None
        return
    if not sys.stderr.isatty():
        yield progress_lines()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as Bars

    bars = Bars(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs  {task.fields[points]:>12,} points  {task.fields[rate]:>9,.0f}/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        transient=False,
    )
    tasks: dict[str, Any] = {}

    def update(progress: Progress) -> None:
        task = tasks.get(progress.phase)
        if task is None:
            task = tasks[progress.phase] = bars.add_task(progress.phase, total=progress.runs_total or None,
                                                         points=0, rate=0.0)
        bars.update(task, completed=progress.runs_done, total=progress.runs_total or None,
                    points=progress.points_written, rate=progress.points_per_second)

    with bars:
        yield update


def run(request: MigrationRequest, *, report_file: Path | None, json_output: bool, quiet: bool,
        reporter: MigrationReporter | None = None) -> int:
    """Run the migration and print its summary; returns the exit code. A `reporter` (a worker pod's
    `--report-to`) also receives the progress and the outcome."""
    if quiet:
        quiet_tracker_logs()
    if request.destination == DEFAULT_DESTINATION and not quiet:
        database = Path("mlflow.db").resolve()
        artifacts = artifact_root_of(database)
        print(f"Destination: embedded MLflow store {database} (artifacts in {artifacts}); "
              f"browse it with: mlflow ui --backend-store-uri sqlite:///{database}", file=sys.stderr)
    try:
        with progress_display(not quiet and not json_output) as callback:
            on_report = report_writer(report_file) if report_file is not None else None
            report = migrate(request, _fan_out(callback, reporter), on_report)
    except Exception as error:  # connection, credentials, corrupt stores: name what failed
        message = str(error) if isinstance(error, MigrationError) else f"{type(error).__name__}: {error}"
        message = redact(message)
        print(f"ferryman migrate: {message}", file=sys.stderr)
        if reporter is not None:
            reporter.errored(message)
        return EXIT_ERROR
    if reporter is not None:
        reporter.finished(report)
    _emit(report, json_output, quiet)
    return EXIT_OK if report.ok else EXIT_MISMATCH


def _fan_out(*callbacks: ProgressCallback | None) -> ProgressCallback | None:
    active = [callback for callback in callbacks if callback is not None]
    if not active:
        return None

    def call(progress: Progress) -> None:
        for callback in active:
            callback(progress)

    return call


def _emit(report: MigrationReport, json_output: bool, quiet: bool) -> None:
    if json_output:
        print(report.to_json())
    elif not quiet or not report.ok:
        print(report.summary(), file=sys.stderr)
