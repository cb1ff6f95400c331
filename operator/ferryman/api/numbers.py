"""How wide Kubernetes' integer fields are: a manifest number outside its field's range is refused by the
API server, so ferryman refuses it when reading, naming the line, instead of converting it."""

from __future__ import annotations

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)  # every other integer field: JSON numbers the API server decodes as int64

# Field names that are int32 wherever they occur in the kinds ferryman reads and writes: every
# `format: int32` property of the upstream CRDs (Training Operator v1, Trainer, JobSet, their pod templates
# included); no field of those names is int64 anywhere in them.
INT32_FIELDS = frozenset({
    "active", "averageUtilization", "backoffLimit", "backoffLimitPerIndex", "completions", "containerPort",
    "currentInPlaceRestartAttempt", "defaultMode", "estimatedRemainingSeconds", "failed",
    "failureThreshold", "hostPort", "initialDelaySeconds", "jobRestarts", "jobRestartsCountTowardsMax",
    "lun", "maxExpirationSeconds", "maxFailedIndexes", "maxNodes", "maxReplicas", "maxRestarts", "maxSkew",
    "minAvailable", "minDomains", "minNodes", "minReplicas", "mode", "nProcPerNode", "numNodes",
    "numProcPerNode", "parallelism", "partition", "periodSeconds", "port", "previousInPlaceRestartAttempt",
    "priority", "progressPercentage", "rdzvPort", "ready", "replicas", "restarts",
    "restartsCountTowardsMax", "scheduleTimeoutSeconds", "succeeded", "succeededCount", "successThreshold",
    "suspended", "timeoutSeconds", "ttlSecondsAfterFinished", "values", "weight",
})


def integer_problem(key: object, value: int) -> str | None:
    """Why Kubernetes would refuse `value` under `key`, or None."""
    low, high = INT32 if key in INT32_FIELDS else INT64
    if low <= value <= high:
        return None
    width = "32" if key in INT32_FIELDS else "64"
    shown = str(value) if len(str(value)) <= 24 else f"a {len(str(value))}-digit number"
    return f"{key}: {shown} is outside the {width}-bit integer range Kubernetes accepts"
