"""The `ferryman verify` command (registered through the `ferryman.commands` entry points)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ferryman.cli.options import conversion_options, options_from


@click.command("verify")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--report", "report_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@conversion_options
def verify(
    paths: tuple[str, ...],
    report_format: str,
    trainer_api: str,
    no_derived_runtime: bool,
    strict_elastic: bool,
    force: bool,
    launcher: str,
    runtime_rules: Path | None,
    template: bool | None,
) -> None:
    """Run each v1 PyTorchJob in PATH (files or directories) under the Training Operator and its conversion
    under Kubeflow Trainer and JobSet, in a disposable sandbox control plane, and compare the pods both
    sides render, rank by rank.

    Every difference is either explained by a finding of the conversion report or counted as unexplained.
    Exit codes: 0 no unexplained difference, 1 unexplained differences, 2 usage errors (a missing PATH) or
    no sandbox (build its binaries with `make cluster-bins`).
    """
    from ferryman_dev.cluster import ClusterError
    from ferryman_dev.upstream import UpstreamUnavailable
    from ferryman_dev.verify import render_json, render_text, verify_paths

    if trainer_api != "v2.2":
        raise click.UsageError(
            f"--trainer-api {trainer_api}: the sandbox runs Kubeflow Trainer v2.3.0, which serves the v2.2 "
            "flavour only"
        )
    options = options_from(
        trainer_api=trainer_api, no_derived_runtime=no_derived_runtime, strict_elastic=strict_elastic,
        force=force, launcher=launcher, runtime_rules=runtime_rules,
    )
    if "-" in paths:
        raise click.UsageError("verify reads files and directories, not standard input")

    def progress(message: str) -> None:
        click.echo(f"verify: {message}", err=True)

    try:
        report = verify_paths(list(paths), options, template=template, progress=progress)
    except FileNotFoundError as error:
        raise click.UsageError(str(error)) from None
    except (ClusterError, UpstreamUnavailable) as error:
        click.echo(f"ferryman verify: cannot start the sandbox control plane: {error}", err=True)
        sys.exit(2)
    click.echo(render_json(report) if report_format == "json" else render_text(report), nl=False)
    sys.exit(report.exit_code)
