"""Takeover: the v1 status legacy clients expect, derived from the TrainJob and JobSet serving a v1 job.

Every kind is written in its own controller's shape: the Training Operator v1.9 kinds share its JobStatus
(condition types Created, Running, Restarting, Succeeded, Suspended, Failed with reasons `<Kind><Type>`,
replicaStatuses keyed by the kind's replica types); mpi-operator v0.8.0's MPIJob (kubeflow.org/v2beta1) has
the same fields with its own messages and Launcher and Worker replicas. The printer column shows the last
condition, so the current state is kept last. TrainJob has no Running condition: running is read from
active or ready Jobs in the TrainJob's `jobsStatus` or the JobSet's `replicatedJobsStatus`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ferryman.api import kinds


@dataclass(frozen=True)
class V1StatusShape:
    """How one kind's v1 controller words and counts its status (read from the pinned upstream code)."""

    replica_specs: str  # the spec field holding the replica specs
    leaders: tuple[str, ...] = ()  # replica types of node 0 (a job has one at most): its end ends the job
    short_with: str | None = None  # with this replica type, messages name the job alone, not namespace/name
    mpi_operator: bool = False  # mpi-operator's own messages (created, suspended and resumed)
    workers_end_with_launcher: bool = False  # once the Launcher has ended, no Worker is counted any more
    failed_reason: str | None = None  # its Failed condition's reason, when not <Kind>Failed


# Training Operator v1.9.4 pkg/controller.v1/<kind>/*_controller.go UpdateJobStatus and common/job.go;
# mpi-operator v0.8.0 pkg/controller/mpi_job_controller.go updateMPIJobStatus.
V1_STATUS_SHAPES: dict[tuple[str, str], V1StatusShape] = {
    (kinds.PYTORCHJOB.api_version, kinds.PYTORCHJOB.kind): V1StatusShape(
        "pytorchReplicaSpecs", ("Master",), short_with="Master"
    ),
    (kinds.PADDLEJOB.api_version, kinds.PADDLEJOB.kind): V1StatusShape(
        "paddleReplicaSpecs", ("Master",), short_with="Master"
    ),
    (kinds.XGBOOSTJOB.api_version, kinds.XGBOOSTJOB.kind): V1StatusShape(
        "xgbReplicaSpecs", ("Master",), short_with="Master"
    ),
    (kinds.JAXJOB.api_version, kinds.JAXJOB.kind): V1StatusShape("jaxReplicaSpecs"),
    (kinds.TFJOB.api_version, kinds.TFJOB.kind): V1StatusShape("tfReplicaSpecs", ("Chief", "Master")),
    # v1.9.4 mpi/mpijob_controller.go: UpdateJobStatus words it (every MPIJob v1 has a Launcher) and gives a
    # failed replica the kind twice in its reason; updateMPIJobStatus lists no Worker once the Launcher ended
    (kinds.MPIJOB_V1.api_version, kinds.MPIJOB_V1.kind): V1StatusShape(
        "mpiReplicaSpecs",
        ("Launcher",),
        short_with="Launcher",
        workers_end_with_launcher=True,
        failed_reason="MPIJobMPIJobFailed",
    ),
    (kinds.MPIJOB.api_version, kinds.MPIJOB.kind): V1StatusShape(
        "mpiReplicaSpecs", ("Launcher",), mpi_operator=True
    ),
}
LAUNCHER_JOB = "launcher"  # the replicated job of an MPI runtime that runs the Launcher


def status_shape(job: dict[str, Any]) -> V1StatusShape:
    """The status shape of a v1 job's apiVersion and kind (KeyError for a kind ferryman does not serve)."""
    return V1_STATUS_SHAPES[(job.get("apiVersion", ""), job.get("kind", ""))]


_TERMINAL = ("Succeeded", "Failed")
_EXCLUSIVE = {"Running", "Restarting"}  # each replaces the other


def is_true(conditions: list[dict[str, Any]], type_: str) -> bool:
    """Whether a v1 or Trainer condition list (plain dicts, as read from the cluster) has `type_` True."""
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


