"""The sandbox `ferryman verify` runs jobs in: a disposable control plane with both sides' controllers.

One control plane serves every job of a run at once: the Training Operator (v1 side), Trainer and JobSet
(v2 side), kube-controller-manager and kube-scheduler, and kwok nodes shaped like the nodes the jobs ask for
(:func:`node_shapes`: the labels their node selectors and required node affinity name, taints their
tolerations accept, the extended resources they request). Each job runs in a namespace of its own, its
conversion in another, so both keep their names (host names derive from them).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferryman.api.trainer import TrainerAPI
from ferryman_dev.cluster import (
    FAKE_NODE_ANNOTATION,
    ClusterSpec,
    ControlPlane,
    Rejected,
)

SANDBOX_CONTROLLERS = ("trainer", "jobset", "training-operator")
NODE_PREFIX = "ferryman-verify-"
# resource quantities a shaped node offers: enough for every pod of both sides of a run at once
NODE_CAPACITY = {"cpu": "4096", "memory": "64Ti", "pods": "1000", "ephemeral-storage": "1Pi"}
EXTENDED_CAPACITY = "4096"
_SYSTEM_TAINTS = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/")


@contextlib.contextmanager
def sandbox(plane: ControlPlane | None = None) -> Iterator[ControlPlane]:
    """``plane`` when given (it must run :data:`SANDBOX_CONTROLLERS`), else a disposable control plane
    started for the run and removed after it. :class:`~ferryman_dev.cluster.ClusterError` when its
    binaries are not built (the message says ``make cluster-bins``)."""
    if plane is not None:
        yield plane
        return
    state = Path(tempfile.mkdtemp(prefix="ferryman-verify-"))
    spec = ClusterSpec(
        gpu_nodes=0, cpu_nodes=1, trainer_api=TrainerAPI.V2_2, upstream_controllers=SANDBOX_CONTROLLERS
    )
    started = ControlPlane(state, spec)
    try:
        yield started.start()
    finally:
        started.stop()
        shutil.rmtree(state, ignore_errors=True)


def node_shapes(templates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One kwok Node for each distinct (labels, taints, extended resources) the pod templates ask for."""
    shapes: dict[str, dict[str, Any]] = {}
    for template in templates:
        spec = template.get("spec") or {}
        labels = {str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()}
        required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        ) or {}
        for term in (required.get("nodeSelectorTerms") or [])[:1]:
            for expression in term.get("matchExpressions") or []:
                if expression.get("operator") == "In" and expression.get("values"):
                    labels[expression["key"]] = str(expression["values"][0])
                elif expression.get("operator") == "Exists":
                    labels[expression["key"]] = "true"
        taints = []
        for toleration in spec.get("tolerations") or []:
            key = toleration.get("key")
            if not key or key.startswith(_SYSTEM_TAINTS) or toleration.get("effect") == "PreferNoSchedule":
                continue
            taint = {"key": key, "effect": toleration.get("effect") or "NoSchedule"}
            if toleration.get("operator", "Equal") == "Equal" and toleration.get("value"):
                taint["value"] = str(toleration["value"])
            taints.append(taint)
        extended = sorted(
            {
                name
                for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
                for kind in ("requests", "limits")
                for name in ((container.get("resources") or {}).get(kind) or {})
                if "/" in name
            }
        )
        key = repr((sorted(labels.items()), sorted(map(repr, taints)), extended))
        shapes.setdefault(key, {"labels": labels, "taints": taints, "extended": extended})
    return [_node(f"{NODE_PREFIX}{secrets.token_hex(3)}-{i}", s) for i, s in enumerate(shapes.values())]


def _node(name: str, shape: dict[str, Any]) -> dict[str, Any]:
    capacity = {**NODE_CAPACITY, **dict.fromkeys(shape["extended"], EXTENDED_CAPACITY)}
    labels = {
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok", **shape["labels"],
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {FAKE_NODE_ANNOTATION: "fake"}},
        "spec": {"taints": shape["taints"]},
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }


@dataclass
class Placement:
    """Where one job runs (its namespace) and its conversion (another)."""

    v1_namespace: str
    v2_namespace: str


def prepare_namespaces(kube: Any, run: str, index: int, accounts: set[str]) -> Placement:
    """Two fresh namespaces for job ``index`` of run ``run``, each with the ServiceAccounts the job's pods
    name, ``default`` included (the ServiceAccount admission refuses a pod whose account does not exist yet,
    and waiting for kube-controller-manager to create ``default`` costs seconds a namespace)."""
    placement = Placement(f"fv-{run}-{index}-v1", f"fv-{run}-{index}-v2")
    for namespace in (placement.v1_namespace, placement.v2_namespace):
        create(kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        for account in sorted(accounts | {"default"}):
            create(kube, {"apiVersion": "v1", "kind": "ServiceAccount",
                          "metadata": {"name": account, "namespace": namespace}}, exist_ok=True)
    return placement


def ensure_priority_classes(kube: Any, names: set[str]) -> list[str]:
    """Create the PriorityClasses the pods name that do not exist yet (the Priority admission refuses a
    pod naming a missing one); the names created, for :func:`cleanup`."""
    created = []
    for name in sorted(n for n in names if not n.startswith("system-")):
        obj = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
               "value": 1000, "description": "created by ferryman verify"}
        if create(kube, obj, exist_ok=True):
            created.append(name)
    return created


def create(kube: Any, obj: dict[str, Any], *, exist_ok: bool = False) -> dict[str, Any] | None:
    """Create ``obj`` (admission webhooks and all); the object as stored, None when it existed and
    ``exist_ok``. Raises :class:`~ferryman_dev.cluster.Rejected` with the apiserver's message."""
    from lightkube import ApiError, codecs

    try:
        return dict(kube.create(codecs.from_dict(obj)).to_dict())
    except ApiError as error:
        if exist_ok and error.status.code == 409:
            return None
        status = error.status
        raise Rejected(status.code or 0, status.reason or "", status.message or "") from None


def register_kinds() -> None:
    """Make the custom kinds verify creates known to lightkube's codecs."""
    from lightkube.generic_resource import create_namespaced_resource

    from ferryman.api.kinds import PYTORCHJOB, TRAINING_RUNTIME, TRAINJOB

    for kind in (PYTORCHJOB, TRAINJOB, TRAINING_RUNTIME):
        create_namespaced_resource(kind.group, kind.version, kind.kind, kind.plural)


def cleanup(kube: Any, namespaces: list[str], nodes: list[str], priority_classes: list[str]) -> None:
    """Remove what a run created in a control plane it was given (a disposable one goes as a whole)."""
    from lightkube import ApiError
    from lightkube.resources.core_v1 import Namespace, Node
    from lightkube.resources.scheduling_v1 import PriorityClass

    for resource, names in ((Namespace, namespaces), (Node, nodes), (PriorityClass, priority_classes)):
        for name in names:
            with contextlib.suppress(ApiError):
                kube.delete(resource, name)
