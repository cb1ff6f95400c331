"""The operator as shipped: deployed from ``deploy/kustomize/base`` (image overridden to the local one) as
pods on the real node, with its RBAC, admission policy, leader election, PodSecurity ``restricted`` namespace
and probes, driving a CutoverPolicy through Plan and Mirror, then running an ExperimentMigration's worker Job
on its own image."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from lightkube import ApiError, Client, codecs
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import PersistentVolume, Pod
from lightkube.types import PatchType

from ferryman.api.admission import worker_account
from ferryman.kube.resources import CutoverPolicy, ExperimentMigration, TrainJob
from ferryman_dev.cluster import ControlPlane
from ferryman_dev.mlflow import MlflowServer
from ferryman_dev.node_migrations import hand_to_workers, volume_migration
from ferryman_dev.operator import (
    OPERATOR_ACCOUNT,
    OPERATOR_NAMESPACE,
    assert_clean_log,
    install_ferryman,
    rendered_base,
)
from ferryman_dev.realnode import RealNode
from ferryman_dev.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.realnode, pytest.mark.timeout(1800)]
TB_STEPS, TB_T0 = 300, 1_760_000_000.0  # TensorBoard points of the migration, and the first one's wall time


@dataclass
class DeployedOperator:
    """The operator's Deployment once both replicas are ready: their pods, and the base's admission policy."""

    pods: list[Pod]
    admission_policy: str


@pytest.fixture(scope="module")
def deployed_operator(
    real_node: RealNode, realnode_kube: Client, ferryman_image: str
) -> Iterator[DeployedOperator]:
    """The base installed (CRDs, the restricted namespace, RBAC, admission policy) and its Deployment's
    replicas ready; the Deployment is deleted afterwards."""
    kube = realnode_kube
    documents = install_ferryman(real_node.plane)
    (policy,) = (d["metadata"]["name"] for d in documents if d["kind"] == "ValidatingAdmissionPolicy")
    deployment = operator_deployment(ferryman_image)
    kube.apply(codecs.from_dict(deployment), force=True)

    def all_ready() -> list[Pod]:
        pods = operator_pods(kube)
        statuses = [status for pod in pods for status in pod.status.containerStatuses or []]
        wanted = deployment["spec"]["replicas"]
        return pods if len(statuses) == len(pods) == wanted and all(s.ready for s in statuses) else []

    # both replicas ready: the leader once indexed, the standby while it waits for the Lease
    yield DeployedOperator(wait_for(all_ready, "the operator pods ready", timeout=300), policy)
    kube.delete(Deployment, "ferryman-operator", namespace=OPERATOR_NAMESPACE)


def operator_deployment(image: str) -> dict[str, Any]:
    """The base's Deployment, its image the one imported into the node (the workers' too: the operator
    reads it from its own pod)."""
    (deployment,) = (d for d in rendered_base() if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container["image"] = image
    container["imagePullPolicy"] = "Never"
    assert "FERRYMAN_IMAGE" not in {variable["name"] for variable in container["env"]}
    return deployment


def example_jobs(namespace: str) -> list[dict[str, Any]]:
    jobs = []
    for path in sorted((ROOT / "examples" / "pytorchjobs").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "PyTorchJob":
                document["metadata"]["namespace"] = namespace
                # the Training Operator runs beside it here, and its webhook wants a Master's replicas
                master = document["spec"]["pytorchReplicaSpecs"].get("Master")
                if master is not None:
                    master.setdefault("replicas", 1)
                jobs.append(document)
    return jobs


def ready_status(kube: Client, name: str, generation: int | None = None) -> dict[str, Any] | None:
    policy = kube.get(CutoverPolicy, name).to_dict()
    status = policy.get("status") or {}
    wanted = generation or policy["metadata"]["generation"]
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return (
        status if status.get("observedGeneration") == wanted and conditions.get("Ready") == "True" else None
    )


def operator_pods(kube: Client) -> list[Pod]:
    return list(
        kube.list(Pod, namespace=OPERATOR_NAMESPACE, labels={"app.kubernetes.io/component": "operator"})
    )


def assert_operator_unharmed(kube: Client, operator: DeployedOperator) -> None:
    """The same pods all along (their liveness probes, through the pod network, never failed them), never
    restarted, and nothing they asked refused (by RBAC or the admission policy), no traceback logged."""
    after = operator_pods(kube)
    assert {p.metadata.uid for p in after} == {p.metadata.uid for p in operator.pods}
    for pod in after:
        assert pod.status.containerStatuses[0].restartCount == 0
        assert_clean_log("".join(kube.log(pod.metadata.name, namespace=OPERATOR_NAMESPACE)))


def test_operator_pods_plan_and_mirror(
    deployed_operator: DeployedOperator, realnode_kube: Client, realnode_namespace: str
) -> None:
    kube, namespace = realnode_kube, realnode_namespace
    jobs = example_jobs(namespace)
    for job in jobs:
        kube.create(codecs.from_dict(job))
    name = f"cutover-{namespace}"
    selector = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    policy = {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "CutoverPolicy",
        "metadata": {"name": name},
        "spec": {"namespaceSelector": selector, "mode": "Plan"},
    }
    kube.create(codecs.from_dict(policy))
    try:
        status = wait_for(lambda: ready_status(kube, name), "the Plan Ready", timeout=180)
        assert status["jobs"] == status["convertible"] == len(jobs) and status["blocked"] == 0
        assert list(kube.list(TrainJob, namespace=namespace)) == []

        patched = kube.patch(
            CutoverPolicy,
            name,
            {"spec": {"mode": "Mirror", "mirror": {"suspend": True}}},
            patch_type=PatchType.MERGE,
        )
        status = wait_for(
            lambda: ready_status(kube, name, patched.metadata.generation), "the Mirror Ready", timeout=180
        )
        mirrored = list(kube.list(TrainJob, namespace=namespace))
        assert len(mirrored) == len(jobs) == status["trainJobs"]["present"]
        assert all(t.to_dict()["spec"]["suspend"] is True for t in mirrored)
    finally:
        kube.delete(CutoverPolicy, name)
    assert_operator_unharmed(kube, deployed_operator)


def tb_value(step: int) -> float:
    return 1.0 / (step + 1)


def tb_wall_time(step: int) -> float:
    return TB_T0 + step * 0.125  # exact in binary: the millisecond timestamp MLflow keeps is exact too


def policy_checks(plane: ControlPlane, policy: str) -> float:
    """What the apiserver's /metrics counts for admission policy `policy`: its denials (and admissions after
    an evaluation error; an admission that passed every validation is not counted)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = subprocess.run(
        ["kubectl", f"--kubeconfig={plane.kubeconfig}", "get", "--raw", "/metrics"],
        check=True, capture_output=True, text=True,
    ).stdout
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "apiserver_validating_admission_policy_check_total"
        and sample.labels.get("policy") == policy
    )