_COUNTS = ("active", "ready", "succeeded", "failed", "suspended")


def _jobs_counts(trainjob: dict[str, Any], jobset: dict[str, Any] | None) -> dict[str, dict[str, int]]:
    """Per replicated job (node, launcher, ...): its pods' counts. TrainJob and JobSet statuses count Jobs;
    each Job of a replicated job runs its parallelism in pods (Trainer's node Job: numNodes pods), which v1
    counts one by one."""
    entries = (trainjob.get("status") or {}).get("jobsStatus") or []
    if not entries and jobset is not None:
        entries = (jobset.get("status") or {}).get("replicatedJobsStatus") or []
    pods_per_job = {
        job.get("name"): int(((job.get("template") or {}).get("spec") or {}).get("parallelism") or 1)
        for job in ((jobset or {}).get("spec") or {}).get("replicatedJobs") or []
    }
    totals: dict[str, dict[str, int]] = {}
    for entry in entries:
        name = str(entry.get("name", ""))
        job = totals.setdefault(name, dict.fromkeys(_COUNTS, 0))
        for key in _COUNTS:
            job[key] += int(entry.get(key) or 0) * pods_per_job.get(name, 1)
    return totals


def _set_v1_condition(
    conditions: list[dict[str, Any]], type_: str, status: bool, reason: str, message: str, now: str
) -> list[dict[str, Any]]:
    """The Training Operator's setCondition: nothing changes once Failed, or when status and reason are the
    same; otherwise the condition moves to the end (the printer column), keeping its transition time when
    only the reason changed. Running and Restarting replace each other; Succeeded and Failed turn Running
    False."""
    if is_true(conditions, "Failed"):
        return conditions
    text = "True" if status else "False"
    previous = next((c for c in conditions if c["type"] == type_), None)
    if previous is not None and (previous["status"], previous["reason"]) == (text, reason):
        return conditions
    kept = []
    for condition in conditions:
        if condition["type"] == type_ or {type_, condition["type"]} == _EXCLUSIVE:
            continue
        if type_ in _TERMINAL and condition["type"] == "Running":
            condition = {**condition, "status": "False"}
        kept.append(condition)
    same_status = previous is not None and previous["status"] == text
    transition = previous["lastTransitionTime"] if previous is not None and same_status else now
    condition = {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message,
        "lastUpdateTime": now,
        "lastTransitionTime": transition,
    }
    return [*kept, condition]


