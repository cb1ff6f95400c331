"""CutoverPolicy (cluster-scoped): which Training Operator v1 jobs move to Trainer v2, and how far they go."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict, Field

from ferryman.api import kinds
from ferryman.api.base import Condition, KubeModel, LabelSelector, StatusModel, conditions_field
from ferryman.api.crd import CustomResource, PrinterColumn, cel
from ferryman.api.trainer import LauncherStrategy, RuntimeRules, TrainerAPI


class CutoverMode(StrEnum):
    PLAN = "Plan"  # convert every selected job and report findings; create nothing
    MIRROR = "Mirror"  # also create the converted TrainJob side by side, owned by the policy
    TAKEOVER = "Takeover"  # serve v1 jobs with TrainJobs they own, mirroring status back (v1 uninstalled)


class V1Kind(StrEnum):
    """The Training Operator v1 kinds a policy selects: every kind ferryman converts."""

    PYTORCHJOB = kinds.PYTORCHJOB.kind
    MPIJOB = kinds.MPIJOB.kind  # kubeflow.org/v2beta1 (mpi-operator) or v1, whichever the cluster serves
    JAXJOB = kinds.JAXJOB.kind
    XGBOOSTJOB = kinds.XGBOOSTJOB.kind
    TFJOB = kinds.TFJOB.kind
    PADDLEJOB = kinds.PADDLEJOB.kind


class MirrorSettings(KubeModel):
    suspend: bool = Field(
        default=True, description="Create mirrored TrainJobs suspended (no GPUs used) or running."
    )


class TakeoverSettings(KubeModel):
    v1_controller_removed: bool = Field(
        default=False,
        alias="v1ControllerRemoved",
        description="Confirms Training Operator v1 no longer runs (alongside it, each job would run twice).",
    )


class RateLimit(KubeModel):
    creations_per_minute: int = Field(default=60, ge=1, le=6000, description="TrainJobs created per minute.")
    burst: int = Field(default=10, ge=1, le=1000, description="TrainJobs that may be created at once.")


class CutoverPolicySpec(KubeModel):
    """Selects v1 jobs and says how far their cutover to Trainer v2 goes."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "self.mode != 'Takeover' || (has(self.takeover) && self.takeover.v1ControllerRemoved)",
                "mode Takeover requires takeover.v1ControllerRemoved: true "
                "(uninstall Training Operator v1 first, or every job would run twice)",
            ),
            (
                "!has(self.mirror) || self.mode != 'Plan'",
                "mirror settings apply to modes Mirror and Takeover, not Plan",
            ),
        )
    )

    mode: CutoverMode = CutoverMode.PLAN
    kinds: list[V1Kind] = Field(
        default_factory=lambda: list(V1Kind),
        min_length=1,
        max_length=len(V1Kind),
        json_schema_extra={"x-kubernetes-list-type": "set"},  # each kind once
        description="The v1 kinds selected (default: all six).",
    )
    namespace_selector: LabelSelector = Field(
        default_factory=LabelSelector, description="Namespaces whose v1 jobs are selected (empty: all)."
    )
    selector: LabelSelector = Field(
        default_factory=LabelSelector, description="Labels of the selected v1 jobs (empty: all)."
    )
    runtime_rules: RuntimeRules = Field(default_factory=RuntimeRules)
    launcher: LauncherStrategy = Field(
        default=LauncherStrategy.TORCHRUN,
        description="How jobs not started by a distributed launcher keep their distributed semantics.",
    )
    strict_elastic: bool = Field(
        default=False,
        description="Block elastic PyTorchJobs instead of converting them to a fixed node count.",
    )
    trainer_api: TrainerAPI | None = Field(
        default=None,
        alias="trainerAPI",
        description="TrainJob API flavour to emit; discovered from the installed TrainJob CRD when unset.",
    )
    mirror: MirrorSettings | None = None
    takeover: TakeoverSettings | None = None
    rate_limit: RateLimit = Field(default_factory=RateLimit)


