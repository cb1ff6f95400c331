"""The `ferryman` command line: convert manifests, migrate experiments, run the operator.

Each command keeps its heavy imports inside its body so `ferryman convert` never pays for MLflow or kopf.
Other installed distributions add command groups through the entry-point group `ferryman.commands`
(ferryman-dev adds `ferryman dev cluster`); they load only when named or listed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ferryman import __version__
from ferryman.cli.options import conversion_options, options_from

COMMANDS_ENTRY_POINTS = "ferryman.commands"


class CommandsWithPlugins(click.Group):
    """ferryman's own commands, then those registered under the `ferryman.commands` entry points."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from importlib.metadata import entry_points  # 0.1-0.2 s: only for the help and plugins

        plugins = {entry.name for entry in entry_points(group=COMMANDS_ENTRY_POINTS)}
        return sorted({*super().list_commands(ctx), *plugins})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        from importlib.metadata import entry_points

        plugins = entry_points(group=COMMANDS_ENTRY_POINTS, name=cmd_name)
        return next((entry.load() for entry in plugins), None)


@click.group(cls=CommandsWithPlugins, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ferryman")
def cli() -> None:
    """Move Training Operator v1 jobs to Kubeflow Trainer v2 and experiments between trackers."""


@cli.command("convert")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("-o", "--output", type=click.Path(),
              help="Write here: a file, or a directory mirroring the inputs (an existing one, or a path "
                   "ending in /).")
@click.option("--in-place", is_flag=True, help="Rewrite the files, changing only the converted jobs.")
@click.option("--report", "report_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--strict", is_flag=True, help="Exit 1 when any job has a blocker.")
@conversion_options
def convert_command(
    paths: tuple[str, ...],
    output: str | None,
    in_place: bool,
    report_format: str,
    trainer_api: str,
    strict: bool,
    no_derived_runtime: bool,
    strict_elastic: bool,
    force: bool,
    launcher: str,
    runtime_rules: Path | None,
    template: bool | None,
) -> None:
    """Convert the v1 jobs (PyTorchJob, MPIJob, JAXJob, XGBoostJob, TFJob, PaddleJob) in manifest files
    (PATH: a file, a directory or - for stdin) to TrainJobs.

    Without -o or --in-place the converted manifests go to stdout and the report to stderr.
    Exit codes: 0 converted, 1 blockers with --strict, 2 usage or parse errors.
    """
    from ferryman.cli.convert import UsageError, run_convert

    options = options_from(
        trainer_api=trainer_api, no_derived_runtime=no_derived_runtime, strict_elastic=strict_elastic,
        force=force, launcher=launcher, runtime_rules=runtime_rules,
    )
    try:
        if output is not None and output.endswith(("/", os.sep)):
            Path(output).mkdir(parents=True, exist_ok=True)  # a directory, even for a single input file
        code = run_convert(
            list(paths), options, output=Path(output) if output is not None else None, in_place=in_place,
            report_format=report_format, strict=strict, template=template,
        )
    except UsageError as error:
        raise click.UsageError(str(error)) from None
    sys.exit(code)


@cli.command("migrate")
@click.option("--from", "source", metavar="URI",
              help="Source: MLflow tracking URI (http(s)://, sqlite:, postgresql:, mlruns path), "
                   "tensorboard:PATH, wandb:PATH, wandb://ENTITY/PROJECT or neptune-export:PATH.")
@click.option("--to", "destination", metavar="URI",
              help="Destination: MLflow tracking URI (http(s)://, sqlite:, postgresql:), tensorboard:PATH, "
                   "wandb:PATH (offline runs; online with WANDB_API_KEY) or neptune-export:PATH "
                   "(default: an embedded MLflow store, sqlite:///./mlflow.db).")
@click.option("-f", "--file", "spec_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Run an ExperimentMigration manifest (its spec) locally instead of --from/--to.")
@click.option("--experiment", "experiments", multiple=True, metavar="NAME",
              help="Source experiment (repeatable).")
@click.option("--since", metavar="TIME",
              help="Only runs started since: ISO date/time, epoch ms or 7d/12h ago.")
@click.option("--dry-run", is_flag=True, help="Plan and count; write nothing.")
@click.option("--workers", type=click.IntRange(1, 64), help="Runs copied in parallel (default 4).")
@click.option("--report", "report_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the JSON report here.")
@click.option("--verify-only", is_flag=True,
              help="Re-check an earlier migration point by point; write nothing.")
@click.option("--no-verify", is_flag=True, help="Skip the verification after copying.")
@click.option("--no-artifacts", is_flag=True, help="Do not copy artifacts.")
@click.option("--shard-index", type=int, help="Copy only this shard of the runs (0-based)...")
@click.option("--shard-count", type=int, help="...out of this many (runs assigned by a stable hash).")
@click.option("--shard-from-env", "shard_env", is_flag=True,
              help="Shard from JOB_COMPLETION_INDEX and FERRYMAN_SHARDS.")
@click.option("--report-to", metavar="experimentmigration/NS/NAME",
              help="In a worker pod: report progress and the report to this ExperimentMigration.")
@click.option("--include-deleted", is_flag=True,
              help="Copy deleted runs too, as deleted runs (by default each is skipped and counted).")
@click.option("--allow-empty", is_flag=True, help="Exit 0 when the source holds no runs.")
@click.option("--json", "json_output", is_flag=True, help="Print the JSON report to stdout.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress or tracker library logs; print the summary only on failure.")
def migrate_command(source: str | None, destination: str | None, spec_file: Path | None,
            experiments: tuple[str, ...], since: str | None, dry_run: bool, workers: int | None,
            report_file: Path | None, verify_only: bool, no_verify: bool, no_artifacts: bool,
            shard_index: int | None, shard_count: int | None, shard_env: bool, report_to: str | None,
            include_deleted: bool, allow_empty: bool, json_output: bool, quiet: bool) -> None:
    """Copy experiments between trackers: resumable, idempotent, verified point by point.

    Exit codes: 0 migrated and verified, 1 mismatches or failed runs (see the report), 2 could not run.
    """
    from ferryman.cli.migrate import DEFAULT_DESTINATION, request_from_spec, run, shard_from_env
    from ferryman.migrate.plan import MigrationError, MigrationRequest, parse_since

    try:
        if spec_file is not None:
            if source or destination:
                raise click.UsageError("use either -f or --from/--to")
            request = request_from_spec(spec_file)
        elif source:
            request = MigrationRequest(source, destination or DEFAULT_DESTINATION, since=parse_since(since))
        else:
            raise click.UsageError("give --from URI (and --to URI) or -f migration.yaml")
        if experiments:
            request.experiments = list(experiments)
        if since and spec_file is not None:
            request.since = parse_since(since)
        request.dry_run = request.dry_run or dry_run
        request.verify_only = request.verify_only or verify_only
        request.verify = request.verify and not no_verify
        request.artifacts = request.artifacts and not no_artifacts
        request.include_deleted = request.include_deleted or include_deleted
        request.allow_empty = request.allow_empty or allow_empty
        if workers is not None:
            request.workers = workers
        if shard_env:
            request.shard_index, request.shard_count = shard_from_env()
        if shard_index is not None or shard_count is not None:
            request.shard_index = shard_index or 0
            request.shard_count = shard_count or request.shard_count
        request.check()
    except MigrationError as error:
        raise click.UsageError(str(error)) from None
    reporter = None
    if report_to:
        from ferryman.cli.worker import MigrationReporter, ReportTargetError

        try:
            reporter = MigrationReporter(report_to, request.shard_index)
        except ReportTargetError as error:
            raise click.UsageError(str(error)) from None
    sys.exit(run(request, report_file=report_file, json_output=json_output, quiet=quiet, reporter=reporter))


@cli.command("plan")
@click.argument("policy")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, exists=True),
              help="Kubeconfig to read the cluster with (default: $KUBECONFIG, ~/.kube/config, in-cluster).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Reviewable YAML documents, or JSON.")
