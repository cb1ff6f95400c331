"""Takeover of the Training Operator's own MPIJob (kubeflow.org/v1) on the real Trainer v2.3.0 and JobSet
v0.12.0 controllers (issue #18), in ``mpijob_v1_cluster``: its CRD shares a name with mpi-operator's v2beta1
one, so it cannot be served where ``test_operator_kinds`` runs the other kinds.

The same MPIJob runs twice: first under the real Training Operator v1.9.4, whose status is the reference,
then, with the Training Operator stopped and its webhooks removed, under a Takeover CutoverPolicy: ferryman
turns it into a TrainJob on a derived MPI runtime, Trainer into a JobSet, JobSet into launcher and node Jobs
whose pods kwok runs. It is held running, then its launcher exits 0; the status ferryman writes must be the
reference's at each state. (A failing launcher is left to the unit tests: v1 fails the MPIJob at its first
failure, while the runtime's launcher Job retries up to Kubernetes' default backoffLimit, for minutes.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from e2e.test_takeover_controllers import (
    JOBSET,
    POD,
    POLICY,
    TRAINJOB,
    shape,
    takeover_policy,
    training_operator_removed,
    without_times,
)
from ferryman_dev.cluster import KWOK_EXIT_CODE, ControlPlane
from ferryman_dev.operator import running_operator
from ferryman_dev.pytest_cluster import fresh_namespace
from ferryman_dev.waiting import wait_for

pytestmark = pytest.mark.cluster

MPIJOB = ("kubeflow.org/v1", "MPIJob")
RUNNING = {"Launcher": {"active": 1}, "Worker": {"active": 2}}
KWOK_NODES = ("cpu-node-", "gpu-node-")  # the fake nodes of ferryman_dev.cluster


def mpijob(name: str) -> dict[str, Any]:
    """A Launcher and two Workers, whose pods kwok keeps running until the test ends them."""

    def replica(replicas: int, container: str, command: list[str]) -> dict[str, Any]:
        pod = {"containers": [{"name": container, "image": "mpioperator/mpi-pi:openmpi", "command": command}]}
        return {
            "replicas": replicas,
            "template": {"metadata": {"annotations": {KWOK_EXIT_CODE: "never"}}, "spec": pod},
        }

    return {
        "apiVersion": MPIJOB[0],
        "kind": MPIJOB[1],
        "metadata": {"name": name},
        "spec": {
            "slotsPerWorker": 1,
            "mpiReplicaSpecs": {
                "Launcher": replica(1, "mpi-launcher", ["mpirun", "-np", "2", "pi"]),
                "Worker": replica(2, "mpi-worker", ["/usr/sbin/sshd", "-De"]),
            },
        },
    }


def job_pods(plane: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    """The pods of MPIJob ``name``: the Training Operator's (``<name>-launcher``, ``<name>-worker-<i>``) or
    its JobSet's (``<name>-launcher-0-0-<x>``, ``<name>-node-0-<i>-<x>``)."""
    selectors = (f"training.kubeflow.org/job-name={name}", f"jobset.sigs.k8s.io/jobset-name={name}")
    return [pod for selector in selectors for pod in plane.list(*POD, namespace, selector)]


def wait_state(plane: ControlPlane, namespace: str, name: str, type_: str, replicas: dict[str, Any]) -> Any:
    """MPIJob ``name`` once its last condition (printer column) is ``type_`` and it counts ``replicas``."""

    def reached() -> dict[str, Any] | None:
        job = plane.find(*MPIJOB, name, namespace)
        status = (job or {}).get("status") or {}
        conditions = status.get("conditions") or []
        if conditions and conditions[-1]["type"] == type_ and status.get("replicaStatuses") == replicas:
            return job
        return None

    try:
        return wait_for(reached, f"MPIJob {name} {type_} with {replicas}", 120)
    except TimeoutError as timeout:
        found = [plane.find(*kind, name, namespace) for kind in (MPIJOB, TRAINJOB, JOBSET)]
        statuses = [{obj["kind"]: obj.get("status")} for obj in found if obj is not None]
        raise AssertionError(f"{timeout}; what serves it:\n{yaml.safe_dump(statuses)}") from None


