"""ExperimentMigrations whose worker pods really run: the `make image` image in containers on the real node,
in a namespace enforcing PodSecurity ``restricted``, reading TensorBoard logs and a W&B run directory (written
by the real libraries) from a PersistentVolumeClaim (a hostPath PersistentVolume bound to it) and writing into
a real MLflow server on this host (reached from the pod network through a relay on the bridge address). The
operator runs here as a process with its shipped RBAC; the workers report through the apiserver."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lightkube import Client, codecs
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import PersistentVolume, Pod

from ferryman.kube.resources import ExperimentMigration
from ferryman_dev.image import LOCAL_IMAGE
from ferryman_dev.mlflow import MlflowServer
from ferryman_dev.node_migrations import hand_to_workers, volume_migration
from ferryman_dev.operator import OperatorProcess, running_operator
from ferryman_dev.realnode import RealNode
from ferryman_dev.waiting import wait_for
from ferryman_dev.wandb_runs import LoggedRun, write_sdk_run

pytestmark = [pytest.mark.realnode, pytest.mark.mlflow, pytest.mark.timeout(900)]
TB_RUNS, TB_STEPS = ("run-a", "run-b"), 12_000  # enough points that a worker is caught mid-copy


@pytest.fixture(scope="module")
def node_operator(
    real_node: RealNode, ferryman_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator on this host, as its ServiceAccount; its workers run the image imported into the node."""
    assert ferryman_image == LOCAL_IMAGE  # the image the operator names for its workers
    directory = tmp_path_factory.mktemp("node-operator")
    with running_operator(real_node.plane, directory, FERRYMAN_MIGRATION_SECONDS="1") as process:
        yield process


@pytest.fixture(scope="module")
def training_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, LoggedRun]:
    """A directory holding TensorBoard logs (tensorboardX) and a W&B run directory (the wandb SDK), readable
    by the workers' user; the TensorBoard experiment's and the W&B project's names are unique."""
    root = tmp_path_factory.mktemp("training-data")
    from tensorboardX import SummaryWriter

    tensorboard = f"tb-{uuid.uuid4().hex[:8]}"
    for run in TB_RUNS:
        with SummaryWriter(str(root / tensorboard / run)) as writer:
            for step in range(TB_STEPS):
                writer.add_scalar("loss", tb_value(run, step), step)
    project = f"wandb-{uuid.uuid4().hex[:8]}"
    logged = write_sdk_run(root / "wandb", "rn000001", project=project, rows=40, media=False, artifact=False)
    hand_to_workers(root)
    return root, tensorboard, logged


def tb_value(run: str, step: int) -> float:
    return 1.0 / (step + 1) + TB_RUNS.index(run)


def succeeded(kube: Client, namespace: str, name: str) -> dict[str, Any] | None:
    status = kube.get(ExperimentMigration, name, namespace=namespace).to_dict().get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    failed = conditions.get("Failed", {})
    assert failed.get("status") != "True", failed
    return status if conditions.get("Succeeded", {}).get("status") == "True" else None


def test_tensorboard_and_wandb_from_a_volume_into_mlflow_with_a_worker_killed_mid_copy(
    node_operator: OperatorProcess,
    real_node: RealNode,
    realnode_kube: Client,
    realnode_namespace: str,
    training_data: tuple[Path, str, LoggedRun],
    mlflow_destination: MlflowServer,
) -> None:
    from mlflow import MlflowClient

    kube, namespace = realnode_kube, realnode_namespace
    root, tensorboard, logged = training_data
    port = int(mlflow_destination.url.rsplit(":", 1)[1])
    destination = f"http://{real_node.host_port_for_pods(port)}"
    claim = "training-data"
    volume = real_node.host_path_claim(namespace, claim, root)
    try:
        kube.create(
            codecs.from_dict(
                volume_migration(namespace, "tb", f"tensorboard:/data/{tensorboard}", claim, destination)
            )
        )
        kube.create(
            codecs.from_dict(volume_migration(namespace, "wandb", "wandb:/data/wandb", claim, destination))
        )
        client = MlflowClient(mlflow_destination.url)

        # The TensorBoard worker is killed once the destination holds some of its points, not all.
        def copying() -> Pod | None:
            experiment = client.get_experiment_by_name(tensorboard)
            if experiment is None:
                return None
            runs = client.search_runs([experiment.experiment_id])
            points = sum(len(client.get_metric_history(r.info.run_id, "loss")) for r in runs)
            pods = kube.list(Pod, namespace=namespace, labels={"job-name": "tb-1"})
            running = [p for p in pods if p.status.phase == "Running"]
            return running[0] if 0 < points < len(TB_RUNS) * TB_STEPS and running else None

        victim = wait_for(copying, "the TensorBoard worker mid-copy", timeout=300, interval=0.2)
        kube.delete(Pod, victim.metadata.name, namespace=namespace, grace_period=0)

        tb_status = wait_for(
            lambda: succeeded(kube, namespace, "tb"), "the TensorBoard migration", timeout=400
        )
        wandb_status = wait_for(lambda: succeeded(kube, namespace, "wandb"), "the W&B migration", timeout=400)
        assert all(shard["verified"] for shard in tb_status["shards"] + wandb_status["shards"])
        # the Job ran another pod for the killed one, and that pod finished the shard (the status says so
        # once the worker reported; the pod's phase follows when its process has exited)
        wait_for(
            lambda: kube.get(Job, "tb-1", namespace=namespace).status.succeeded == 1, "the tb-1 Job done"
        )
        pods = kube.list(Pod, namespace=namespace, labels={"job-name": "tb-1"})
        finished = [p.metadata.uid for p in pods if p.status.phase == "Succeeded"]
        assert len(finished) == 1 and victim.metadata.uid not in finished

        # TensorBoard: every point once, as tensorboardX wrote it (float32), none lost or repeated
        experiment = client.get_experiment_by_name(tensorboard)
        runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
        assert sorted(runs) == sorted(TB_RUNS)
        for name in TB_RUNS:
            history = client.get_metric_history(runs[name].info.run_id, "loss")
            assert sorted(m.step for m in history) == list(range(TB_STEPS))
            for metric in history:
                assert metric.value == float(np.float32(tb_value(name, metric.step)))

        # W&B: every point once, at its step and timestamp
        experiment = client.get_experiment_by_name(logged.project)
        (run,) = client.search_runs([experiment.experiment_id])
        logged.assert_in_mlflow(client, run.info.run_id)
    finally:
        kube.delete(ExperimentMigration, "tb", namespace=namespace)
        kube.delete(ExperimentMigration, "wandb", namespace=namespace)
        kube.delete(PersistentVolume, volume)
