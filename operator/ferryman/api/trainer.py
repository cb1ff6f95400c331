"""Kubeflow Trainer vocabulary: the TrainJob API flavours, launcher strategies and runtime selection rules."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from ferryman.api.kinds import CLUSTER_TRAINING_RUNTIME


class TrainerAPI(StrEnum):
    """The TrainJob API flavour a cluster serves."""

    V2_0 = "v2.0"  # podSpecOverrides
    V2_1 = "v2.1"  # podTemplateOverrides, IntOrString numProcPerNode
    V2_2 = "v2.2"  # runtimePatches, int numProcPerNode (current)


# TrainJob spec fields the API server refuses to change once set (CEL `self == oldSelf` in Trainer's CRD:
# runtimeRef and managedBy since v2.1; trainer, initializer and activeDeadlineSeconds in later releases). A
# TrainJob whose converted value of one changes is created anew.
TRAINJOB_IMMUTABLE_FIELDS = ("runtimeRef", "trainer", "initializer", "activeDeadlineSeconds", "managedBy")

# How Trainer's TrainJob webhook (v2.0-v2.3, pkg/runtime/core/*trainingruntime.go) denies a TrainJob whose
# runtime it cannot find. It looks in its informer cache, so a runtime created a moment before is denied too.
RUNTIME_NOT_FOUND_DENIAL = "must be created before the TrainJob is created"


class LauncherStrategy(StrEnum):
    """How a job whose entrypoint is not a distributed launcher keeps v1's distributed semantics."""

    TORCHRUN = "torchrun"  # wrap the entrypoint in torchrun with numProcPerNode 1
    ENV = "env"  # inject MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK with v2 naming


class RuntimeRule(BaseModel):
    """Jobs asking for an accelerator resource matching `resource` (a glob) run on `runtime`."""

    model_config = ConfigDict(frozen=True)

    resource: str
    runtime: str
    kind: str = CLUSTER_TRAINING_RUNTIME.kind


class RuntimeRules(BaseModel):
    """Runtime selection: the first rule whose resource glob matches a requested accelerator wins."""

    model_config = ConfigDict(frozen=True)

    rules: tuple[RuntimeRule, ...] = ()
    default: str = "torch-distributed"
    default_kind: str = Field(default=CLUSTER_TRAINING_RUNTIME.kind, alias="defaultKind")
