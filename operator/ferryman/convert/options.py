"""What a conversion is asked to do, and what it gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ferryman.convert.findings import Finding, Severity


class TrainerAPI(StrEnum):
    """The TrainJob API flavour a cluster serves."""

    V2_0 = "v2.0"  # podSpecOverrides
    V2_1 = "v2.1"  # podTemplateOverrides, IntOrString numProcPerNode
    V2_2 = "v2.2"  # runtimePatches, int numProcPerNode (current)


class LauncherStrategy(StrEnum):
    """How a job whose entrypoint is not a distributed launcher keeps v1's distributed semantics."""

    TORCHRUN = "torchrun"  # wrap the entrypoint in torchrun with numProcPerNode 1
    ENV = "env"  # inject MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK with v2 naming


class RuntimeRule(BaseModel):
    """Jobs asking for an accelerator resource matching `resource` (a glob) run on `runtime`."""

    model_config = ConfigDict(frozen=True)

    resource: str
    runtime: str
    kind: str = "ClusterTrainingRuntime"


class RuntimeRules(BaseModel):
    """Runtime selection: the first rule whose resource glob matches a requested accelerator wins."""

    model_config = ConfigDict(frozen=True)

    rules: tuple[RuntimeRule, ...] = ()
    default: str = "torch-distributed"
    default_kind: str = Field(default="ClusterTrainingRuntime", alias="defaultKind")


@dataclass(frozen=True)
class ConvertOptions:
    trainer_api: TrainerAPI = TrainerAPI.V2_2
    launcher: LauncherStrategy = LauncherStrategy.TORCHRUN
    runtime_rules: RuntimeRules = field(default_factory=RuntimeRules)
    emit_runtime: bool = False  # derive a namespaced TrainingRuntime for pod settings a TrainJob cannot patch
    force: bool = False  # emit the TrainJob even when a blocker was found
    template: bool = False  # the output is written as a template: placeholders may stand in numeric fields


@dataclass
class Conversion:
    """The result of converting one PyTorchJob."""

    source_name: str
    source_namespace: str | None
    trainjob: dict[str, Any] | None  # None when blocked and not forced
    runtime: dict[str, Any] | None = None  # the derived TrainingRuntime, with emit_runtime
    findings: list[Finding] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return any(f.severity is Severity.BLOCKER for f in self.findings)