@pytest.mark.mlflow
def test_operator_pod_runs_a_migration_worker_on_its_own_image(
    deployed_operator: DeployedOperator,
    real_node: RealNode,
    realnode_kube: Client,
    realnode_namespace: str,
    ferryman_image: str,
    mlflow_destination: MlflowServer,
    tmp_path: Path,
) -> None:
    """The path users run: the operator in its pod reads the workers' image from that pod, creates their
    ServiceAccount, Role, RoleBinding and Indexed Job under its RBAC and the admission policy; the worker
    copies TensorBoard logs (tensorboardX) from a claim into the MLflow server on this host."""
    from mlflow import MlflowClient
    from tensorboardX import SummaryWriter

    kube, namespace, plane = realnode_kube, realnode_namespace, real_node.plane
    experiment = f"tb-{uuid.uuid4().hex[:8]}"
    with SummaryWriter(str(tmp_path / experiment / "run-a")) as writer:
        for step in range(TB_STEPS):
            writer.add_scalar("loss", tb_value(step), step, walltime=tb_wall_time(step))
    hand_to_workers(tmp_path)
    claim = "training-data"
    volume = real_node.host_path_claim(namespace, claim, tmp_path)
    port = int(mlflow_destination.url.rsplit(":", 1)[1])
    destination = f"http://{real_node.host_port_for_pods(port)}"
    manifest = volume_migration(namespace, "tb", f"tensorboard:/data/{experiment}", claim, destination)
    assert "workerImage" not in manifest["spec"]  # the operator's own image, read from its pod
    # the policy is enforced and its refusals are counted: a count unchanged at the end means none
    thief = plane.token_client(plane.mint_token(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT), namespace)
    unlabelled = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}}
    with pytest.raises(ApiError, match="ferryman operator"):
        thief.create(codecs.from_dict(unlabelled), dry_run=True)
    checks = policy_checks(plane, deployed_operator.admission_policy)
    assert checks >= 1
    kube.create(codecs.from_dict(manifest))
    try:
        # as a user waits for it
        waited = subprocess.run(
            ["kubectl", f"--kubeconfig={plane.kubeconfig}", "-n", namespace, "wait",
             "--for=condition=Succeeded", "experimentmigration/tb", "--timeout=180s"],
            capture_output=True, text=True,
        )
        status = kube.get(ExperimentMigration, "tb", namespace=namespace).to_dict().get("status") or {}
        assert waited.returncode == 0, (waited.stderr, status)
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions["Ready"] == "True" and conditions.get("Failed") != "True", status
        assert [shard["verified"] for shard in status["shards"]] == [True]

        # one worker pod, of the operator's image, as the migration's worker account, ran to completion
        (job,) = kube.list(Job, namespace=namespace)
        wait_for(lambda: kube.get(Job, job.metadata.name, namespace=namespace).status.succeeded == 1,
                 f"the Job {job.metadata.name} done")
        pods = list(kube.list(Pod, namespace=namespace, labels={"job-name": job.metadata.name}))
        assert [p.status.phase for p in pods] == ["Succeeded"]
        assert [c.image for c in pods[0].spec.containers] == [ferryman_image]
        assert pods[0].spec.serviceAccountName == worker_account("tb")

        # every point, at its step and timestamp, with the value tensorboardX wrote (float32)
        client = MlflowClient(mlflow_destination.url)
        (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted((m.step, m.timestamp, m.value) for m in history) == [
            (step, round(tb_wall_time(step) * 1000), float(np.float32(tb_value(step))))
            for step in range(TB_STEPS)
        ]

        assert policy_checks(plane, deployed_operator.admission_policy) == checks  # the operator's: none
        assert_operator_unharmed(kube, deployed_operator)
    finally:
        kube.delete(ExperimentMigration, "tb", namespace=namespace)
        kube.delete(PersistentVolume, volume)
