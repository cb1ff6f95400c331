"""ExperimentMigration status and CRD: conditions, per-shard progress written by the workers, totals.

Each worker pod owns its own entry of `status.shards` (a list-map keyed by `index`, written by server-side
apply with one field manager per shard), so shards never overwrite each other; the operator owns the rest.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from ferryman.api import kinds
from ferryman.api.base import Condition, StatusModel, conditions_field
from ferryman.api.crd import CustomResource, PrinterColumn
from ferryman.api.experimentmigration import ExperimentMigrationSpec


class ShardPhase(StrEnum):
    PLANNING = "planning"
    COPYING = "copying"
    VERIFYING = "verifying"
    DONE = "done"  # the shard's runs are copied (and verified, unless verification was off)
    FAILED = "failed"  # runs did not copy or verify: the report says which
    ERROR = "error"  # this attempt stopped with an error; the Job retries the shard, which resumes


class ShardProgress(StatusModel):
    index: int = Field(ge=0, description="Shard (Job completion index)")
    phase: ShardPhase = Field(default=ShardPhase.PLANNING, description="Where the shard's worker is")
    pod: str = Field(default="", description="Pod that reported last")
    runs_total: int = 0
    runs_done: int = 0
    points: int = Field(default=0, description="Metric points written")
    bytes: int = Field(default=0, description="Artifact bytes written")
    verified: bool | None = Field(default=None, description="Verified point by point (when done)")
    mismatches: int | None = None
    message: str = ""
    updated: datetime | None = None


class MigrationTotals(StatusModel):
    shards: int = 0
    shards_done: int = 0
    runs_total: int = 0
    runs_done: int = 0
    points: int = 0
    bytes: int = 0


class ExperimentMigrationStatus(StatusModel):
    observed_generation: int | None = None
    conditions: list[Condition] = conditions_field()
    job: str | None = Field(default=None, description="The current round's Indexed Job")
    round: int = Field(default=0, description="Sync rounds started (a schedule re-syncs periodically)")
    last_sync_time: datetime | None = None
    next_sync_time: datetime | None = None
    shards: list[ShardProgress] = Field(
        default_factory=list,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["index"]},
    )
    totals: MigrationTotals = Field(default_factory=MigrationTotals)
    report_config_map: str | None = Field(default=None, description="ConfigMap holding each shard's report")


EXPERIMENT_MIGRATION = CustomResource(
    kind=kinds.EXPERIMENT_MIGRATION,
    spec=ExperimentMigrationSpec,
    status=ExperimentMigrationStatus,
    short_names=("em", "emig"),
    label_named_by=kinds.MIGRATION_LABEL,
    description="Copies experiments between trackers (MLflow, W&B, TensorBoard, Neptune exports) with "
    "resumable, verified worker pods.",
    printer_columns=(
        PrinterColumn("Source", ".spec.source.uri", priority=1),
        PrinterColumn("Destination", ".spec.destination.uri", priority=1),
        PrinterColumn("Shards", ".spec.parallelism", "integer"),
        PrinterColumn("Runs", ".status.totals.runsDone", "integer"),
        PrinterColumn("Points", ".status.totals.points", "integer"),
        PrinterColumn("Ready", ".status.conditions[?(@.type=='Ready')].status"),
        PrinterColumn("Status", ".status.conditions[?(@.type=='Ready')].reason"),
    ),
)