def v1_status(
    job: dict[str, Any],
    trainjob: dict[str, Any],
    jobset: dict[str, Any] | None,
    *,
    now: str,
) -> dict[str, Any]:
    """The status to write on the v1 `job`, given the TrainJob (and its JobSet, if any) that serves it:
    conditions, messages, replica counts, startTime and completionTime as the kind's v1 controller writes
    them for the same outcome."""
    shape = status_shape(job)
    kind = job["kind"]
    metadata = job["metadata"]
    name = metadata["name"]
    qualified = f"{metadata.get('namespace', '')}/{name}"
    current = job.get("status") or {}
    conditions: list[dict[str, Any]] = [dict(c) for c in current.get("conditions") or []]
    trainjob_conditions = (trainjob.get("status") or {}).get("conditions") or []
    jobset_conditions = ((jobset or {}).get("status") or {}).get("conditions") or []
    replica_specs = (job.get("spec") or {}).get(shape.replica_specs) or {}
    per_job = _jobs_counts(trainjob, jobset)
    counts = {key: sum(c[key] for c in per_job.values()) for key in _COUNTS}
    short = shape.short_with is not None and shape.short_with in replica_specs
    label = name if short else qualified

    if not any(c["type"] == "Created" for c in conditions):
        created = f"{kind} {qualified if shape.mpi_operator else name} is created."
        conditions = _set_v1_condition(conditions, "Created", True, f"{kind}Created", created, now)
    failed = is_true(trainjob_conditions, "Failed") or is_true(jobset_conditions, "Failed")
    succeeded = is_true(trainjob_conditions, "Complete") or is_true(jobset_conditions, "Completed")
    suspended = bool((trainjob.get("spec") or {}).get("suspend"))
    start, completion = current.get("startTime"), current.get("completionTime")

    if failed:
        failure: dict[str, Any] = next(
            (c for c in [*trainjob_conditions, *jobset_conditions] if c.get("type") == "Failed"), {}
        )
        detail = failure.get("message") or failure.get("reason") or "failed"
        message = f"{kind} {name} is failed: {detail}"
        reason = shape.failed_reason or f"{kind}Failed"
        conditions = _set_v1_condition(conditions, "Failed", True, reason, message, now)
        completion = completion or now
    elif succeeded:
        message = (
            f"{kind} {label} is successfully completed."
            if short
            else f"{kind} {label} successfully completed."
        )
        conditions = _set_v1_condition(conditions, "Succeeded", True, f"{kind}Succeeded", message, now)
        completion = completion or now
        per_job = {
            job_name: {**c, "succeeded": c["succeeded"] + c["active"], "active": 0}
            for job_name, c in per_job.items()
        }
    elif suspended:
        message = f"{kind} {qualified if shape.mpi_operator else name} is suspended."
        if is_true(conditions, "Running"):
            conditions = _set_v1_condition(conditions, "Running", False, f"{kind}Suspended", message, now)
        if not is_true(conditions, "Suspended"):
            if shape.mpi_operator:
                message = f"{kind} suspended"
            conditions = _set_v1_condition(conditions, "Suspended", True, f"{kind}Suspended", message, now)
        per_job = {job_name: {**c, "active": 0} for job_name, c in per_job.items()}
    else:
        if is_true(conditions, "Suspended"):
            message = f"{kind} resumed" if shape.mpi_operator else f"{kind} {name} is resumed."
            conditions = _set_v1_condition(conditions, "Suspended", False, f"{kind}Resumed", message, now)
            start = now
        start = start or now
        if counts["active"] > 0 or counts["ready"] > 0:
            message = f"{kind} {label} is running."
            conditions = _set_v1_condition(conditions, "Running", True, f"{kind}Running", message, now)

    if shape.workers_end_with_launcher and (failed or succeeded):
        per_job = {job_name: c for job_name, c in per_job.items() if job_name == LAUNCHER_JOB}
    status: dict[str, Any] = {
        "conditions": conditions,
        "replicaStatuses": _replica_statuses(shape, replica_specs, per_job),
    }
    if start is not None:
        status["startTime"] = start
    if completion is not None:
        status["completionTime"] = completion
    return status


_REPLICA_COUNTS = ("active", "succeeded", "failed")


def _replica_statuses(
    shape: V1StatusShape, replica_specs: dict[str, Any], per_job: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """Split the TrainJob's Jobs back into the kind's replica types: its leader (Master, Chief or Launcher)
    from an MPI runtime's launcher job or else node index 0, and Worker from the rest."""
    leader = next((t for t in shape.leaders if t in replica_specs), None)
    remaining = dict.fromkeys(_REPLICA_COUNTS, 0)
    launcher = per_job.get(LAUNCHER_JOB)
    for job_name, counts in per_job.items():
        if job_name != LAUNCHER_JOB or leader is None:
            for key in _REPLICA_COUNTS:
                remaining[key] += counts[key]
    statuses: dict[str, dict[str, int]] = {}
    if leader is not None:
        if launcher is not None:
            taken = {key: launcher[key] for key in _REPLICA_COUNTS}
        else:
            taken = {key: min(1, remaining[key]) for key in _REPLICA_COUNTS}
            for key, value in taken.items():
                remaining[key] -= value
        statuses[leader] = {key: value for key, value in taken.items() if value}
    if "Worker" in replica_specs or leader is None:
        statuses["Worker"] = {key: remaining[key] for key in _REPLICA_COUNTS if remaining[key]}
    return statuses


def is_finished(job: dict[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(is_true(conditions, type_) for type_ in _TERMINAL)


def was_started_elsewhere(job: dict[str, Any]) -> bool:
    """True when a controller (Training Operator v1) already wrote status: the job is not ours to start."""
    return bool((job.get("status") or {}).get("conditions"))
