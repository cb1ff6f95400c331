"""`ferryman dev` (also the `ferryman-dev` script): a local control plane built by `make cluster-bins`.

Registered under the `ferryman.commands` entry points, so the `ferryman` CLI offers it when this
package is installed; ferryman itself never imports the harness.
"""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def dev() -> None:
    """Developer tooling: a local control plane built by `make cluster-bins`."""


@dev.group("cluster")
def dev_cluster() -> None:
    """A local etcd + kube-apiserver (+ controllers, scheduler, kwok fake nodes) on 127.0.0.1."""


@dev_cluster.command("up")
@click.option("--controllers/--no-controllers", default=True, show_default=True,
              help="Run kube-controller-manager, kube-scheduler and kwok with fake (GPU) nodes.")
@click.option("--trainer-api", type=click.Choice(["v2.0", "v2.1", "v2.2"]), default="v2.2", show_default=True,
              help="Flavour of the upstream Trainer CRDs to install.")
@click.option("--upstream", default="", metavar="NAMES",
              help="Also run these upstream controllers, comma-separated: trainer, jobset, "
              "training-operator, mpi-operator, kueue (built by e2e/bins/build.sh <name>).")
def dev_cluster_up(controllers: bool, trainer_api: str, upstream: str) -> None:
    """Start the cluster in the background (state in .cache/dev-cluster/)."""
    from ferryman.api.trainer import TrainerAPI
    from ferryman_dev.cluster import ClusterError, ClusterSpec, cluster_up, dev_state_dir
    from ferryman_dev.controllers import CONTROLLERS

    names = tuple(name.strip() for name in upstream.split(",") if name.strip())
    unknown = [name for name in names if name not in CONTROLLERS]
    if unknown:
        known = ", ".join(CONTROLLERS)
        raise click.BadParameter(f"unknown controller(s) {', '.join(unknown)}; known: {known}")
    spec = ClusterSpec(
        controllers=controllers,
        kwok=controllers,
        trainer_api=TrainerAPI(trainer_api),
        upstream_controllers=names,
    )
    try:
        plane = cluster_up(dev_state_dir(), spec, lambda message: click.echo(message, err=True))
    except ClusterError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"KUBECONFIG={plane.kubeconfig}")


@dev_cluster.command("down")
def dev_cluster_down() -> None:
    """Stop the cluster and delete its etcd data."""
    from ferryman_dev.cluster import cluster_down, dev_state_dir

    click.echo("stopped" if cluster_down(dev_state_dir()) else "no dev cluster was running", err=True)


@dev_cluster.command("env")
def dev_cluster_env() -> None:
    """Print `export KUBECONFIG=...` for `eval $(ferryman dev cluster env)`."""
    import shlex

    from ferryman_dev.cluster import ControlPlane, dev_state_dir

    plane = ControlPlane.load(dev_state_dir())
    if not plane.running():
        raise click.ClickException("no dev cluster is running; start one with `ferryman dev cluster up`")
    click.echo(f"export KUBECONFIG={shlex.quote(str(plane.kubeconfig))}")
