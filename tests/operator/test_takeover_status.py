"""The v1 status a Takeover writes on a PyTorchJob is what the Training Operator v1.9 controller writes for
the same outcome (pkg/util/status.go setCondition, pkg/controller.v1/common/job.go ReconcileJobs and the
PyTorchJob controller's UpdateJobStatus, read from the v1.9.3 module): condition order, reasons, messages,
replica counts, startTime and completionTime."""

import copy
from typing import Any

from ferryman.api.cutoverpolicy import V1Kind
from ferryman.controller.serving import status_patch
from ferryman.controller.takeover import V1_STATUS_SHAPES, v1_status
from ferryman.convert.registry import JOB_KINDS


def pytorchjob(*, master: bool = True, status: dict[str, Any] | None = None) -> dict[str, Any]:
    template = {"spec": {"containers": [{"name": "pytorch", "image": "bert:1"}]}}
    replicas = {"Worker": {"replicas": 2, "template": template}}
    if master:
        replicas["Master"] = {"replicas": 1, "template": template}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "bert", "namespace": "team-a"},
        "spec": {"pytorchReplicaSpecs": replicas},
        **({"status": status} if status is not None else {}),
    }


def trainjob(
    conditions: tuple[str, ...] = (), *, active: int = 0, suspend: bool = False, message: str = ""
) -> dict[str, Any]:
    return {
        "metadata": {"name": "bert"},
        "spec": {"suspend": suspend},
        "status": {
            "conditions": [
                {"type": c, "status": "True", "reason": c, "message": message or c} for c in conditions
            ],
            "jobsStatus": [{"name": "node", "active": active, "ready": active, "succeeded": 0, "failed": 0}],
        },
    }


def step(job: dict[str, Any], served: dict[str, Any], now: str) -> dict[str, Any]:
    job["status"] = v1_status(job, served, None, now=now)
    return job["status"]


def summary(status: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["type"], c["status"], c["reason"]) for c in status["conditions"]]


def test_worker_only_jobs_are_named_with_their_namespace_as_v1_does() -> None:
    job = pytorchjob(master=False)
    running = step(job, trainjob(active=2), "t1")["conditions"][-1]
    assert running["message"] == "PyTorchJob team-a/bert is running."
    done = step(job, trainjob(("Complete",)), "t2")["conditions"][-1]
    assert done["message"] == "PyTorchJob team-a/bert successfully completed."


def test_failure_sets_completion_time_and_freezes_the_conditions() -> None:
    job = pytorchjob()
    step(job, trainjob(active=3), "t1")
    status = step(job, trainjob(("Failed",), active=1, message="deadline exceeded"), "t2")
    assert status["conditions"][-1]["type"] == "Failed"
    assert status["conditions"][-1]["message"] == "PyTorchJob bert is failed: deadline exceeded"
    assert status["completionTime"] == "t2"
    later = step(job, trainjob(("Failed", "Complete")), "t3")
    assert later["conditions"] == status["conditions"], "nothing changes a Failed job's conditions"


def test_an_unchanged_outcome_writes_the_same_status() -> None:
    job = pytorchjob()
    first = step(job, trainjob(active=3), "t1")
    assert v1_status(job, trainjob(active=3), None, now="t9") == first


# Every other kind, in its own controller's words (Training Operator v1.9.4 <kind>_controller.go
# UpdateJobStatus and common/job.go; mpi-operator v0.8.0 mpi_job_controller.go updateMPIJobStatus).


def v1_job(api_version: str, kind: str, specs: str, replicas: dict[str, int]) -> dict[str, Any]:
    template = {"spec": {"containers": [{"name": "main", "image": "train:1"}]}}
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "net", "namespace": "ml"},
        "spec": {specs: {rtype: {"replicas": n, "template": template} for rtype, n in replicas.items()}},
    }


def served_by(
    jobs: dict[str, int], conditions: tuple[str, ...] = (), suspend: bool = False
) -> dict[str, Any]:
    entries = [
        {"name": name, "active": n, "ready": n, "succeeded": 0, "failed": 0} for name, n in jobs.items()
    ]
    return {
        "metadata": {"name": "net"},
        "spec": {"suspend": suspend},
        "status": {
            "conditions": [{"type": c, "status": "True", "reason": c, "message": c} for c in conditions],
            "jobsStatus": entries,
        },
    }


def test_each_kind_is_named_and_counted_as_its_v1_controller_does() -> None:
    cases = [  # job, Running message, Succeeded message, replicaStatuses when done
        (
            v1_job("kubeflow.org/v1", "TFJob", "tfReplicaSpecs", {"Worker": 3}),
            "TFJob ml/net is running.",
            "TFJob ml/net successfully completed.",
            {"Worker": {"succeeded": 3}},
        ),
        (
            v1_job("kubeflow.org/v1", "TFJob", "tfReplicaSpecs", {"Chief": 1, "Worker": 2}),
            "TFJob ml/net is running.",
            "TFJob ml/net successfully completed.",
            {"Chief": {"succeeded": 1}, "Worker": {"succeeded": 2}},
        ),
        (
            v1_job("kubeflow.org/v1", "JAXJob", "jaxReplicaSpecs", {"Worker": 3}),
            "JAXJob ml/net is running.",
            "JAXJob ml/net successfully completed.",
            {"Worker": {"succeeded": 3}},
        ),
        (
            v1_job("kubeflow.org/v1", "XGBoostJob", "xgbReplicaSpecs", {"Master": 1, "Worker": 2}),
            "XGBoostJob net is running.",
            "XGBoostJob net is successfully completed.",
            {"Master": {"succeeded": 1}, "Worker": {"succeeded": 2}},
        ),
        (
            v1_job("kubeflow.org/v1", "PaddleJob", "paddleReplicaSpecs", {"Worker": 3}),
            "PaddleJob ml/net is running.",
            "PaddleJob ml/net successfully completed.",
            {"Worker": {"succeeded": 3}},
        ),
    ]
    for job, running, done, replicas in cases:
        kind = job["kind"]
        job["status"] = v1_status(job, served_by({"node": 3}), None, now="t1")
        assert job["status"]["conditions"][0]["message"] == f"{kind} net is created."
        assert summary(job["status"])[-1] == ("Running", "True", f"{kind}Running")
        assert job["status"]["conditions"][-1]["message"] == running
        job["status"] = v1_status(job, served_by({"node": 3}, ("Complete",)), None, now="t2")
        assert summary(job["status"])[-1] == ("Succeeded", "True", f"{kind}Succeeded")
        assert job["status"]["conditions"][-1]["message"] == done
        assert job["status"]["replicaStatuses"] == replicas, kind


