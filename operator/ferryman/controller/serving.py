"""Takeover serving: mirror the status of a TrainJob (and its JobSet) back into the v1 job it serves.

Called from event handlers on TrainJobs and JobSets: stateless, nothing stored on any object but the
v1 job's status, which is what legacy clients read.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from lightkube import ApiError

from ferryman.api.base import now, rfc3339
from ferryman.api.kinds import MODE_LABEL, SOURCE_UID_LABEL, TRAINJOB
from ferryman.controller.context import OperatorContext
from ferryman.controller.retrying import retried_in_place
from ferryman.controller.takeover import v1_status
from ferryman.convert.registry import job_kind
from ferryman.kube.children import is_child
from ferryman.kube.client import patch_status
from ferryman.kube.resources import v1_job_resource


def served_job(trainjob: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, name) of the v1 job a takeover TrainJob serves (its owner), if it is one."""
    if (trainjob["metadata"].get("labels") or {}).get(MODE_LABEL) != "takeover":
        return None
    for owner in trainjob["metadata"].get("ownerReferences") or []:
        if job_kind(owner) is not None:
            return str(owner["kind"]), str(owner["name"])
    return None


def owning_trainjob(jobset: dict[str, Any]) -> str | None:
    for owner in jobset["metadata"].get("ownerReferences") or []:
        if owner.get("kind") == TRAINJOB.kind and owner.get("controller"):
            return str(owner["name"])
    return None


def status_patch(current: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """The merge patch writing `status`: a replica count that went to zero (v1 omits zeros) is removed, not
    left at its old value, as a merge patch leaves every key it does not name."""
    replicas: dict[str, Any] = {}
    for replica, counts in (current.get("replicaStatuses") or {}).items():
        wanted = status["replicaStatuses"].get(replica)
        if wanted is None:
            replicas[replica] = None
        else:
            replicas[replica] = {**dict.fromkeys(counts), **wanted}
    return {**status, "replicaStatuses": {**status["replicaStatuses"], **replicas}}


async def mirror_status(
    ctx: OperatorContext,
    namespace: str,
    trainjob_name: str,
    indexes: dict[str, kopf.Index[Any, Any]],
    logger: logging.Logger | kopf.Logger,
) -> None:
    """Write TrainJob `namespace/trainjob_name`'s status into the v1 job it serves, tried again in place
    after a failure that passes (kopf never retries its callers: an event handler and the tasks it starts)."""
    await retried_in_place(
        lambda: _mirror_status(ctx, namespace, trainjob_name, indexes, logger),
        f"mirroring the status of TrainJob {namespace}/{trainjob_name}",
        logger,
    )


async def _mirror_status(
    ctx: OperatorContext,
    namespace: str,
    trainjob_name: str,
    indexes: dict[str, kopf.Index[Any, Any]],
    logger: logging.Logger | kopf.Logger,
) -> None:
    trainjobs, v1jobs, jobsets = indexes["trainjobs"], indexes["v1jobs"], indexes["jobsets"]
    key = (namespace, trainjob_name)
    if key not in trainjobs:
        return
    trainjob = next(iter(trainjobs[key]))
    served = served_job(trainjob)
    if served is None or (served[0], namespace, served[1]) not in v1jobs:
        return
    kind, source_name = served
    job = next(iter(v1jobs[(kind, namespace, source_name)]))
    if not is_child(trainjob, job, SOURCE_UID_LABEL, job["metadata"]["uid"]):
        return  # a TrainJob naming the v1 job without being its Takeover: its status is not written
    jobset = next(iter(jobsets[key])) if key in jobsets else None
    status = v1_status(job, trainjob, jobset, now=rfc3339(now()))
    current = job.get("status") or {}
    if all(current.get(field) == value for field, value in status.items()):
        return
    resource = v1_job_resource(job["apiVersion"], kind)
    try:
        patch = status_patch(current, status)
        await patch_status(ctx.client, resource, source_name, patch, namespace=namespace)
    except ApiError as error:
        if error.status.code != 404:
            raise
        return
    logger.info(f"{kind} {namespace}/{source_name} status: {status['conditions'][-1]['type']}")
