"""What a conversion is asked to do, and what it gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ferryman.api.trainer import LauncherStrategy, RuntimeRules, TrainerAPI
from ferryman.convert.findings import Finding, Severity
from ferryman.convert.merge import ClaimModes


@dataclass(frozen=True)
class ConvertOptions:
    trainer_api: TrainerAPI = TrainerAPI.V2_2
    launcher: LauncherStrategy = LauncherStrategy.TORCHRUN
    runtime_rules: RuntimeRules = field(default_factory=RuntimeRules)
    derived_runtime: bool = True  # derive a namespaced TrainingRuntime for settings a TrainJob cannot carry
    strict_elastic: bool = False  # block elastic jobs instead of converting them to a fixed node count
    force: bool = False  # emit the TrainJob even when a blocker was found
    template: bool = False  # the output is written as a template: placeholders may stand in numeric fields
    claims: ClaimModes = field(default_factory=dict)  # access modes of the PersistentVolumeClaims known


@dataclass
class Conversion:
    """The result of converting one v1 job."""

    source_name: str
    source_namespace: str | None
    trainjob: dict[str, Any] | None  # None when blocked and not forced
    runtime: dict[str, Any] | None = None  # the derived TrainingRuntime the TrainJob runs on, if any
    findings: list[Finding] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return any(f.severity is Severity.BLOCKER for f in self.findings)
