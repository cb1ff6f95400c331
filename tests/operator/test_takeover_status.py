"""The v1 status a Takeover writes on a PyTorchJob is what the Training Operator v1.9 controller writes for
the same outcome (pkg/util/status.go setCondition, pkg/controller.v1/common/job.go ReconcileJobs and the
PyTorchJob controller's UpdateJobStatus, read from the v1.9.3 module): condition order, reasons, messages,
replica counts, startTime and completionTime."""

from typing import Any

from ferryman.controller.takeover import v1_status


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


def test_success_moves_active_replicas_to_succeeded_and_running_turns_false_in_place() -> None:
    job = pytorchjob()
    step(job, trainjob(active=3), "t1")
    status = step(job, trainjob(("Complete",), active=3), "t2")
    assert summary(status) == [
        ("Created", "True", "PyTorchJobCreated"),
        ("Running", "False", "PyTorchJobRunning"),  # v1 flips the status and keeps the reason
        ("Succeeded", "True", "PyTorchJobSucceeded"),
    ]
    assert status["conditions"][-1]["message"] == "PyTorchJob bert is successfully completed."
    assert status["replicaStatuses"] == {"Master": {"succeeded": 1}, "Worker": {"succeeded": 2}}
    assert (status["startTime"], status["completionTime"]) == ("t1", "t2")


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


def test_suspend_and_resume_as_v1() -> None:
    job = pytorchjob()
    step(job, trainjob(active=3), "t1")
    status = step(job, trainjob(active=3, suspend=True), "t2")
    assert summary(status)[-2:] == [
        ("Running", "False", "PyTorchJobSuspended"),
        ("Suspended", "True", "PyTorchJobSuspended"),
    ]
    assert status["replicaStatuses"] == {"Master": {}, "Worker": {}}, "a suspended job has no active replicas"
    status = step(job, trainjob(active=3), "t3")
    assert summary(status)[-2:] == [
        ("Suspended", "False", "PyTorchJobResumed"),
        ("Running", "True", "PyTorchJobRunning"),
    ]
    assert status["startTime"] == "t3", "v1 restarts the clock on resume"
    running = status["conditions"][-1]
    assert running["lastTransitionTime"] == "t3"


def test_an_unchanged_outcome_writes_the_same_status() -> None:
    job = pytorchjob()
    first = step(job, trainjob(active=3), "t1")
    assert v1_status(job, trainjob(active=3), None, now="t9") == first
