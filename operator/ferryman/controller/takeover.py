"""Takeover: the v1 PyTorchJob status legacy clients expect, derived from the TrainJob and JobSet serving it.

v1 condition types are Created, Running, Restarting, Succeeded, Suspended, Failed with reasons
`PyTorchJob<Type>`; the printer column shows the last condition, so the current state is kept last.
TrainJob has no Running condition: running is read from active or ready Jobs in the TrainJob's
`jobsStatus` or the JobSet's `replicatedJobsStatus`.
"""

from __future__ import annotations

from typing import Any

_TERMINAL = ("Succeeded", "Failed")
_EXCLUSIVE = {"Running", "Restarting"}  # each replaces the other


def is_true(conditions: list[dict[str, Any]], type_: str) -> bool:
    """Whether a v1 or Trainer condition list (plain dicts, as read from the cluster) has `type_` True."""
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


def _jobs_counts(trainjob: dict[str, Any], jobset: dict[str, Any] | None) -> dict[str, int]:
    entries = (trainjob.get("status") or {}).get("jobsStatus") or []
    if not entries and jobset is not None:
        entries = (jobset.get("status") or {}).get("replicatedJobsStatus") or []
    totals = {"active": 0, "ready": 0, "succeeded": 0, "failed": 0, "suspended": 0}
    for entry in entries:
        for key in totals:
            totals[key] += int(entry.get(key) or 0)
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


def pytorchjob_status(
    pytorchjob: dict[str, Any],
    trainjob: dict[str, Any],
    jobset: dict[str, Any] | None,
    *,
    now: str,
) -> dict[str, Any]:
    """The status to write on `pytorchjob`, given the TrainJob (and its JobSet, if any) that serves it:
    conditions, messages, replica counts, startTime and completionTime as the Training Operator v1.9
    controller writes them for the same outcome."""
    metadata = pytorchjob["metadata"]
    name = metadata["name"]
    current = pytorchjob.get("status") or {}
    conditions: list[dict[str, Any]] = [dict(c) for c in current.get("conditions") or []]
    trainjob_conditions = (trainjob.get("status") or {}).get("conditions") or []
    jobset_conditions = ((jobset or {}).get("status") or {}).get("conditions") or []
    counts = _jobs_counts(trainjob, jobset)
    has_master = "Master" in ((pytorchjob.get("spec") or {}).get("pytorchReplicaSpecs") or {})
    # v1 names a job with a Master by its name, a Worker-only one by namespace/name
    label = name if has_master else f"{metadata.get('namespace', '')}/{name}"

    if not any(c["type"] == "Created" for c in conditions):
        conditions = _set_v1_condition(
            conditions, "Created", True, "PyTorchJobCreated", f"PyTorchJob {name} is created.", now
        )
    failed = is_true(trainjob_conditions, "Failed") or is_true(jobset_conditions, "Failed")
    succeeded = is_true(trainjob_conditions, "Complete") or is_true(jobset_conditions, "Completed")
    suspended = bool((trainjob.get("spec") or {}).get("suspend"))
    start, completion = current.get("startTime"), current.get("completionTime")

    if failed:
        failure: dict[str, Any] = next(
            (c for c in [*trainjob_conditions, *jobset_conditions] if c.get("type") == "Failed"), {}
        )
        detail = failure.get("message") or failure.get("reason") or "failed"
        message = f"PyTorchJob {name} is failed: {detail}"
        conditions = _set_v1_condition(conditions, "Failed", True, "PyTorchJobFailed", message, now)
        completion = completion or now
    elif succeeded:
        message = (
            f"PyTorchJob {label} is successfully completed."
            if has_master
            else f"PyTorchJob {label} successfully completed."
        )
        conditions = _set_v1_condition(conditions, "Succeeded", True, "PyTorchJobSucceeded", message, now)
        completion = completion or now
        counts = {**counts, "succeeded": counts["succeeded"] + counts["active"], "active": 0}
    elif suspended:
        message = f"PyTorchJob {name} is suspended."
        if is_true(conditions, "Running"):
            conditions = _set_v1_condition(conditions, "Running", False, "PyTorchJobSuspended", message, now)
        if not is_true(conditions, "Suspended"):
            conditions = _set_v1_condition(conditions, "Suspended", True, "PyTorchJobSuspended", message, now)
        counts = {**counts, "active": 0}
    else:
        if is_true(conditions, "Suspended"):
            message = f"PyTorchJob {name} is resumed."
            conditions = _set_v1_condition(conditions, "Suspended", False, "PyTorchJobResumed", message, now)
            start = now
        start = start or now
        if counts["active"] > 0 or counts["ready"] > 0:
            message = f"PyTorchJob {label} is running."
            conditions = _set_v1_condition(conditions, "Running", True, "PyTorchJobRunning", message, now)

    status: dict[str, Any] = {
        "conditions": conditions,
        "replicaStatuses": _replica_statuses(pytorchjob, counts),
    }
    if start is not None:
        status["startTime"] = start
    if completion is not None:
        status["completionTime"] = completion
    return status


def _replica_statuses(pytorchjob: dict[str, Any], counts: dict[str, int]) -> dict[str, dict[str, int]]:
    """Split the TrainJob's node counts back into v1's Master (index 0, if the job had one) and Worker."""
    replica_specs = (pytorchjob.get("spec") or {}).get("pytorchReplicaSpecs") or {}
    has_master = "Master" in replica_specs
    statuses: dict[str, dict[str, int]] = {}
    remaining = dict(counts)
    if has_master:
        master = {key: min(1, remaining[key]) for key in ("active", "succeeded", "failed")}
        statuses["Master"] = {key: value for key, value in master.items() if value}
        for key, value in master.items():
            remaining[key] -= value
    if "Worker" in replica_specs or not has_master:
        statuses["Worker"] = {
            key: remaining[key] for key in ("active", "succeeded", "failed") if remaining[key]
        }
    return statuses


def is_finished(pytorchjob: dict[str, Any]) -> bool:
    conditions = (pytorchjob.get("status") or {}).get("conditions") or []
    return any(is_true(conditions, type_) for type_ in _TERMINAL)


def was_started_elsewhere(pytorchjob: dict[str, Any]) -> bool:
    """True when a controller (Training Operator v1) already wrote status: the job is not ours to start."""
    return bool((pytorchjob.get("status") or {}).get("conditions"))
