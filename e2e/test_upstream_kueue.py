"""No double runs under the real Kueue (``kueue_cluster``, issue #17): a queued PyTorchJob's suspended mirror
is never admitted (its queue label waits in a ``ferryman.dev/`` annotation, so Kueue makes no Workload for
it), and Takeover gives the label back; a queued PyTorchJob arriving under Takeover has its TrainJob created
with the label. Each TrainJob is then its PyTorchJob's (its controller owner): Kueue admits it as part of the
PyTorchJob's Workload, never with one of its own, and it resumes with the PyTorchJob Kueue resumed, as v1
would.

The Training Operator is removed for the test, as a Takeover requires, and put back afterwards; Kueue still
manages the PyTorchJob (its kubeflow.org integration).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lightkube import codecs
from lightkube.resources.core_v1 import Namespace, Pod

from e2e.test_operator_cutover import kubectl_wait_ready, make_policy, patch_policy, policy_status, trainjobs
from e2e.test_takeover_controllers import training_operator_removed
from e2e.test_upstream_controllers import KUEUE, condition, local_queue, new_namespace
from ferryman.api.kinds import HELD_LABELS_ANNOTATION
from ferryman.kube.resources import CutoverPolicy
from ferryman_dev.cluster import ControlPlane, wait_default_service_account
from ferryman_dev.operator import running_operator
from ferryman_dev.waiting import wait_for

pytestmark = pytest.mark.cluster

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def queued_pytorchjob(name: str, queue: str) -> dict[str, Any]:
    """A PyTorchJob (Master and one Worker, CPU only: the ClusterQueue covers cpu and memory) in `queue`."""
    container = {
        "name": "pytorch",
        "image": "registry.example.com/train:1",
        "command": ["torchrun", "train.py"],
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
    }
    replica = {"replicas": 1, "template": {"spec": {"containers": [container]}}}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "labels": {QUEUE_LABEL: queue}},
        "spec": {"pytorchReplicaSpecs": {"Master": replica, "Worker": replica}},
    }


def workloads_of(plane: ControlPlane, namespace: str, kind: str) -> list[dict[str, Any]]:
    """Kueue's Workloads in `namespace` for jobs of `kind`."""
    return [
        workload
        for workload in plane.list(KUEUE, "Workload", namespace)
        if any(owner["kind"] == kind for owner in workload["metadata"].get("ownerReferences") or [])
    ]


def admitted(plane: ControlPlane, namespace: str, kind: str) -> set[str]:
    """The jobs of `kind` whose Workload Kueue admitted."""
    return {
        owner["name"]
        for workload in workloads_of(plane, namespace, kind)
        if condition(workload, "Admitted") == "True"
        for owner in workload["metadata"]["ownerReferences"]
    }


def test_kueue_never_admits_a_mirror_and_runs_the_takeover_under_the_pytorchjobs_workload(
    kueue_cluster: ControlPlane, tmp_path: Path
) -> None:
    plane, kube = kueue_cluster, kueue_cluster.client()
    namespace = new_namespace(plane, "kueue-cutover")
    wait_default_service_account(kube, namespace)
    queue = local_queue(plane, namespace)
    name = f"queued-{namespace}"
    with training_operator_removed(plane), running_operator(plane, tmp_path):
        plane.create(queued_pytorchjob("queued", queue), namespace)
        wait_for(lambda: admitted(plane, namespace, "PyTorchJob"), "Kueue to admit the PyTorchJob")
        kube.create(codecs.from_dict(make_policy(name, namespace, mode="Mirror", mirror={"suspend": True})))
        try:
            kubectl_wait_ready(plane, name)
            (mirror,) = trainjobs(kube, namespace).values()
            metadata = mirror["metadata"]
            assert mirror["spec"]["suspend"] is True and QUEUE_LABEL not in metadata["labels"]
            assert json.loads(metadata["annotations"][HELD_LABELS_ANNOTATION]) == {QUEUE_LABEL: queue}
            assert workloads_of(plane, namespace, "TrainJob") == [], "Kueue saw the mirror"
            # what Kueue wrote into the admitted PyTorchJob's pod templates is its Workload's, not carried
            assert "kueue.x-k8s.io/workload" not in json.dumps(mirror["spec"])

            # Takeover of the mirror, and of a queued PyTorchJob arriving meanwhile (its TrainJob is created)
            takeover = {"mode": "Takeover", "mirror": None, "takeover": {"v1ControllerRemoved": True}}
            generation = patch_policy(kube, name, takeover)
            plane.create(queued_pytorchjob("late", queue), namespace)
            both = {"queued", "late"}
            wait_for(lambda: admitted(plane, namespace, "PyTorchJob") == both, "Kueue's admissions")
            kubectl_wait_ready(plane, name)
            assert policy_status(kube, name)["observedGeneration"] == generation

            def running() -> dict[str, dict[str, Any]] | None:
                served = trainjobs(kube, namespace)
                return served if {t["spec"]["suspend"] for t in served.values()} == {False} else None

            # resumed with their PyTorchJobs, which Kueue admitted, as v1 would
            served = wait_for(running, "both TrainJobs to run")
            assert served.keys() == both
            for trainjob in served.values():
                metadata = trainjob["metadata"]
                assert metadata["labels"][QUEUE_LABEL] == queue  # accepted by Kueue's webhook
                assert HELD_LABELS_ANNOTATION not in (metadata.get("annotations") or {})
                assert metadata["ownerReferences"][0]["kind"] == "PyTorchJob"
            # Kueue lets them run: their pods are made, and neither has a Workload of its own
            wait_for(lambda: len(list(kube.list(Pod, namespace=namespace))) >= 4, "the TrainJobs' pods")
            assert running() is not None
            assert workloads_of(plane, namespace, "TrainJob") == []
        finally:
            kube.delete(CutoverPolicy, name)
            kube.delete(Namespace, namespace)
