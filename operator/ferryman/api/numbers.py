"""How wide Kubernetes' integer fields are: a manifest number outside its field's range is refused by the
API server, so ferryman refuses it when reading, naming the line, instead of converting it."""

from __future__ import annotations

import re
from decimal import Decimal

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


# Kubernetes resource quantities: <number><suffix>, the suffix binary (Ki..Ei), decimal (n..E) or an exponent
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
_BINARY = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_SUFFIXES = {
    **{suffix: Decimal(1024) ** power for power, suffix in enumerate(_BINARY, 1)},
    **{suffix: Decimal(10) ** power for suffix, power in zip("num", (-9, -6, -3), strict=True)},
    **{suffix: Decimal(1000) ** power for power, suffix in enumerate("kMGTPE", 1)},
}


def quantity(value: object) -> Decimal | None:
    """The amount a resource quantity stands for (``"1"``, ``1``, ``"500m"``, ``"64Gi"``, ``"1e3"``), None
    when `value` is not one: the API server and webhooks may write a quantity in another form (``1`` as
    ``"1"``, ``"1000m"`` as ``"1"``), so quantities are compared by amount."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    found = _QUANTITY.match(str(value).strip())
    if found is None:
        return None
    number, suffix = Decimal(found[1]), found[2] or ""
    if suffix[:1] in ("e", "E"):
        return number.scaleb(int(suffix[1:]))
    return number * _SUFFIXES[suffix] if suffix else number
