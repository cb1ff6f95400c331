"""The operator as shipped: deployed from ``deploy/kustomize/base`` (image overridden to the local one) as
pods on the real node, with its RBAC, leader election, PodSecurity ``restricted`` namespace and probes,
driving a CutoverPolicy through Plan and Mirror."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client, codecs
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from ferryman.kube.resources import CutoverPolicy, TrainJob
from ferryman_dev.operator import OPERATOR_NAMESPACE, install_ferryman, rendered_base
from ferryman_dev.realnode import RealNode
from ferryman_dev.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.realnode, pytest.mark.timeout(1800)]


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


def operator_pods(kube: Client) -> list[Any]:
    return list(
        kube.list(Pod, namespace=OPERATOR_NAMESPACE, labels={"app.kubernetes.io/component": "operator"})
    )


def test_operator_pods_plan_and_mirror(
    real_node: RealNode, realnode_kube: Client, realnode_namespace: str, ferryman_image: str
) -> None:
    kube, namespace = realnode_kube, realnode_namespace
    install_ferryman(real_node.plane)  # CRDs, the restricted namespace, RBAC
    deployment = operator_deployment(ferryman_image)
    kube.apply(codecs.from_dict(deployment), force=True)

    def all_ready() -> list[Any]:
        pods = operator_pods(kube)
        statuses = [status for pod in pods for status in pod.status.containerStatuses or []]
        wanted = deployment["spec"]["replicas"]
        return pods if len(statuses) == len(pods) == wanted and all(s.ready for s in statuses) else []

    # both replicas ready: the leader once indexed, the standby while it waits for the Lease
    pods = wait_for(all_ready, "the operator pods ready", timeout=300)
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

    # the same pods all along: their liveness probes (through the pod network) never failed them
    after = operator_pods(kube)
    assert {p.metadata.uid for p in after} == {p.metadata.uid for p in pods}
    for pod in after:
        assert pod.status.containerStatuses[0].restartCount == 0
        logs = "".join(kube.log(pod.metadata.name, namespace=OPERATOR_NAMESPACE))
        assert "forbidden" not in logs.lower() and "Traceback" not in logs, logs[-4000:]
    kube.delete(Deployment, "ferryman-operator", namespace=OPERATOR_NAMESPACE)
