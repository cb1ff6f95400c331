"""Typed view of a Training Operator v1 PyTorchJob (``kubeflow.org/v1``), as far as ferryman maps it.

Every model keeps unknown fields (``extra="allow"``) so a converter can report them instead of losing them.
Pod templates stay dictionaries: ferryman reads them field by field (see :class:`PodSpecView`), and
validating a whole ``corev1.PodSpec`` on every job would cost more than the conversion itself.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MASTER = "Master"
WORKER = "Worker"
PYTORCH_CONTAINER = "pytorch"  # the v1 webhook requires a container with this name
DEFAULT_PORT_NAME = "pytorchjob-port"  # defaulted on the pytorch container, 23456

# A placeholder left by envsubst-style templates may stand where an integer belongs.
IntOrPlaceholder = int | str


class _View(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def unknown_fields(self) -> dict[str, Any]:
        """Fields the model does not know, kept verbatim."""
        return dict(self.model_extra or {})


class SchedulingPolicy(_View):
    min_available: IntOrPlaceholder | None = Field(default=None, alias="minAvailable")
    queue: str | None = None
    min_resources: dict[str, Any] | None = Field(default=None, alias="minResources")
    priority_class: str | None = Field(default=None, alias="priorityClass")
    schedule_timeout_seconds: IntOrPlaceholder | None = Field(default=None, alias="scheduleTimeoutSeconds")


class RunPolicy(_View):
    clean_pod_policy: str | None = Field(default=None, alias="cleanPodPolicy")
    ttl_seconds_after_finished: IntOrPlaceholder | None = Field(default=None, alias="ttlSecondsAfterFinished")
    active_deadline_seconds: IntOrPlaceholder | None = Field(default=None, alias="activeDeadlineSeconds")
    backoff_limit: IntOrPlaceholder | None = Field(default=None, alias="backoffLimit")
    scheduling_policy: SchedulingPolicy | None = Field(default=None, alias="schedulingPolicy")
    suspend: bool | str | None = None
    managed_by: str | None = Field(default=None, alias="managedBy")


class ElasticPolicy(_View):
    min_replicas: IntOrPlaceholder | None = Field(default=None, alias="minReplicas")
    max_replicas: IntOrPlaceholder | None = Field(default=None, alias="maxReplicas")
    rdzv_backend: str | None = Field(default=None, alias="rdzvBackend")
    rdzv_port: IntOrPlaceholder | None = Field(default=None, alias="rdzvPort")
    rdzv_host: str | None = Field(default=None, alias="rdzvHost")
    rdzv_id: str | None = Field(default=None, alias="rdzvId")
    rdzv_conf: list[dict[str, Any]] | None = Field(default=None, alias="rdzvConf")
    standalone: bool | None = None
    n_proc_per_node: IntOrPlaceholder | None = Field(default=None, alias="nProcPerNode")
    max_restarts: IntOrPlaceholder | None = Field(default=None, alias="maxRestarts")
    metrics: list[dict[str, Any]] | None = None


class ReplicaSpec(_View):
    replicas: IntOrPlaceholder | None = None  # v1 default: 1
    restart_policy: str | None = Field(default=None, alias="restartPolicy")  # v1 PyTorch default: OnFailure
    template: dict[str, Any] = Field(default_factory=dict)  # corev1.PodTemplateSpec, read via PodSpecView


class PyTorchJobSpec(_View):
    run_policy: RunPolicy | None = Field(default=None, alias="runPolicy")
    elastic_policy: ElasticPolicy | None = Field(default=None, alias="elasticPolicy")
    pytorch_replica_specs: dict[str, ReplicaSpec | None] = Field(
        default_factory=dict, alias="pytorchReplicaSpecs"
    )
    nproc_per_node: IntOrPlaceholder | None = Field(default=None, alias="nprocPerNode")


class PyTorchJob(_View):
    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: PyTorchJobSpec = Field(default_factory=PyTorchJobSpec)
    status: dict[str, Any] | None = None

    @property
    def replica_specs(self) -> dict[str, ReplicaSpec | None]:
        return self.spec.pytorch_replica_specs

    def replica(self, replica_type: str) -> tuple[str, ReplicaSpec] | None:
        """The replica spec of ``Master`` or ``Worker`` and its key as written (v1 accepts any case)."""
        return replica(self.replica_specs, replica_type)


def replica(specs: dict[str, ReplicaSpec | None], replica_type: str) -> tuple[str, ReplicaSpec] | None:
    """The replica spec of a role and its key as written (v1 accepts any case)."""
    for key, spec in specs.items():
        if key.lower() == replica_type.lower():
            return key, spec if spec is not None else ReplicaSpec()
    return None


class ContainerView(_View):
    """The container fields ferryman maps; everything else is in ``unknown_fields()``."""

    name: str = ""
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[dict[str, Any]] | None = None
    resources: dict[str, Any] | None = None
    volume_mounts: list[dict[str, Any]] | None = Field(default=None, alias="volumeMounts")
    security_context: dict[str, Any] | None = Field(default=None, alias="securityContext")
    ports: list[dict[str, Any]] | None = None


class PodSpecView(_View):
    """The pod fields ferryman maps onto a TrainJob's pod overrides; everything else is runtime-only."""

    containers: list[dict[str, Any]] = Field(default_factory=list)
    init_containers: list[dict[str, Any]] | None = Field(default=None, alias="initContainers")
    volumes: list[dict[str, Any]] | None = None
    node_selector: dict[str, str] | None = Field(default=None, alias="nodeSelector")
    tolerations: list[dict[str, Any]] | None = None
    affinity: dict[str, Any] | None = None
    service_account_name: str | None = Field(default=None, alias="serviceAccountName")
    image_pull_secrets: list[dict[str, Any]] | None = Field(default=None, alias="imagePullSecrets")
    security_context: dict[str, Any] | None = Field(default=None, alias="securityContext")
    scheduling_gates: list[dict[str, Any]] | None = Field(default=None, alias="schedulingGates")
    termination_grace_period_seconds: IntOrPlaceholder | None = Field(
        default=None, alias="terminationGracePeriodSeconds"
    )
