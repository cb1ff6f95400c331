"""The status the controller and the migration workers write is the status the CRDs (generated from the same
pydantic models) declare: each written body validates against the CRD schema in `crds/` and parses back into
its model unchanged."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from ferryman.api import kinds
from ferryman.api.base import is_true
from ferryman.api.cutoverpolicy import CutoverPolicySpec, CutoverPolicyStatus, TrainJobCounts
from ferryman.api.experimentmigration import ExperimentMigrationSpec
from ferryman.api.migrationstatus import ExperimentMigrationStatus, ShardPhase, ShardProgress
from ferryman.api.trainer import TrainerAPI
from ferryman.cli.worker import shard_apply_body
from ferryman.controller.cutover import (
    RuntimeCatalog,
    TokenBucket,
    convert_options,
    plan_job,
    policy_status,
)
from ferryman.controller.migration import migration_conditions, shard_totals, status_patch

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "number": (int, float),
    "integer": int,
}


def status_schema(kind: kinds.Kind) -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / f"{kind.group}_{kind.plural}.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]


def schema_errors(value: Any, schema: dict[str, Any], path: str = "status") -> list[str]:
    """What the apiserver would reject or prune in `value` under a structural schema: wrong types, unknown
    fields, values outside an enum, range or length, duplicate list-map keys."""
    if value is None:
        return [] if schema.get("nullable") else [f"{path}: null is not allowed"]
    if schema.get("x-kubernetes-int-or-string"):
        return [] if isinstance(value, int | str) else [f"{path}: not an int or a string"]
    expected = schema.get("type")
    numeric = expected in ("integer", "number")
    if expected and (not isinstance(value, _TYPES[expected]) or (numeric and isinstance(value, bool))):
        return [f"{path}: {value!r} is not of type {expected}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: {value} is below {schema['minimum']}")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: more than {schema['maxItems']} items")
    if expected == "string" and schema.get("format") == "date-time":
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    if expected == "object":
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}.{key}: required")
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(item, schema["additionalProperties"], f"{path}.{key}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{path}.{key}: unknown field (the apiserver would prune it)")
    if expected == "array":
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{index}]")
        keys = schema.get("x-kubernetes-list-map-keys")
        if keys:
            seen = [tuple(item.get(key) for key in keys) for item in value]
            if len(seen) != len(set(seen)):
                errors.append(f"{path}: duplicate list-map keys {keys}")
    return errors


def assert_written(written: dict[str, Any], model: type[BaseModel], kind: kinds.Kind) -> None:
    assert schema_errors(written, status_schema(kind)) == []
    assert model.model_validate(written).model_dump(mode="json", by_alias=True) == written


def test_the_schema_check_catches_what_the_apiserver_would_not_keep() -> None:
    schema = status_schema(kinds.EXPERIMENT_MIGRATION)
    assert schema_errors({"shards": [{"index": 0, "phase": "copied"}]}, schema)
    assert schema_errors({"totals": {"runsDon": 1}}, schema)
    assert schema_errors({"shards": [{"index": 0}, {"index": 0}]}, schema)


# CutoverPolicy: the status `controller.policy` writes is `policy_status(...)` dumped by alias.

RUNTIMES = RuntimeCatalog(cluster=frozenset({"torch-distributed"}))


def pytorchjob(name: str, **pod: Any) -> dict[str, Any]:
    container = {"name": "pytorch", "image": "pytorch:2", "command": ["torchrun", "train.py"]}
    return {
        "apiVersion": kinds.PYTORCHJOB.api_version,
        "kind": kinds.PYTORCHJOB.kind,
        "metadata": {"name": name, "namespace": "team-a", "uid": f"{name}-uid", "resourceVersion": "1"},
        "spec": {
            "pytorchReplicaSpecs": {
                "Worker": {"replicas": 2, "template": {"spec": {"containers": [container], **pod}}}
            }
        },
    }


UNSERVED = ["team-a/net: blocked (unpatchable-pod-field)"]


@pytest.mark.parametrize(
    ("mode", "trainer_missing", "counts"),
    [
        ("Plan", False, TrainJobCounts()),
        ("Mirror", False, TrainJobCounts(present=1, conflicts=1)),
        ("Mirror", False, TrainJobCounts(present=1, pending=3)),
        ("Mirror", True, TrainJobCounts()),
        ("Takeover", False, TrainJobCounts(present=1, not_served=1)),
        ("Mirror", False, TrainJobCounts(present=3, pending=2)),
    ],
)
def test_cutover_policy_status_is_its_crd_schema(
    mode: str, trainer_missing: bool, counts: TrainJobCounts
) -> None:
    takeover = {"takeover": {"v1ControllerRemoved": True}} if mode == "Takeover" else {}
    spec = CutoverPolicySpec.model_validate({"mode": mode, **takeover})
    unserved = UNSERVED[: counts.not_served]
    bucket = TokenBucket(rate=1.0, burst=5)
    bucket.take(counts.present, NOW.timestamp())
    options = convert_options(spec, TrainerAPI.V2_2)
    plans = {
        ("team-a", name): plan_job(job, options, RUNTIMES)
        for name, job in (("ok", pytorchjob("ok")), ("net", pytorchjob("net", hostNetwork=True)))
    }
    first = policy_status(
        CutoverPolicyStatus(),
        spec,
        plans,
        generation=2,
        trainer_api=TrainerAPI.V2_2,
        trainer_missing=trainer_missing,
        train_jobs=counts,
        unserved=unserved,
        rate_limiter=bucket.saved(),
        report_config_map="ferryman-system/ferryman-plan-cutover",
        at=NOW,
    )
    written = first.model_dump(mode="json", by_alias=True)
    assert_written(written, CutoverPolicyStatus, kinds.CUTOVER_POLICY)
    assert {c["type"] for c in written["conditions"]} == {"Ready", "Progressing", "Degraded"}
    assert is_true(first.conditions, "Degraded") is (mode == "Takeover")
    assert all(c["observedGeneration"] == 2 for c in written["conditions"])
    assert is_true(first.conditions, "Ready") is (not trainer_missing and not counts.pending)

    # Read back as the next reconciliation sees it: unchanged, so nothing is written again.
    current = CutoverPolicyStatus.model_validate(written)
    again = policy_status(
        current,
        spec,
        plans,
        generation=2,
        trainer_api=TrainerAPI.V2_2,
        trainer_missing=trainer_missing,
        train_jobs=counts,
        unserved=unserved,
        rate_limiter=bucket.saved(),
        report_config_map="ferryman-system/ferryman-plan-cutover",
        at=NOW + timedelta(seconds=10),
    )
    assert again == current


# ExperimentMigration: `controller.migration` writes `status_patch(current, wanted)`, the workers apply
# `shard_apply_body(...)`; the apiserver merges both into the status.


def migration_spec(**extra: Any) -> ExperimentMigrationSpec:
    return ExperimentMigrationSpec.model_validate(
        {"source": {"uri": "tensorboard:/data"}, "destination": {"uri": "http://mlflow:5000"}, **extra}
    )


def worker_entry(index: int, phase: ShardPhase, **fields: Any) -> dict[str, Any]:
    entry = ShardProgress(index=index, pod=f"m-1-{index}-x", updated=NOW - timedelta(seconds=30), phase=phase)
    for name, value in fields.items():
        setattr(entry, name, value)
    body = shard_apply_body("ml", "m", entry)
    assert body["apiVersion"] == kinds.EXPERIMENT_MIGRATION.api_version
    (written,) = body["status"]["shards"]
    shard_schema = status_schema(kinds.EXPERIMENT_MIGRATION)["properties"]["shards"]["items"]
    assert schema_errors(written, shard_schema) == []
    return dict(written)


@pytest.mark.parametrize(
    ("extra", "job_state", "shards"),
    [
        ({"parallelism": 2}, "active", [worker_entry(0, ShardPhase.COPYING, runs_total=4, runs_done=1)]),
        (
            {"parallelism": 2, "schedule": {"interval": "6h"}},
            "complete",
            [
                worker_entry(i, ShardPhase.DONE, runs_total=4, runs_done=4, verified=True, mismatches=0)
                for i in (0, 1)
            ],
        ),
        ({}, "active", [worker_entry(0, ShardPhase.FAILED, verified=False, message="3 mismatches")]),
        ({}, "active", [worker_entry(0, ShardPhase.ERROR, message="connection refused")]),
        ({"suspend": True}, "active", []),
    ],
)
def test_experiment_migration_status_is_its_crd_schema(
    extra: dict[str, Any], job_state: str, shards: list[dict[str, Any]]
) -> None:
    spec = migration_spec(**extra)
    current = ExperimentMigrationStatus.model_validate(
        {"round": 1, "job": "m-1", "lastSyncTime": "2026-01-01T11:58:00Z", "shards": shards}
    )
    wanted = current.model_copy(deep=True)
    wanted.observed_generation = 4
    wanted.report_config_map = "ml/m-report"
    wanted.totals = shard_totals(wanted.shards, spec.parallelism)
    wanted.conditions = migration_conditions(wanted, spec, 4, None, job_state, NOW)
    if spec.schedule is not None and is_true(wanted.conditions, "Succeeded"):
        wanted.next_sync_time = NOW + timedelta(hours=6)
    patch = status_patch(current, wanted)
    assert "shards" not in patch, "the controller never writes the workers' entries"
    merged = {**current.model_dump(mode="json", by_alias=True), **patch}
    assert_written(merged, ExperimentMigrationStatus, kinds.EXPERIMENT_MIGRATION)
    assert {c["type"] for c in merged["conditions"]} >= {"Ready", "Progressing", "Stalled"}
    assert all(c["observedGeneration"] == 4 for c in merged["conditions"])
    assert status_patch(ExperimentMigrationStatus.model_validate(merged), wanted) == {}


def test_a_new_round_clears_the_shards() -> None:
    current = ExperimentMigrationStatus.model_validate(
        {"round": 1, "shards": [worker_entry(0, ShardPhase.DONE, verified=True)]}
    )
    wanted = current.model_copy(deep=True)
    wanted.round, wanted.shards = 2, []
    assert status_patch(current, wanted) == {"round": 2, "shards": []}