def plan_command(policy: str, kubeconfig: str | None, output: str) -> None:
    """Preview what CutoverPolicy POLICY's Mirror and Takeover would create and change (writes nothing)."""
    from ferryman.cli.plan import preview, read_cluster, render

    click.echo(render(preview(read_cluster(policy, kubeconfig)), output), nl=False)


@cli.command("operator")
@click.option("--liveness", default="http://0.0.0.0:8080/healthz", show_default=True,
              help="Liveness endpoint URL ('' to disable).")
@click.option("--readiness", default="", help="Readiness endpoint URL, ready once the indexes are complete "
              "(for example http://0.0.0.0:8081/readyz; off by default).")
@click.option("--metrics", default="", help="Prometheus metrics endpoint URL "
              "(for example http://0.0.0.0:9090/metrics; off by default).")
@click.option("--verbose", is_flag=True, help="Log kopf's debug output.")
def operator_command(liveness: str, readiness: str, metrics: str, verbose: bool) -> None:
    """Run the ferryman operator (CutoverPolicy and ExperimentMigration) against the current kubeconfig."""
    from ferryman.controller.run import run_operator

    run_operator(
        liveness=liveness or None, readiness=readiness or None, metrics=metrics or None, verbose=verbose
    )


def main() -> None:
    cli()
