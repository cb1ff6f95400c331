"""The operator serves every Training Operator v1 kind (issue #18): a CutoverPolicy over a namespace with a
JAXJob, a Worker-only TFJob and an mpi-operator MPIJob (kubeflow.org/v2beta1) plans them per kind, mirrors
them onto TrainJobs and derived runtimes, and under Takeover writes each job's status in its own kind's
v1 shape. Kinds whose CRD is not installed (XGBoostJob, PaddleJob here) are reported, not watched.

The upstream CRDs (Training Operator v1.9.4's JAXJob and TFJob, mpi-operator v0.8.0's MPIJob) are installed
into the session cluster; no v1 controller runs, so the tests play Trainer by patching TrainJob status.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError, Client, codecs
from lightkube.types import PatchType

from e2e.test_operator_cutover import (
    make_policy,
    patch_policy,
    policy_status,
    ready,
    trainjobs,
)
from ferryman.kube.resources import CutoverPolicy, TrainingRuntime, TrainJob, v1_job_resource
from ferryman_dev import controllers, upstream
from ferryman_dev.cluster import ControlPlane
from ferryman_dev.operator import OperatorProcess, install_ferryman, operator_kubeconfig
from ferryman_dev.waiting import wait_for

pytestmark = pytest.mark.cluster

ALL_KINDS = ["PyTorchJob", "MPIJob", "JAXJob", "XGBoostJob", "TFJob", "PaddleJob"]


def _container(name: str, image: str, command: list[str]) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": name, "image": image, "command": command}]}}


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
def kinds_installed(cluster: ControlPlane) -> ControlPlane:
    install_ferryman(cluster)
    cluster.install_crds([upstream.v1_crd("jaxjobs"), upstream.v1_crd("tfjobs")])
    cluster.install_crd_documents(controllers.crds("mpi-operator"))
    return cluster


@pytest.fixture
def operator(kinds_installed: ControlPlane, tmp_path: Path) -> Iterator[OperatorProcess]:
    kubeconfig = operator_kubeconfig(kinds_installed, tmp_path / "operator.kubeconfig")
    process = OperatorProcess(kubeconfig, tmp_path / "operator.log").start()
    try:
        yield process
    finally:
        process.stop()
        assert not process.forbidden(), "refused by its RBAC:\n" + "\n".join(process.forbidden())
        assert "Traceback" not in process.output(), process.output()[-6000:]


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


def _serving(served: dict[str, dict[str, Any]], kind: str) -> str:
    return next(n for n, t in served.items() if t["metadata"]["ownerReferences"][0]["kind"] == kind)


@pytest.mark.parametrize(
    ("kinds", "message"),
    [
        (["PyTorchJob", "SparkApplication"], 'Unsupported value: "SparkApplication"'),
        (["TFJob", "TFJob"], 'Duplicate value: "TFJob"'),
        ([], "should have at least 1 items"),
    ],
)
def test_unknown_repeated_or_no_kinds_are_rejected(
    kinds_installed: ControlPlane, kube: Client, kinds: list[str], message: str
) -> None:
    with pytest.raises(ApiError) as rejected:
        kube.create(codecs.from_dict(make_policy("bad-kinds", "default", kinds=kinds)))
    assert rejected.value.status.code == 422
    assert message in str(rejected.value.status.message)


def test_every_kind_is_planned_mirrored_and_taken_over(
    operator: OperatorProcess, kube: Client, namespace: str
) -> None:
    jobs = v1_jobs(namespace)
    for job in jobs:
        kube.create(codecs.from_dict(job))
    name = f"kinds-{namespace}"
    kube.create(codecs.from_dict(make_policy(name, namespace, mode="Plan", kinds=["PyTorchJob"])))
    try:
        # PyTorchJobs only: the other kinds' jobs are not selected.
        status = wait_for(lambda: ready(kube, name), "the PyTorchJob-only Plan")
        assert status["jobs"] == 0 and [k["kind"] for k in status["kinds"]] == ["PyTorchJob"]

        # Every kind: counted per kind; the kinds without a CRD are reported, not watched.
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
            "XGBoostJob": None,
            "TFJob": "kubeflow.org/v1",
            "PaddleJob": None,
        }
        for kind in ("MPIJob", "JAXJob", "TFJob"):
            assert (kinds[kind]["jobs"], kinds[kind]["convertible"], kinds[kind]["blocked"]) == (1, 1, 0)
        ready_condition = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert "not installed, so not watched: XGBoostJob, PaddleJob" in ready_condition["message"]

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

        # Play Trainer: JAX runs, TF completes, MPI's launcher and workers run.
        _patch_status(kube, namespace, _serving(served_now, "JAXJob"), {"jobsStatus": [_jobs("node", 2)]})
        _patch_status(
            kube,
            namespace,
            _serving(served_now, "TFJob"),
            {"conditions": [_condition("Complete", "JobSetCompleted")], "jobsStatus": [_jobs("node", 2)]},
        )
        _patch_status(
            kube,
            namespace,
            _serving(served_now, "MPIJob"),
            {"jobsStatus": [_jobs("launcher", 1), _jobs("node", 2)]},
        )
        jax_running = ("Running", "JAXJobRunning", f"JAXJob {namespace}/jax-mnist is running.")
        wait_for(lambda: _last(_v1_status(kube, jax)) == jax_running or None, "the JAXJob Running")
        tf_done = ("Succeeded", "TFJobSucceeded", f"TFJob {namespace}/tf-mnist successfully completed.")
        wait_for(lambda: _last(_v1_status(kube, tf)) == tf_done or None, "the TFJob Succeeded")
        mpi_running = ("Running", "MPIJobRunning", f"MPIJob {namespace}/pi is running.")
        wait_for(lambda: _last(_v1_status(kube, mpi)) == mpi_running or None, "the MPIJob Running")

        assert _v1_status(kube, jax)["replicaStatuses"] == {"Worker": {"active": 2}}
        tf_status = _v1_status(kube, tf)
        assert tf_status["replicaStatuses"] == {"Worker": {"succeeded": 2}}
        assert tf_status["conditions"][0]["message"] == "TFJob tf-mnist is created."
        mpi_status = _v1_status(kube, mpi)
        assert mpi_status["replicaStatuses"] == {"Launcher": {"active": 1}, "Worker": {"active": 2}}
        assert mpi_status["conditions"][0]["message"] == f"MPIJob {namespace}/pi is created."
        assert policy_status(kube, name)["trainJobs"]["present"] == 3
    finally:
        kube.delete(CutoverPolicy, name)


def _condition(type_: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message or reason,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def _jobs(name: str, active: int) -> dict[str, Any]:
    return {"name": name, "active": active, "ready": active, "succeeded": 0, "failed": 0, "suspended": 0}


def _patch_status(kube: Client, namespace: str, name: str, status: dict[str, Any]) -> None:
    kube.patch(TrainJob.Status, name, {"status": status}, namespace=namespace, patch_type=PatchType.MERGE)
