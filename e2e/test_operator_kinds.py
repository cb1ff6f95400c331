"""The operator serves every Training Operator v1 kind (issue #18): a CutoverPolicy over a namespace with a
JAXJob, a Worker-only TFJob and an mpi-operator MPIJob (kubeflow.org/v2beta1) plans them per kind, mirrors
them onto TrainJobs and derived runtimes, and under Takeover writes each job's status in its own kind's
v1 shape as the real Trainer, JobSet and Job controllers run them on kwok nodes (``upstream_cluster``).

For the module the Training Operator (v1.9.4, serving JAXJob and TFJob) and mpi-operator (v0.8.0, serving
MPIJob v2beta1) are stopped, and the Training Operator's webhooks removed, as a Takeover requires; both run
again afterwards, for the other modules sharing the session's cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import ApiError, Client, codecs
from lightkube.resources.core_v1 import Pod

from e2e.test_operator_cutover import (
    make_policy,
    patch_policy,
    policy_status,
    ready,
    trainjobs,
)
from e2e.test_takeover_controllers import training_operator_removed
from ferryman.kube.resources import CutoverPolicy, TrainingRuntime, v1_job_resource
from ferryman_dev.cluster import KWOK_EXIT_CODE, ControlPlane
from ferryman_dev.operator import OperatorProcess, install_ferryman, operator_kubeconfig
from ferryman_dev.waiting import wait_for

pytestmark = pytest.mark.cluster

ALL_KINDS = ["PyTorchJob", "MPIJob", "JAXJob", "XGBoostJob", "TFJob", "PaddleJob"]


def _container(name: str, image: str, command: list[str]) -> dict[str, Any]:
    """A pod template kwok keeps running until the test ends its pods."""
    return {
        "metadata": {"annotations": {KWOK_EXIT_CODE: "never"}},
        "spec": {"containers": [{"name": name, "image": image, "command": command}]},
    }


def v1_jobs(namespace: str) -> list[dict[str, Any]]:
    """A JAXJob, a Worker-only TFJob and an MPIJob v2beta1, shaped like the upstream examples."""
    metadata = {"namespace": namespace}
    return [
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": "JAXJob",
            "metadata": {"name": "jax-mnist", **metadata},
            "spec": {
                "jaxReplicaSpecs": {
                    "Worker": {
                        "replicas": 2,
                        "restartPolicy": "OnFailure",
                        "template": _container(
                            "jax", "kubeflow/jaxjob-simple:latest", ["python3", "train.py"]
                        ),
                    }
                }
            },
        },
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": "TFJob",
            "metadata": {"name": "tf-mnist", **metadata},
            "spec": {
                "tfReplicaSpecs": {
                    "Worker": {
                        "replicas": 2,
                        "restartPolicy": "OnFailure",
                        "template": _container(
                            "tensorflow", "kubeflow/tf-mnist:latest", ["python", "mnist.py"]
                        ),
                    }
                }
            },
        },
        {
            "apiVersion": "kubeflow.org/v2beta1",
            "kind": "MPIJob",
            "metadata": {"name": "pi", **metadata},
            "spec": {
                "slotsPerWorker": 1,
                "sshAuthMountPath": "/home/mpiuser/.ssh",
                "mpiReplicaSpecs": {
                    "Launcher": {
                        "replicas": 1,
                        "template": _container(
                            "mpi-launcher", "mpioperator/mpi-pi:openmpi", ["mpirun", "pi"]
                        ),
                    },
                    "Worker": {
                        "replicas": 2,
                        "template": _container(
                            "mpi-worker", "mpioperator/mpi-pi:openmpi", ["/usr/sbin/sshd"]
                        ),
                    },
                },
            },
        },
    ]


@pytest.fixture(scope="module")
def operator(
    upstream_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """ferryman running as deployed, with the v1 kinds' own controllers stopped (and put back afterwards)."""
    plane = upstream_cluster
    install_ferryman(plane)
    home = tmp_path_factory.mktemp("kinds-operator")
    process = OperatorProcess(operator_kubeconfig(plane, home / "kubeconfig"), home / "operator.log")
    with training_operator_removed(plane):
        plane.stop_component("mpi-operator")
        try:
            yield process.start()
        finally:
            process.stop()
            plane.start_component("mpi-operator")
    process.assert_clean()


