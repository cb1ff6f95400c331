"""The local control plane is a real cluster: CRDs, controllers, scheduling onto fake GPU nodes, GC, RBAC."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from lightkube import ApiError
from lightkube.models.batch_v1 import JobSpec
from lightkube.models.core_v1 import (
    Container,
    PodSpec,
    PodTemplateSpec,
    ResourceRequirements,
    Toleration,
)
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ConfigMap, Node, Pod, Secret, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding
from lightkube.types import CascadeType

from ferryman_dev.cluster import GPU_RESOURCE, ControlPlane
from ferryman_dev.upstream import upstream_crds

pytestmark = pytest.mark.cluster

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    """The first truthy result of ``probe``, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def has_condition(obj: Any, kind: str) -> bool:
    conditions = (obj.status.conditions if obj.status else None) or []
    return any(c.type == kind and c.status == "True" for c in conditions)


def test_upstream_crds_are_established_and_runtimes_installed(kube: Any) -> None:
    from lightkube.generic_resource import create_global_resource

    for path in upstream_crds():
        name = path.name.split("_", 1)[1].removesuffix(".yaml") + "." + path.name.split("_", 1)[0]
        assert has_condition(kube.get(CustomResourceDefinition, name), "Established"), name
    runtimes = create_global_resource(
        "trainer.kubeflow.org", "v1alpha1", "ClusterTrainingRuntime", "clustertrainingruntimes"
    )
    assert "torch-distributed" in {r.metadata.name for r in kube.list(runtimes)}


def test_fake_gpu_nodes_advertise_gpus_and_carry_the_gpu_taint(kube: Any) -> None:
    gpu_nodes = [n for n in kube.list(Node) if n.metadata.name.startswith("gpu-node-")]
    assert gpu_nodes
    for node in gpu_nodes:
        assert node.status.allocatable[GPU_RESOURCE] == "8"
        assert any(t.key == GPU_RESOURCE and t.effect == "NoSchedule" for t in node.spec.taints)
        assert has_condition(node, "Ready")


def gpu_job(name: str, namespace: str) -> Job:
    container = Container(
        name="train",
        image="registry.invalid/train:1",
        command=["python", "train.py"],
        resources=ResourceRequirements(limits={GPU_RESOURCE: "1"}),
    )
    pod = PodSpec(
        containers=[container],
        restartPolicy="Never",
        tolerations=[Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")],
    )
    return Job(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=JobSpec(template=PodTemplateSpec(spec=pod), backoffLimit=0),
    )


def test_job_pod_is_created_scheduled_on_a_gpu_node_completed_and_garbage_collected(
    kube: Any, namespace: str
) -> None:
    job = kube.create(gpu_job("gpu-job", namespace))

    def job_pods() -> list[Any]:
        return list(kube.list(Pod, namespace=namespace, labels={"job-name": "gpu-job"}))

    # kube-controller-manager creates the pod, owned by the Job
    (pod,) = eventually(job_pods, "the Job's pod")
    assert pod.metadata.ownerReferences[0].uid == job.metadata.uid
    # kube-scheduler binds it to a GPU node: the only nodes with nvidia.com/gpu, behind the tolerated taint
    bound = eventually(lambda: [p for p in job_pods() if p.spec.nodeName], "the pod bound to a node")
    assert bound[0].spec.nodeName.startswith("gpu-node-")
    # kwok runs and completes it, and the Job controller sees that
    done = eventually(
        lambda: (j := kube.get(Job, "gpu-job", namespace=namespace)) and has_condition(j, "Complete") and j,
        "the Job to complete",
    )
    assert done.status.succeeded == 1
    assert kube.get(Pod, pod.metadata.name, namespace=namespace).status.phase == "Succeeded"
    # deleting the owner lets the garbage collector delete the pod
    kube.delete(Job, "gpu-job", namespace=namespace, cascade=CascadeType.BACKGROUND)
    eventually(lambda: not job_pods(), "the pod to be garbage-collected")


def test_pod_without_toleration_is_kept_off_gpu_nodes(kube: Any, namespace: str) -> None:
    job = gpu_job("untolerated", namespace)
    job.spec.template.spec.tolerations = []
    kube.create(job)

    def unschedulable() -> bool:
        pods = list(kube.list(Pod, namespace=namespace, labels={"job-name": "untolerated"}))
        return bool(pods) and any(
            c.type == "PodScheduled"
            and c.reason == "Unschedulable"
            and "untolerated taint" in (c.message or "")
            for c in (pods[0].status.conditions or [])
        )

    eventually(unschedulable, "the scheduler to refuse the GPU nodes")


def test_service_account_token_acts_within_a_narrow_role(
    cluster: ControlPlane, kube: Any, namespace: str
) -> None:
    kube.create(ServiceAccount(metadata=ObjectMeta(name="reader", namespace=namespace)))
    kube.create(
        Role(
            metadata=ObjectMeta(name="configmap-reader", namespace=namespace),
            rules=[PolicyRule(apiGroups=[""], resources=["configmaps"], verbs=["get", "list"])],
        )
    )
    kube.create(
        RoleBinding(
            metadata=ObjectMeta(name="reader", namespace=namespace),
            roleRef=RoleRef(apiGroup="rbac.authorization.k8s.io", kind="Role", name="configmap-reader"),
            subjects=[Subject(kind="ServiceAccount", name="reader", namespace=namespace)],
        )
    )
    kube.create(ConfigMap(metadata=ObjectMeta(name="settings", namespace=namespace), data={"a": "1"}))

    token = cluster.mint_token(namespace, "reader")
    reader = cluster.token_client(token, namespace=namespace)

    def can_read() -> Any:
        try:
            return reader.get(ConfigMap, "settings")
        except ApiError as error:
            if error.status.code == 403:  # the RoleBinding has not reached the authorizer's cache yet
                return None
            raise

    assert eventually(can_read, "the RoleBinding to take effect", timeout=20).data == {"a": "1"}
    assert "settings" in {c.metadata.name for c in reader.list(ConfigMap)}

    user = f"system:serviceaccount:{namespace}:reader"
    with pytest.raises(ApiError) as denied:
        reader.create(ConfigMap(metadata=ObjectMeta(name="written"), data={}))
    assert denied.value.status.code == 403
    assert f'User "{user}" cannot create resource "configmaps"' in denied.value.status.message
    with pytest.raises(ApiError) as denied:
        list(reader.list(Secret))
    assert denied.value.status.code == 403
    assert f'User "{user}" cannot list resource "secrets"' in denied.value.status.message
