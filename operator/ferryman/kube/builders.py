"""Pure builders of the objects the operator creates: plain dicts, no I/O, easy to test."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ferryman.api.admission import WORKER_ARGS, WORKER_COMMAND, worker_account, worker_report_target
from ferryman.api.experimentmigration import WORKER_SPEC_DIR, WORKER_TMP
from ferryman.api.kinds import (
    ADMISSION_LABELS,
    CONFIG_MAP,
    CONVERTER_MANAGER,
    EXPERIMENT_MIGRATION,
    HELD_LABELS_ANNOTATION,
    JOB,
    MANAGED_BY,
    MIGRATION_LABEL,
    MODE_LABEL,
    POLICY_LABEL,
    ROLE,
    ROLE_BINDING,
    SERVICE_ACCOUNT,
    SOURCE_UID_LABEL,
    SPEC_HASH_LABEL,
    is_foreign_metadata,
)

GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
WORKER_UID = 65532


def migration_children(name: str) -> dict[str, str]:
    """Names of a migration's children: the workers' ServiceAccount (and Role), spec and report maps."""
    return {"account": worker_account(name), "spec": f"{name}-spec"[:253], "report": f"{name}-report"[:253]}


def owner_reference(owner: dict[str, Any], *, controller: bool = True) -> dict[str, Any]:
    """An ownerReference to `owner` (a full object). Deletion is not blocked: GC removes the child after."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": False,
    }


def clean_metadata_map(values: dict[str, str] | None) -> dict[str, str]:
    """Labels or annotations without those of the tools managing the source (see `is_foreign_metadata`)."""
    return {key: value for key, value in (values or {}).items() if not is_foreign_metadata(key)}


def build_trainjob(
    converted: dict[str, Any],
    *,
    source: dict[str, Any],
    policy: dict[str, Any],
    takeover: bool,
    suspend: bool,
) -> dict[str, Any]:
    """The TrainJob ferryman creates for `source` (a PyTorchJob) from the converter's output.

    Mirror: owned by the CutoverPolicy (deleting the policy removes the mirrors; removing the PyTorchJob from
    git does not kill a comparison run). Takeover: owned by the PyTorchJob, which it now serves. A suspended
    mirror holds its queueing systems' admission labels back in an annotation (see `hold_admission_labels`).
    """
    trainjob = copy.deepcopy(converted)
    metadata = trainjob.setdefault("metadata", {})
    metadata["namespace"] = source["metadata"]["namespace"]
    labels = {
        **clean_metadata_map(metadata.get("labels")),
        **MANAGED_BY,
        POLICY_LABEL: policy["metadata"]["name"],
        MODE_LABEL: "takeover" if takeover else "mirror",
        SOURCE_UID_LABEL: source["metadata"]["uid"],
    }
    annotations = clean_metadata_map(metadata.get("annotations"))
    labels[SPEC_HASH_LABEL] = trainjob_spec_hash(trainjob["spec"])
    if suspend and not takeover:
        labels, annotations = hold_admission_labels(labels, annotations)
    metadata["labels"], metadata["annotations"] = labels, annotations
    metadata["ownerReferences"] = [owner_reference(source if takeover else policy)]
    trainjob["spec"]["suspend"] = suspend
    return trainjob


NOT_CONVERTED_SPEC_FIELDS = (
    "suspend",  # follows the policy's mode (and, once served, the queue admitting the TrainJob)
    "managedBy",  # the API server's default; immutable
)