def _by_kind(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["kind"]: entry for entry in status.get("kinds", [])}


def _v1_status(kube: Client, job: dict[str, Any]) -> dict[str, Any]:
    resource = v1_job_resource(job["apiVersion"], job["kind"])
    return dict(
        kube.get(resource, job["metadata"]["name"], namespace=job["metadata"]["namespace"]).status or {}
    )


def _last(status: dict[str, Any]) -> tuple[str, str, str] | None:
    conditions = status.get("conditions") or []
    return (
        (conditions[-1]["type"], conditions[-1]["reason"], conditions[-1]["message"]) if conditions else None
    )


def _wait_v1(kube: Client, job: dict[str, Any], last: tuple[str, str, str], replicas: dict[str, Any]) -> None:
    """Until the v1 job's last condition is ``last`` (type, reason, message) and it counts ``replicas``
    (for each replica named there)."""

    def reached() -> bool:
        status = _v1_status(kube, job)
        counts = status.get("replicaStatuses") or {}
        return _last(status) == last and {replica: counts.get(replica) for replica in replicas} == replicas

    try:
        wait_for(reached, f"{job['kind']} {last[0]} with {replicas}", 120)
    except TimeoutError as timeout:
        raise AssertionError(f"{timeout}; it has {_v1_status(kube, job)}") from None


def _end_pods(kube: Client, namespace: str) -> None:
    """Every pod's containers exit 0 (kwok)."""
    for pod in kube.list(Pod, namespace=namespace):
        if pod.metadata.deletionTimestamp is None:
            patch = {"metadata": {"annotations": {KWOK_EXIT_CODE: "0"}}}
            kube.patch(Pod, pod.metadata.name, patch, namespace=namespace)


@pytest.mark.parametrize(
    ("kinds", "message"),
    [
        (["PyTorchJob", "SparkApplication"], 'Unsupported value: "SparkApplication"'),
        (["TFJob", "TFJob"], 'Duplicate value: "TFJob"'),
        ([], "should have at least 1 items"),
    ],
)
def test_unknown_repeated_or_no_kinds_are_rejected(
    upstream_cluster: ControlPlane, upstream_kube: Client, kinds: list[str], message: str
) -> None:
    install_ferryman(upstream_cluster)
    with pytest.raises(ApiError) as rejected:
        upstream_kube.create(codecs.from_dict(make_policy("bad-kinds", "default", kinds=kinds)))
    assert rejected.value.status.code == 422
    assert message in str(rejected.value.status.message)


