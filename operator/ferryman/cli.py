"""The `ferryman` command line: convert manifests, migrate experiments, run the operator, drive a dev cluster.

Each command keeps its heavy imports inside its body so `ferryman convert` never pays for MLflow or kopf.
"""

from __future__ import annotations

import click

from ferryman import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ferryman")
def cli() -> None:
    """Move PyTorchJobs to Kubeflow Trainer v2 and experiments between trackers."""


def main() -> None:
    cli()
