"""ExperimentMigration (namespaced): copy experiments between trackers, resumable and verified.

`ferryman migrate -f migration.yaml` runs the same spec locally; the operator runs it as an Indexed Job whose
pods land on GPU nodes by default.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from ferryman.api.base import KubeModel
from ferryman.api.crd import cel
from ferryman.api.kinds import EXPERIMENT_MIGRATION

DEFAULT_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
DEFAULT_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
_DURATION = re.compile(r"^\d+[smhdw]$")


class SecretCredentials(KubeModel):
    """Credentials of one tracker end, read from keys of a Secret in the migration's namespace."""

    secret_name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    token_key: str | None = Field(
        default=None, max_length=253, description="Key holding a bearer token (MLflow token, W&B API key)."
    )
    username_key: str | None = Field(default=None, max_length=253, description="Key holding a user name.")
    password_key: str | None = Field(default=None, max_length=253, description="Key holding a password.")

    def environment(self, role: str) -> dict[str, str]:
        """Environment variable -> Secret key, as `ferryman migrate` reads them for this end."""
        prefix = f"FERRYMAN_{role.upper()}_"
        keys = {"TOKEN": self.token_key, "USERNAME": self.username_key, "PASSWORD": self.password_key}
        return {prefix + name: key for name, key in keys.items() if key}


WORKER_TMP, WORKER_SPEC_DIR = "/tmp", "/etc/ferryman"  # the worker pods' own mounts (kube/builders.py)

# CEL: the local path a URI names ('' for servers, databases and APIs), as trackers/registry.py reads it.
_LOCAL_PATH = (
    "self.uri.startsWith('sqlite:///') ? self.uri.substring(10)"
    " : self.uri.startsWith('file://') ? self.uri.substring(7)"
    " : self.uri.startsWith('neptune-export://') ? self.uri.substring(17)"
    " : self.uri.startsWith('neptune-export:') ? self.uri.substring(15)"
    " : self.uri.startsWith('tensorboard:') ? self.uri.substring(12)"
    " : self.uri.startsWith('wandb:') && !self.uri.startsWith('wandb://') ? self.uri.substring(6)"
    " : self.uri.startsWith('file:') ? self.uri.substring(5)"
    " : self.uri.contains('://') || self.uri.matches('^(sqlite|postgresql|mysql)[:+]') ? ''"
    " : self.uri"
)
_UNDER_A_VOLUME = (
    f"[{_LOCAL_PATH}].all(path, path == '' || (!path.matches('(^|/)[.][.](/|$)') && has(self.volumes)"
    " && self.volumes.exists(v, path == v.mountPath"
    " || path.startsWith(v.mountPath.endsWith('/') ? v.mountPath : v.mountPath + '/'))))"
)


