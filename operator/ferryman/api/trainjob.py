"""Typed views of a Kubeflow Trainer v2 TrainJob (``trainer.kubeflow.org/v1alpha1``) in each served flavour.

* v2.0: ``spec.podSpecOverrides`` (no affinity, imagePullSecrets or pod metadata), IntOrString
  ``numProcPerNode``, ``spec.labels``/``spec.annotations`` for the JobSet and Jobs.
* v2.1: ``spec.podTemplateOverrides`` (adds affinity, imagePullSecrets and pod metadata), IntOrString
  ``numProcPerNode``.
* v2.2 and later: ``spec.runtimePatches`` (adds pod and container securityContext and, from v2.3,
  terminationGracePeriodSeconds), integer ``numProcPerNode``, ``spec.activeDeadlineSeconds``.

Pod-level objects (volumes, affinity, tolerations, ...) stay dictionaries in corev1 JSON form. Unknown
fields are kept (``extra="allow"``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ferryman.api.kinds import TRAINJOB
from ferryman.api.trainer import TrainerAPI

TRAINER_JOB = "node"  # the replicated job with ancestor label "trainer" in the torch runtimes
TRAINER_CONTAINER = "node"  # the container that gets trainer.image/command/args/env/resources
ANCESTOR_LABEL = f"{TRAINJOB.group}/trainjob-ancestor-step"  # marks the replicated job the trainer runs in
FRAMEWORK_LABEL = f"{TRAINJOB.group}/framework"


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class RuntimeRef(_Model):
    name: str = Field(min_length=1, max_length=253)
    api_group: str | None = Field(default=None, alias="apiGroup")
    kind: str | None = None


class Trainer(_Model):
    image: str | None = Field(default=None, max_length=500)
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[dict[str, Any]] | None = None
    num_nodes: int | None = Field(default=None, alias="numNodes", ge=0)
    resources_per_node: dict[str, Any] | None = Field(default=None, alias="resourcesPerNode")


class TrainerIntOrString(Trainer):
    """v2.0/v2.1: ``numProcPerNode`` is ``auto``, ``cpu``, ``gpu`` or an int."""

    num_proc_per_node: int | Literal["auto", "cpu", "gpu"] | None = Field(
        default=None, alias="numProcPerNode"
    )


class TrainerInt(Trainer):
    """v2.2+: ``numProcPerNode`` is an int >= 1 (omitted means auto)."""

    num_proc_per_node: int | None = Field(default=None, alias="numProcPerNode", ge=1)


class ContainerOverride(_Model):
    name: str = Field(min_length=1)
    env: list[dict[str, Any]] | None = None
    volume_mounts: list[dict[str, Any]] | None = Field(default=None, alias="volumeMounts")


class ContainerPatch(ContainerOverride):
    security_context: dict[str, Any] | None = Field(default=None, alias="securityContext")


class TargetJob(_Model):
    name: str = Field(min_length=1)


class ObjectMetaPatch(_Model):
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class PodSpecOverride(_Model):
    """v2.0 ``podSpecOverrides[]``."""

    target_jobs: list[TargetJob] = Field(alias="targetJobs")
    service_account_name: str | None = Field(default=None, alias="serviceAccountName")
    node_selector: dict[str, str] | None = Field(default=None, alias="nodeSelector")
    tolerations: list[dict[str, Any]] | None = None
    volumes: list[dict[str, Any]] | None = None
    init_containers: list[ContainerOverride] | None = Field(default=None, alias="initContainers")
    containers: list[ContainerOverride] | None = None
    scheduling_gates: list[dict[str, Any]] | None = Field(default=None, alias="schedulingGates")


class PodTemplateOverrideSpec(_Model):
    """v2.1 ``podTemplateOverrides[].spec``."""

    service_account_name: str | None = Field(default=None, alias="serviceAccountName")
    node_selector: dict[str, str] | None = Field(default=None, alias="nodeSelector")
    affinity: dict[str, Any] | None = None
    tolerations: list[dict[str, Any]] | None = None
    volumes: list[dict[str, Any]] | None = None
    init_containers: list[ContainerOverride] | None = Field(default=None, alias="initContainers")
    containers: list[ContainerOverride] | None = None
    scheduling_gates: list[dict[str, Any]] | None = Field(default=None, alias="schedulingGates")
    image_pull_secrets: list[dict[str, Any]] | None = Field(default=None, alias="imagePullSecrets")


class PodTemplateOverride(_Model):
    target_jobs: list[TargetJob] = Field(alias="targetJobs")
    metadata: ObjectMetaPatch | None = None
    spec: PodTemplateOverrideSpec | None = None


class PodSpecPatch(_Model):
    """v2.2+ ``runtimePatches[]...replicatedJobs[].template.spec.template.spec``."""

    service_account_name: str | None = Field(default=None, alias="serviceAccountName")
    volumes: list[dict[str, Any]] | None = None
    init_containers: list[ContainerPatch] | None = Field(default=None, alias="initContainers")
    containers: list[ContainerPatch] | None = None
    image_pull_secrets: list[dict[str, Any]] | None = Field(default=None, alias="imagePullSecrets")
    security_context: dict[str, Any] | None = Field(default=None, alias="securityContext")
    node_selector: dict[str, str] | None = Field(default=None, alias="nodeSelector")
    affinity: dict[str, Any] | None = None
    tolerations: list[dict[str, Any]] | None = None
    scheduling_gates: list[dict[str, Any]] | None = Field(default=None, alias="schedulingGates")
    termination_grace_period_seconds: int | None = Field(
        default=None, alias="terminationGracePeriodSeconds", ge=0
    )


class PodTemplatePatch(_Model):
    metadata: ObjectMetaPatch | None = None
    spec: PodSpecPatch | None = None


class JobSpecPatch(_Model):
    template: PodTemplatePatch | None = None


class JobTemplatePatch(_Model):
    metadata: ObjectMetaPatch | None = None
    spec: JobSpecPatch | None = None


class ReplicatedJobPatch(_Model):
    name: str = Field(min_length=1, max_length=253)
    template: JobTemplatePatch | None = None


class JobSetSpecPatch(_Model):
    replicated_jobs: list[ReplicatedJobPatch] | None = Field(default=None, alias="replicatedJobs")


class JobSetTemplatePatch(_Model):
    metadata: ObjectMetaPatch | None = None
    spec: JobSetSpecPatch | None = None


class TrainingRuntimeSpecPatch(_Model):
    template: JobSetTemplatePatch | None = None


class RuntimePatch(_Model):
    manager: str = Field(min_length=1, max_length=253)
    time: str | None = None
    training_runtime_spec: TrainingRuntimeSpecPatch | None = Field(default=None, alias="trainingRuntimeSpec")


class _TrainJobSpec(_Model):
    runtime_ref: RuntimeRef = Field(alias="runtimeRef")
    initializer: dict[str, Any] | None = None
    suspend: bool | None = None
    managed_by: str | None = Field(default=None, alias="managedBy")


class TrainJobSpecV20(_TrainJobSpec):
    trainer: TrainerIntOrString | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    pod_spec_overrides: list[PodSpecOverride] | None = Field(default=None, alias="podSpecOverrides")


class TrainJobSpecV21(_TrainJobSpec):
    trainer: TrainerIntOrString | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    pod_template_overrides: list[PodTemplateOverride] | None = Field(
        default=None, alias="podTemplateOverrides"
    )


class TrainJobSpecV22(_TrainJobSpec):
    trainer: TrainerInt | None = None
    runtime_patches: list[RuntimePatch] | None = Field(default=None, alias="runtimePatches", max_length=16)
    active_deadline_seconds: int | None = Field(default=None, alias="activeDeadlineSeconds", ge=1)


class _TrainJob(_Model):
    api_version: str = Field(alias="apiVersion", pattern=f"^{re.escape(TRAINJOB.api_version)}$")
    kind: str = Field(pattern=f"^{TRAINJOB.kind}$")
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: dict[str, Any] | None = None


class TrainJobV20(_TrainJob):
    spec: TrainJobSpecV20


class TrainJobV21(_TrainJob):
    spec: TrainJobSpecV21


class TrainJobV22(_TrainJob):
    spec: TrainJobSpecV22


TRAINJOB_MODELS: dict[TrainerAPI, type[_TrainJob]] = {
    TrainerAPI.V2_0: TrainJobV20,
    TrainerAPI.V2_1: TrainJobV21,
    TrainerAPI.V2_2: TrainJobV22,
}


def parse_trainjob(obj: dict[str, Any], trainer_api: TrainerAPI) -> TrainJobV20 | TrainJobV21 | TrainJobV22:
    """Validate a TrainJob manifest against the typed view of its flavour."""
    model = TRAINJOB_MODELS[trainer_api]
    return model.model_validate(obj)  # type: ignore[return-value]