def converted_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A TrainJob spec as far as conversion decides it: without `NOT_CONVERTED_SPEC_FIELDS`, and of its
    runtimePatches only ferryman's (each manager owns its entries; Kueue's webhook adds one to every
    TrainJob)."""
    converted = {key: value for key, value in spec.items() if key not in NOT_CONVERTED_SPEC_FIELDS}
    ours = [patch for patch in converted.pop("runtimePatches", None) or [] if _ours(patch)]
    return {**converted, "runtimePatches": ours} if ours else converted


def others_runtime_patches(spec: dict[str, Any]) -> list[Any]:
    """The runtimePatches entries of a TrainJob spec that other managers own (kept as they are)."""
    return [patch for patch in spec.get("runtimePatches") or [] if not _ours(patch)]


def _ours(patch: Any) -> bool:
    return isinstance(patch, dict) and patch.get("manager") == CONVERTER_MANAGER


def trainjob_spec_hash(spec: dict[str, Any]) -> str:
    """What a TrainJob was converted to, as a label value: its converted spec's hash."""
    text = json.dumps(converted_spec(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hold_admission_labels(
    labels: dict[str, str], annotations: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Labels without the queueing systems' admission labels (`ADMISSION_LABELS`), and annotations with
    those labels kept in `HELD_LABELS_ANNOTATION`, so no queue admits (and unsuspends) a mirror."""
    held = {key: value for key, value in labels.items() if key in ADMISSION_LABELS}
    if not held:
        return labels, annotations
    kept = {key: value for key, value in labels.items() if key not in held}
    return kept, {**annotations, HELD_LABELS_ANNOTATION: json.dumps(held, sort_keys=True)}


@dataclass(frozen=True)
class SecretEnv:
    """An environment variable a migration worker reads from a Secret key."""

    name: str
    secret: str
    key: str


@dataclass(frozen=True)
class Placement:
    """Where migration pods run; the defaults put them on GPU nodes."""

    node_selector: dict[str, str] = field(default_factory=lambda: dict(GPU_NODE_SELECTOR))
    tolerations: tuple[dict[str, Any], ...] = (GPU_TOLERATION,)
    resources: dict[str, Any] = field(
        default_factory=lambda: {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"memory": "4Gi"},
        }
    )
    affinity: dict[str, Any] | None = None
    priority_class_name: str | None = None


@dataclass(frozen=True)
class WorkerVolume:
    """A volume of a migration's source or destination, mounted in every worker pod."""

    name: str
    mount_path: str
    read_only: bool
    source: dict[str, Any]  # one core/v1 volume source: {"persistentVolumeClaim": {...}}, {"nfs": ...}


@dataclass(frozen=True)
class MigrationWorkload:
    """What `build_migration_job` needs to know about one ExperimentMigration run."""

    migration: dict[str, Any]  # the ExperimentMigration object (name, namespace, uid)
    job_name: str
    image: str
    shards: int
    spec_config_map: str  # holds the migration spec the workers run (no secrets in it)
    service_account: str
    secret_env: tuple[SecretEnv, ...] = ()
    placement: Placement = field(default_factory=Placement)
    volumes: tuple[WorkerVolume, ...] = ()
    backoff_limit_per_index: int = 4
    image_pull_policy: str = "IfNotPresent"


def worker_labels(migration: dict[str, Any]) -> dict[str, str]:
    return {**MANAGED_BY, MIGRATION_LABEL: migration["metadata"]["name"]}


def _restricted_container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_migration_job(workload: MigrationWorkload) -> dict[str, Any]:
    """An Indexed Job whose pods run `ferryman migrate`, one shard each, under PodSecurity `restricted`.

    This is the one source of the worker pod's shape (image, command, ServiceAccount, mounts): admission
    policies in deploy/ that restrict the Jobs the operator may create follow it. A failed or killed pod is
    replaced by the Job controller (per-index backoff) and resumes from the migration ledger in the
    destination; progress goes to the ExperimentMigration's status.
    """
    migration = workload.migration
    name, namespace = migration["metadata"]["name"], migration["metadata"]["namespace"]
    placement = workload.placement
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": WORKER_TMP},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        {"name": "FERRYMAN_SHARDS", "value": str(workload.shards)},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    env += [
        {"name": s.name, "valueFrom": {"secretKeyRef": {"name": s.secret, "key": s.key}}}
        for s in workload.secret_env
    ]
    container: dict[str, Any] = {
        "name": "migrate",
        "image": workload.image,
        "imagePullPolicy": workload.image_pull_policy,
        "command": list(WORKER_COMMAND),
        "args": [*WORKER_ARGS, worker_report_target(namespace, name)],
        "env": env,
        "resources": copy.deepcopy(placement.resources),
        "securityContext": _restricted_container_security(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": WORKER_TMP},
            {"name": "spec", "mountPath": WORKER_SPEC_DIR, "readOnly": True},
            *({"name": v.name, "mountPath": v.mount_path, "readOnly": v.read_only} for v in workload.volumes),
        ],
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": workload.service_account,
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "fsGroup": WORKER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "8Gi"}},
            {"name": "spec", "configMap": {"name": workload.spec_config_map}},
            *({"name": v.name, **copy.deepcopy(v.source)} for v in workload.volumes),
        ],
        "nodeSelector": dict(placement.node_selector),
        "tolerations": [dict(t) for t in placement.tolerations],
    }
    if placement.affinity:
        pod_spec["affinity"] = copy.deepcopy(placement.affinity)
    if placement.priority_class_name:
        pod_spec["priorityClassName"] = placement.priority_class_name
    labels = worker_labels(migration)
    return {
        "apiVersion": JOB.api_version,
        "kind": JOB.kind,
        "metadata": {
            "name": workload.job_name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(migration)],
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": workload.shards,
            "parallelism": workload.shards,
            "backoffLimitPerIndex": workload.backoff_limit_per_index,
            "podFailurePolicy": {
                "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
            },
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }



def build_worker_rbac(migration: dict[str, Any]) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding: workers may read and patch only their own migration's status
    and its report ConfigMap."""
    name, namespace = migration["metadata"]["name"], migration["metadata"]["namespace"]
    children = migration_children(name)
    service_account = children["account"]
    metadata = {
        "name": service_account,
        "namespace": namespace,
        "labels": worker_labels(migration),
        "ownerReferences": [owner_reference(migration)],
    }
    return [
        {
            "apiVersion": SERVICE_ACCOUNT.api_version,
            "kind": SERVICE_ACCOUNT.kind,
            "metadata": copy.deepcopy(metadata),
        },
        {
            "apiVersion": ROLE.api_version,
            "kind": ROLE.kind,
            "metadata": copy.deepcopy(metadata),
            "rules": [
                {
                    "apiGroups": [EXPERIMENT_MIGRATION.group],
                    "resources": [f"{EXPERIMENT_MIGRATION.plural}/status"],
                    "resourceNames": [name],
                    "verbs": ["get", "patch"],
                },
                {
                    "apiGroups": [CONFIG_MAP.group],
                    "resources": [CONFIG_MAP.plural],
                    "resourceNames": [children["report"]],
                    "verbs": ["get", "patch"],
                },
            ],
        },
        {
            "apiVersion": ROLE_BINDING.api_version,
            "kind": ROLE_BINDING.kind,
            "metadata": copy.deepcopy(metadata),
            "roleRef": {"apiGroup": ROLE.group, "kind": ROLE.kind, "name": service_account},
            "subjects": [{"kind": SERVICE_ACCOUNT.kind, "name": service_account, "namespace": namespace}],
        },
    ]


def build_config_map(
    name: str, namespace: str, data: dict[str, str], owner: dict[str, Any], labels: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": CONFIG_MAP.api_version,
        "kind": CONFIG_MAP.kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**MANAGED_BY, **labels},
            "ownerReferences": [owner_reference(owner)],
        },
        "data": data,
    }
