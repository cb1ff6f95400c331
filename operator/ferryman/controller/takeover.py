"""Takeover: the v1 PyTorchJob status legacy clients expect, derived from the TrainJob and JobSet serving it.

v1 condition types are Created, Running, Restarting, Succeeded, Suspended, Failed with reasons
`PyTorchJob<Type>`; the printer column shows the last condition, so the current state is kept last.
TrainJob has no Running condition: running is read from active or ready Jobs in the TrainJob's
`jobsStatus` or the JobSet's `replicatedJobsStatus`.
"""

from __future__ import annotations

from typing import Any

_TERMINAL = ("Succeeded", "Failed")


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
    """v1 semantics: update in place; a condition turning True moves to the end (the printer column)."""
    text = "True" if status else "False"
    previous = next((c for c in conditions if c["type"] == type_), None)
    if previous is None and not status:
        return conditions
    if previous is not None and previous["status"] == text:
        return conditions
    condition = {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
    }
    others = [c for c in conditions if c["type"] != type_]
    if status:
        return [*others, condition]
    index = conditions.index(previous)  # type: ignore[arg-type]
    return [*conditions[:index], condition, *conditions[index + 1 :]]


def pytorchjob_status(
    pytorchjob: dict[str, Any],
    trainjob: dict[str, Any],
    jobset: dict[str, Any] | None,
    *,
    now: str,
) -> dict[str, Any]:
    """The status to write on `pytorchjob`, given the TrainJob (and its JobSet, if any) that serves it."""
    name = pytorchjob["metadata"]["name"]
    current = pytorchjob.get("status") or {}
    conditions: list[dict[str, Any]] = [dict(c) for c in current.get("conditions") or []]
    trainjob_conditions = (trainjob.get("status") or {}).get("conditions") or []
    jobset_conditions = ((jobset or {}).get("status") or {}).get("conditions") or []
    counts = _jobs_counts(trainjob, jobset)

    conditions = _set_v1_condition(
        conditions, "Created", True, "PyTorchJobCreated", f"PyTorchJob {name} is created.", now
    )
    failed = is_true(trainjob_conditions, "Failed") or is_true(jobset_conditions, "Failed")
    succeeded = is_true(trainjob_conditions, "Complete") or is_true(jobset_conditions, "Completed")
    suspended = bool((trainjob.get("spec") or {}).get("suspend"))
    running = not (failed or succeeded or suspended) and (counts["active"] > 0 or counts["ready"] > 0)

    if suspended:
        conditions = _set_v1_condition(
            conditions, "Running", False, "PyTorchJobSuspended", f"PyTorchJob {name} is suspended.", now
        )
        conditions = _set_v1_condition(
            conditions, "Suspended", True, "PyTorchJobSuspended", f"PyTorchJob {name} is suspended.", now
        )
    else:
        conditions = _set_v1_condition(
            conditions, "Suspended", False, "PyTorchJobResumed", f"PyTorchJob {name} is resumed.", now
        )
    if running:
        conditions = _set_v1_condition(
            conditions, "Running", True, "PyTorchJobRunning", f"PyTorchJob {name} is running.", now
        )
    if succeeded:
        message = f"PyTorchJob {name} is successfully completed."
        conditions = _set_v1_condition(conditions, "Running", False, "PyTorchJobSucceeded", message, now)
        conditions = _set_v1_condition(conditions, "Succeeded", True, "PyTorchJobSucceeded", message, now)
    if failed:
        failure: dict[str, Any] = next(
            (c for c in [*trainjob_conditions, *jobset_conditions] if c.get("type") == "Failed"), {}
        )
        detail = failure.get("message") or failure.get("reason") or "failed"
        message = f"PyTorchJob {name} has failed: {detail}"
        conditions = _set_v1_condition(conditions, "Running", False, "PyTorchJobFailed", message, now)
        conditions = _set_v1_condition(conditions, "Failed", True, "PyTorchJobFailed", message, now)

    status: dict[str, Any] = {
        "conditions": conditions,
        "replicaStatuses": _replica_statuses(pytorchjob, counts),
    }
    start = current.get("startTime")
    if start is None and (running or succeeded or failed):
        start = now
    if start is not None:
        status["startTime"] = start
    completion = current.get("completionTime")
    if completion is None and succeeded:
        completion = now
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