class TrackerVolume(KubeModel):
    """A volume the worker pods mount for one end: where its logs, runs, exports or databases are."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "self.mountPath.startsWith('/') && !self.mountPath.contains('..')"
                f" && !(self.mountPath in ['/', '{WORKER_TMP}', '{WORKER_TMP}/'])"
                f" && !(self.mountPath + '/').startsWith('{WORKER_SPEC_DIR}/')",
                f"mountPath must be an absolute path without '..', other than / and {WORKER_TMP} and outside "
                f"{WORKER_SPEC_DIR} (the workers' own mounts)",
            ),
            (
                "size(self.volume) == 1",
                "volume must hold exactly one volume source, such as persistentVolumeClaim",
            ),
            (
                "!('hostPath' in self.volume)",
                "volume: worker pods run under PodSecurity restricted, which forbids hostPath; bind a "
                "PersistentVolume to a claim and use persistentVolumeClaim",
            ),
        )
    )

    mount_path: str = Field(
        min_length=2,
        max_length=512,
        description="Where the worker pods mount it; the URI's path lies under it.",
    )
    read_only: bool | None = Field(
        default=None,
        description="Mount read-only (default: read-only for the source, writable for the destination).",
    )
    volume: dict[str, dict[str, Any]] = Field(
        description="One core/v1 volume source, as in a Pod's volumes without the name: "
        "{persistentVolumeClaim: {claimName: training-logs}}, {nfs: {...}}, {csi: {...}}, ...",
    )


class TrackerEndpoint(KubeModel):
    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                _UNDER_A_VOLUME,
                "uri names a local path (tensorboard:, wandb:, neptune-export:, sqlite:///, file store) "
                "that is under no volume's mountPath (or climbs out with '..'): declare a volume mounted at "
                "or above it, such as a persistentVolumeClaim",
            )
        )
    )

    uri: str = Field(
        min_length=1,
        max_length=2048,
        description=(
            "Tracker URI: an MLflow tracking server (http(s)://host), database (sqlite:///path, "
            "postgresql://host/db) or file store path; tensorboard:PATH; wandb:PATH or "
            "wandb://ENTITY/PROJECT; neptune-export:PATH. Never put passwords in it: use credentials."
        ),
    )
    credentials: SecretCredentials | None = Field(
        default=None, description="Secret holding this end's credentials (none for local paths)."
    )
    volumes: list[TrackerVolume] = Field(
        default_factory=list,
        max_length=8,
        description="Volumes the worker pods mount for this end: a local path in uri must lie under one "
        "(ferryman migrate run by hand ignores them).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["mountPath"]},
    )


class RunSelection(KubeModel):
    names: list[str] = Field(default_factory=list, max_length=256, description="Glob patterns on run names.")
    statuses: list[str] = Field(
        default_factory=list,
        max_length=5,
        description="Run statuses to include: RUNNING, FINISHED, FAILED, KILLED, SCHEDULED (all when empty).",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Tags a run must carry with these values.")


class Selection(KubeModel):
    experiments: list[str] = Field(
        default_factory=list, max_length=1024, description="Source experiment names (all when empty)."
    )
    since: str | None = Field(
        default=None,
        description="Only runs started at or after this time: ISO 8601 date/time, epoch ms, or a duration "
        "ago such as 7d or 12h.",
    )
    runs: RunSelection = Field(default_factory=RunSelection, description="Filters on the selected runs.")

    @field_validator("since", mode="before")
    @classmethod
    def _since_text(cls, value: object) -> object:
        """YAML turns an unquoted 2024-01-01 into a date; keep it as the text the user wrote."""
        return value.isoformat() if isinstance(value, date | datetime) else value


class Options(KubeModel):
    dry_run: bool = Field(default=False, description="Plan and count only; write nothing.")
    workers: int = Field(default=4, ge=1, le=64, description="Runs copied in parallel by each worker pod.")
    verify: bool = Field(default=True, description="Compare source and destination point by point after.")
    verify_only: bool = Field(default=False, description="Only re-check an earlier migration; write nothing.")
    artifacts: bool = Field(default=True, description="Copy run artifacts (checksummed).")
    models: bool = Field(
        default=True, description="Copy registered models (versions, aliases, stages) and logged models."
    )
    include_deleted: bool = Field(
        default=False,
        description="Copy deleted runs too, as deleted runs (by default each is skipped and counted).",
    )
    allow_empty: bool = Field(
        default=False, description="Succeed when the source holds no runs (by default that is an error)."
    )


class Placement(KubeModel):
    """Where migration pods run; the defaults put them on GPU nodes, where training data and networks live."""

    node_selector: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_NODE_SELECTOR), description="Node labels the pods must match."
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=lambda: [dict(t) for t in DEFAULT_TOLERATIONS],
        max_length=32,
        description="Pod tolerations (default: the nvidia.com/gpu NoSchedule taint).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    resources: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
        description="Container resources (requests/limits); add nvidia.com/gpu to claim GPUs.",
    )
    priority_class_name: str | None = Field(default=None, description="PriorityClass of the worker pods.")


class Schedule(KubeModel):
    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "self.interval.matches('^[0-9]+[smhdw]$')",
                "schedule.interval must be a duration such as 30m, 6h or 1d",
            )
        )
    )

    interval: str = Field(
        max_length=16,
        description="Re-sync every interval (e.g. 30m, 6h, 1d) during a dual-tracking period; each re-sync "
        "copies only what is new since the last.",
    )

    @field_validator("interval")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not _DURATION.match(value):
            raise ValueError(f"interval {value!r}: expected a duration such as 30m, 6h or 1d")
        return value


class ExperimentMigrationSpec(KubeModel):
    """Copies experiments, runs, params, tags, metric histories, artifacts and models between trackers."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            ("self.source.uri != self.destination.uri", "source and destination must be different trackers"),
            (
                "!has(self.options) || !(self.options.dryRun && self.options.verifyOnly)",
                "options.dryRun and options.verifyOnly exclude each other",
            ),
            (
                "!has(self.source.volumes) || !has(self.destination.volumes) || !self.source.volumes"
                ".exists(s, self.destination.volumes.exists(d, s.mountPath == d.mountPath))",
                "source and destination volumes need different mountPaths",
            ),
        )
    )

    source: TrackerEndpoint = Field(description="Where the experiments are read.")
    destination: TrackerEndpoint = Field(description="Where they are written.")
    selection: Selection = Field(default_factory=Selection, description="What to migrate (all when empty).")
    options: Options = Field(default_factory=Options)
    placement: Placement = Field(default_factory=Placement, description="Placement of the worker pods.")
    parallelism: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Worker pods (shards of an Indexed Job); runs are assigned by a stable hash of their "
        "source identity.",
    )
    worker_image: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="Image of the worker pods (default: the operator's own image, or its FERRYMAN_IMAGE).",
    )
    schedule: Schedule | None = Field(default=None, description="Re-sync periodically instead of once.")
    suspend: bool = Field(default=False, description="Pause: no worker pods run while true.")

    def credentials_environment(self) -> dict[str, tuple[str, str]]:
        """Environment variable -> (Secret name, key) for both ends."""
        env: dict[str, tuple[str, str]] = {}
        for role, end in (("source", self.source), ("destination", self.destination)):
            if end.credentials is not None:
                for name, key in end.credentials.environment(role).items():
                    env[name] = (end.credentials.secret_name, key)
        return env


def load_spec(document: dict[str, Any]) -> ExperimentMigrationSpec:
    """The spec of an ExperimentMigration manifest, or a bare spec mapping."""
    if document.get("kind") == EXPERIMENT_MIGRATION.kind or "spec" in document:
        document = document.get("spec") or {}
    return ExperimentMigrationSpec.model_validate(document)