def test_every_kind_is_planned_mirrored_and_taken_over(
    operator: OperatorProcess, upstream_kube: Client, upstream_namespace: str
) -> None:
    kube, namespace = upstream_kube, upstream_namespace
    jobs = v1_jobs(namespace)
    for job in jobs:
        kube.create(codecs.from_dict(job))
    name = f"kinds-{namespace}"
    kube.create(codecs.from_dict(make_policy(name, namespace, mode="Plan", kinds=["PyTorchJob"])))
    try:
        # PyTorchJobs only: the other kinds' jobs are not selected.
        status = wait_for(lambda: ready(kube, name), "the PyTorchJob-only Plan")
        assert status["jobs"] == 0 and [k["kind"] for k in status["kinds"]] == ["PyTorchJob"]

        # Every kind: counted per kind (the Training Operator's CRDs serve XGBoostJob and PaddleJob too).
        generation = patch_policy(kube, name, {"kinds": ALL_KINDS})
        status = wait_for(lambda: ready(kube, name, generation), "the Plan of every kind")
        assert (status["jobs"], status["convertible"], status["blocked"]) == (3, 3, 0)
        assert status["derivedRuntimes"] == 2  # the TFJob's (no TensorFlow runtime) and the MPIJob's
        kinds = _by_kind(status)
        assert [k["kind"] for k in status["kinds"]] == ALL_KINDS
        served = {kind: entry.get("apiVersion") for kind, entry in kinds.items()}
        assert served == {
            "PyTorchJob": "kubeflow.org/v1",
            "MPIJob": "kubeflow.org/v2beta1",
            "JAXJob": "kubeflow.org/v1",
            "XGBoostJob": "kubeflow.org/v1",
            "TFJob": "kubeflow.org/v1",
            "PaddleJob": "kubeflow.org/v1",
        }
        for kind in ("MPIJob", "JAXJob", "TFJob"):
            assert (kinds[kind]["jobs"], kinds[kind]["convertible"], kinds[kind]["blocked"]) == (1, 1, 0)
        for kind in ("PyTorchJob", "XGBoostJob", "PaddleJob"):
            assert kinds[kind]["jobs"] == 0

        # Mirror: a TrainJob per job, on jax-distributed or its derived runtime, owned by the policy.
        generation = patch_policy(kube, name, {"mode": "Mirror"})
        wait_for(lambda: ready(kube, name, generation), "the Mirror of every kind")
        mirrored = trainjobs(kube, namespace)
        assert len(mirrored) == 3
        runtimes = {r.metadata.name for r in kube.list(TrainingRuntime, namespace=namespace)}
        refs = {
            t["metadata"]["annotations"]["ferryman.dev/source"]: t["spec"]["runtimeRef"]
            for t in mirrored.values()
        }
        assert refs[f"{namespace}/jax-mnist"]["name"] == "jax-distributed"
        assert {refs[f"{namespace}/tf-mnist"]["name"], refs[f"{namespace}/pi"]["name"]} == runtimes
        for trainjob in mirrored.values():
            assert trainjob["spec"]["suspend"] is True
            assert trainjob["metadata"]["ownerReferences"][0]["kind"] == "CutoverPolicy"

        # Takeover: each TrainJob owned by its v1 job.
        generation = patch_policy(kube, name, {"mode": "Takeover", "takeover": {"v1ControllerRemoved": True}})
        wait_for(lambda: ready(kube, name, generation), "the Takeover of every kind")
        served_now = trainjobs(kube, namespace)
        assert sorted(t["metadata"]["ownerReferences"][0]["kind"] for t in served_now.values()) == [
            "JAXJob",
            "MPIJob",
            "TFJob",
        ]
        jax, tf, mpi = jobs

        # Trainer, JobSet and Job run them on kwok nodes: each v1 status goes Running, then Succeeded.
        qualified = {job["kind"]: f"{job['kind']} {namespace}/{job['metadata']['name']}" for job in jobs}
        running = {
            "JAXJob": {"Worker": {"active": 2}},
            "TFJob": {"Worker": {"active": 2}},
            "MPIJob": {"Launcher": {"active": 1}, "Worker": {"active": 2}},
        }
        for job in jobs:
            kind = job["kind"]
            last = ("Running", f"{kind}Running", f"{qualified[kind]} is running.")
            _wait_v1(kube, job, last, running[kind])
        _end_pods(kube, namespace)
        for job in jobs:
            kind = job["kind"]
            last = ("Succeeded", f"{kind}Succeeded", f"{qualified[kind]} successfully completed.")
            done = {replica: {"succeeded": c["active"]} for replica, c in running[kind].items()}
            if kind == "MPIJob":  # its Workers are stopped once the Launcher succeeds, ended by then or not
                del done["Worker"]
            _wait_v1(kube, job, last, done)
            went = [(c["type"], c["status"], c["reason"]) for c in _v1_status(kube, job)["conditions"]]
            assert went == [
                ("Created", "True", f"{kind}Created"),
                ("Running", "False", f"{kind}Running"),
                ("Succeeded", "True", f"{kind}Succeeded"),
            ]

        assert _v1_status(kube, tf)["conditions"][0]["message"] == "TFJob tf-mnist is created."
        assert _v1_status(kube, mpi)["conditions"][0]["message"] == f"MPIJob {namespace}/pi is created."
        assert _v1_status(kube, jax)["completionTime"]
        assert policy_status(kube, name)["trainJobs"]["present"] == 3
    finally:
        kube.delete(CutoverPolicy, name)