class SeverityCounts(StatusModel):
    blocker: int = 0
    warning: int = 0
    info: int = 0


class Blocker(StatusModel):
    code: str
    jobs: int
    example: str = Field(description="namespace/name of one job it blocks")
    message: str = ""


class KindSummary(StatusModel):
    """The plan of one selected kind."""

    kind: str
    api_version: str | None = Field(
        default=None,
        description="the version the cluster serves; unset: the kind's CRD is not installed, so none of its "
        "jobs are watched",
    )
    jobs: int = Field(default=0, description="jobs of this kind selected")
    convertible: int = Field(default=0, description="of them, without blockers")
    blocked: int = Field(default=0, description="of them, with at least one blocker")
    top_blockers: list[Blocker] = Field(default_factory=list, max_length=3)


class TrainJobCounts(StatusModel):
    present: int = Field(default=0, description="TrainJobs serving this policy's jobs")
    pending: int = Field(default=0, description="TrainJobs waiting for the creation rate limit")
    conflicts: int = Field(
        default=0, description="names held by a TrainJob that is not ferryman's or was changed, left alone"
    )
    skipped: int = Field(default=0, description="jobs not served: finished or started under v1")
    not_served: int = Field(
        default=0,
        description="unfinished jobs without a TrainJob because they are blocked or their name is taken: "
        "under Takeover nothing runs them (the Degraded condition names them and says why)",
    )


class RateLimiterState(StatusModel):
    """The creation rate limit's token bucket, kept in the status so that a restart grants no fresh burst."""

    tokens: float = Field(ge=0, description="creations allowed but not yet made, as of `updated`")
    updated: datetime


class CutoverPolicyStatus(StatusModel):
    observed_generation: int | None = None
    conditions: list[Condition] = conditions_field()
    trainer_api: str | None = Field(default=None, alias="trainerAPI")
    jobs: int = Field(default=0, description="v1 jobs selected, of every kind")
    convertible: int = Field(default=0, description="selected jobs without blockers")
    blocked: int = Field(default=0, description="selected jobs with at least one blocker")
    derived_runtimes: int = Field(
        default=0,
        description="namespaced TrainingRuntimes the convertible jobs run on, derived for settings a "
        "TrainJob cannot patch and shared by jobs needing the same ones",
    )
    findings: SeverityCounts = Field(default_factory=SeverityCounts)
    top_blockers: list[Blocker] = Field(default_factory=list, max_length=10)
    kinds: list[KindSummary] = Field(
        default_factory=list, max_length=len(V1Kind), description="the plan per selected kind"
    )
    train_jobs: TrainJobCounts = Field(default_factory=TrainJobCounts)
    report_config_map: str | None = Field(
        default=None, description="namespace/name of the ConfigMap holding the full per-job report"
    )
    rate_limiter: RateLimiterState | None = None


CUTOVER_POLICY = CustomResource(
    kind=kinds.CUTOVER_POLICY,
    spec=CutoverPolicySpec,
    status=CutoverPolicyStatus,
    short_names=("cop",),
    label_named_by=kinds.POLICY_LABEL,
    description=f"Drives a cluster-wide cutover of Training Operator v1 jobs ({', '.join(V1Kind)}) to "
    "Trainer v2 TrainJobs.",
    printer_columns=(
        PrinterColumn("Mode", ".spec.mode"),
        PrinterColumn("Jobs", ".status.jobs", "integer"),
        PrinterColumn("Blocked", ".status.blocked", "integer"),
        PrinterColumn("TrainJobs", ".status.trainJobs.present", "integer"),
        PrinterColumn("Ready", ".status.conditions[?(@.type=='Ready')].status"),
        PrinterColumn("Trainer", ".status.trainerAPI", priority=1),
        PrinterColumn("Report", ".status.reportConfigMap", priority=1),
    ),
)
