"""Takeover serving: mirror the status of a TrainJob (and its JobSet) back into the PyTorchJob it serves.

Called from event handlers on TrainJobs and JobSets: stateless, nothing stored on any object but the
PyTorchJob's status, which is what legacy clients read.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from lightkube import ApiError

from ferryman.api.base import now, rfc3339
from ferryman.api.kinds import MODE_LABEL, PYTORCHJOB, SOURCE_UID_LABEL, TRAINJOB
from ferryman.controller.context import OperatorContext
from ferryman.controller.takeover import pytorchjob_status
from ferryman.kube.children import is_child
from ferryman.kube.client import patch_status
from ferryman.kube.resources import PyTorchJob


def served_pytorchjob(trainjob: dict[str, Any]) -> str | None:
    """The name of the PyTorchJob a takeover TrainJob serves (its owner), if it is one."""
    if (trainjob["metadata"].get("labels") or {}).get(MODE_LABEL) != "takeover":
        return None
    for owner in trainjob["metadata"].get("ownerReferences") or []:
        if PYTORCHJOB.matches(owner.get("apiVersion"), owner.get("kind")):
            return str(owner["name"])
    return None


def owning_trainjob(jobset: dict[str, Any]) -> str | None:
    for owner in jobset["metadata"].get("ownerReferences") or []:
        if owner.get("kind") == TRAINJOB.kind and owner.get("controller"):
            return str(owner["name"])
    return None


async def mirror_status(
    ctx: OperatorContext,
    namespace: str,
    trainjob_name: str,
    indexes: dict[str, kopf.Index[Any, Any]],
    logger: logging.Logger | kopf.Logger,
) -> None:
    trainjobs, pytorchjobs, jobsets = indexes["trainjobs"], indexes["pytorchjobs"], indexes["jobsets"]
    key = (namespace, trainjob_name)
    if key not in trainjobs:
        return
    trainjob = next(iter(trainjobs[key]))
    source_name = served_pytorchjob(trainjob)
    if source_name is None or (namespace, source_name) not in pytorchjobs:
        return
    pytorchjob = next(iter(pytorchjobs[(namespace, source_name)]))
    if not is_child(trainjob, pytorchjob, SOURCE_UID_LABEL, pytorchjob["metadata"]["uid"]):
        return  # a TrainJob naming the PyTorchJob without being its Takeover: its status is not written
    jobset = next(iter(jobsets[key])) if key in jobsets else None
    status = pytorchjob_status(pytorchjob, trainjob, jobset, now=rfc3339(now()))
    current = pytorchjob.get("status") or {}
    if all(current.get(field) == value for field, value in status.items()):
        return
    try:
        await patch_status(ctx.client, PyTorchJob, source_name, status, namespace=namespace)
    except ApiError as error:
        if error.status.code != 404:
            raise
        return
    logger.info(f"PyTorchJob {namespace}/{source_name} status: {status['conditions'][-1]['type']}")