def lifecycle(plane: ControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    """Run the module's MPIJob in ``namespace`` by whatever serves it; its statuses as they went."""
    plane.create(mpijob("pi"), namespace)
    seen = {"running": wait_state(plane, namespace, "pi", "Running", RUNNING)}
    pods = job_pods(plane, namespace, "pi")
    assert len(pods) == 3 and all(pod["spec"]["nodeName"].startswith(KWOK_NODES) for pod in pods), [
        (pod["metadata"]["name"], pod["spec"].get("nodeName")) for pod in pods
    ]
    for pod in pods:
        if "-launcher" in pod["metadata"]["name"]:
            patch = {"metadata": {"annotations": {KWOK_EXIT_CODE: "0"}}}
            plane.merge_patch(*POD, pod["metadata"]["name"], patch, namespace)
    done = {"Launcher": {"succeeded": 1}, "Worker": {}}
    seen["succeeded"] = wait_state(plane, namespace, "pi", "Succeeded", done)
    return seen


@pytest.fixture(scope="module")
def reference(mpijob_v1_cluster: ControlPlane) -> Iterator[dict[str, dict[str, Any]]]:
    """The module's MPIJobs run by the real Training Operator: the statuses a Takeover must write."""
    with fresh_namespace(mpijob_v1_cluster.client(), "mpijob-v1-reference") as namespace:
        yield lifecycle(mpijob_v1_cluster, namespace)


@pytest.fixture(scope="module")
def takeover(
    mpijob_v1_cluster: ControlPlane,
    reference: dict[str, dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
    """The module's MPIJobs run under a Takeover, the Training Operator uninstalled and ferryman running as
    deployed (put back afterwards); the namespace and their statuses as they went."""
    plane = mpijob_v1_cluster
    with (
        training_operator_removed(plane),
        running_operator(plane, tmp_path_factory.mktemp("mpijob-v1-operator")),
        fresh_namespace(plane.client(), "mpijob-v1-takeover") as namespace,
    ):
        plane.create(takeover_policy(namespace, kinds=["MPIJob"]))
        try:
            yield namespace, lifecycle(plane, namespace)
        finally:
            plane.delete(*POLICY, namespace)


def test_a_taken_over_mpijob_v1_runs_on_trainer_with_the_status_the_training_operator_writes(
    mpijob_v1_cluster: ControlPlane,
    takeover: tuple[str, dict[str, dict[str, Any]]],
    reference: dict[str, dict[str, Any]],
) -> None:
    plane, (namespace, taken_over) = mpijob_v1_cluster, takeover
    trainjob = plane.get(*TRAINJOB, "pi", namespace)
    (owner,) = trainjob["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["apiVersion"]) == ("MPIJob", "pi", MPIJOB[0])
    assert trainjob["spec"]["runtimeRef"]["kind"] == "TrainingRuntime"  # derived: launcher and node Jobs
    jobset = plane.get(*JOBSET, "pi", namespace)
    assert jobset["metadata"]["ownerReferences"][0]["kind"] == "TrainJob"
    assert {job["name"] for job in jobset["spec"]["replicatedJobs"]} == {"launcher", "node"}
    mismatches = {
        state: {"takeover": without_times(seen["status"]), "v1": without_times(reference[state]["status"])}
        for state, seen in taken_over.items()
        if without_times(seen["status"]) != without_times(reference[state]["status"])
    }
    assert mismatches == {}, yaml.safe_dump(mismatches, width=200)
    done = taken_over["succeeded"]["status"]
    assert [c[:3] for c in shape(done)] == [
        ("Created", "True", "MPIJobCreated"),
        ("Running", "False", "MPIJobRunning"),
        ("Succeeded", "True", "MPIJobSucceeded"),
    ]
    assert done["startTime"] and done["completionTime"]