def test_mpijobs_count_the_launcher_from_its_job_and_speak_as_their_operator() -> None:
    job = v1_job("kubeflow.org/v2beta1", "MPIJob", "mpiReplicaSpecs", {"Launcher": 1, "Worker": 2})
    job["status"] = v1_status(job, served_by({"launcher": 1, "node": 2}), None, now="t1")
    assert job["status"]["conditions"][0]["message"] == "MPIJob ml/net is created."
    assert job["status"]["conditions"][-1]["message"] == "MPIJob ml/net is running."
    assert job["status"]["replicaStatuses"] == {"Launcher": {"active": 1}, "Worker": {"active": 2}}
    job["status"] = v1_status(job, served_by({"launcher": 1, "node": 2}, suspend=True), None, now="t2")
    assert job["status"]["conditions"][-2:] == [
        {
            **job["status"]["conditions"][-2],
            "type": "Running",
            "status": "False",
            "reason": "MPIJobSuspended",
            "message": "MPIJob ml/net is suspended.",
        },
        {
            **job["status"]["conditions"][-1],
            "type": "Suspended",
            "status": "True",
            "reason": "MPIJobSuspended",
            "message": "MPIJob suspended",
        },
    ]
    job["status"] = v1_status(job, served_by({"launcher": 1, "node": 2}), None, now="t3")
    assert ("Suspended", "False", "MPIJobResumed") in summary(job["status"])


def test_an_mpijob_v1_names_the_job_alone_and_counts_no_worker_once_its_launcher_ends() -> None:
    """MPIJob v1 as the Training Operator v1.9.4 words and counts it (seen in e2e/test_takeover_mpijob_v1.py):
    its Workers are no longer listed once the Launcher pod has finished, whether it succeeded or failed."""
    job = v1_job("kubeflow.org/v1", "MPIJob", "mpiReplicaSpecs", {"Launcher": 1, "Worker": 2})
    failing = copy.deepcopy(job)
    job["status"] = v1_status(job, served_by({"launcher": 1, "node": 2}), None, now="t1")
    assert [c["message"] for c in job["status"]["conditions"]] == [
        "MPIJob net is created.",
        "MPIJob net is running.",
    ]
    assert job["status"]["replicaStatuses"] == {"Launcher": {"active": 1}, "Worker": {"active": 2}}
    job["status"] = v1_status(job, served_by({"launcher": 1, "node": 2}, ("Complete",)), None, now="t2")
    assert summary(job["status"])[-1] == ("Succeeded", "True", "MPIJobSucceeded")
    assert job["status"]["conditions"][-1]["message"] == "MPIJob net is successfully completed."
    assert job["status"]["replicaStatuses"] == {"Launcher": {"succeeded": 1}, "Worker": {}}
    failed = served_by({"launcher": 0, "node": 2}, ("Failed",))
    failed["status"]["jobsStatus"][0]["failed"] = 1
    failing["status"] = v1_status(failing, failed, None, now="t1")
    assert summary(failing["status"])[-1] == ("Failed", "True", "MPIJobMPIJobFailed")  # v1.9.4's own
    assert failing["status"]["replicaStatuses"] == {"Launcher": {"failed": 1}, "Worker": {}}


def test_every_kind_ferryman_converts_is_selectable_and_has_a_status_shape() -> None:
    versions = {(k.api_version, k.kind) for row in JOB_KINDS.values() for k in (row.kind, *row.also)}
    assert versions == set(V1_STATUS_SHAPES)
    assert set(V1Kind) == {row.kind.kind for row in JOB_KINDS.values()}


def test_replica_counts_are_pods_though_trainer_and_jobset_count_jobs() -> None:
    """As the real controllers report a running 3-node TrainJob: one active `node` Job of parallelism 3;
    v1 counts pods, 1 Master and 2 Workers (seen in e2e/test_takeover_controllers.py)."""
    served = trainjob(active=1)
    jobset = {"spec": {"replicatedJobs": [{"name": "node", "template": {"spec": {"parallelism": 3}}}]}}
    status = v1_status(pytorchjob(), served, jobset, now="t1")
    assert status["replicaStatuses"] == {"Master": {"active": 1}, "Worker": {"active": 2}}


def test_a_count_gone_to_zero_is_removed_from_the_status_not_left_behind() -> None:
    current = {"replicaStatuses": {"Master": {"active": 1}, "Worker": {"active": 2}}}
    status = {"conditions": [], "replicaStatuses": {"Master": {"succeeded": 1}, "Worker": {}}}
    assert status_patch(current, status)["replicaStatuses"] == {
        "Master": {"active": None, "succeeded": 1},
        "Worker": {"active": None},
    }
