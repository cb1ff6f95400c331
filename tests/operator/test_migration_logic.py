"""ExperimentMigration status logic: conditions from the Job and the shards' reports, totals, names."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kopf import PermanentError

from ferryman.api.base import Condition, find_condition
from ferryman.api.experimentmigration import ExperimentMigrationSpec
from ferryman.api.migrationstatus import ExperimentMigrationStatus, ShardProgress
from ferryman.controller.migration import interval_seconds, job_name, migration_conditions, shard_totals

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def spec(**extra: Any) -> ExperimentMigrationSpec:
    return ExperimentMigrationSpec.model_validate(
        {"source": {"uri": "tensorboard:/data"}, "destination": {"uri": "http://mlflow:5000"}, **extra}
    )


def shard(index: int, phase: str, **extra: Any) -> ShardProgress:
    return ShardProgress.model_validate(
        {
            "index": index,
            "phase": phase,
            "runsTotal": 4,
            "runsDone": 4 if phase == "done" else 1,
            "points": 1000,
            "bytes": 10,
            "updated": "2026-01-01T11:59:00Z",
            **extra,
        }
    )


def status_with(
    spec_: ExperimentMigrationSpec, shards: list[ShardProgress], conditions: list[Condition] | None = None
) -> ExperimentMigrationStatus:
    return ExperimentMigrationStatus(
        last_sync_time=datetime(2026, 1, 1, 11, 58, tzinfo=UTC),
        shards=shards,
        totals=shard_totals(shards, spec_.parallelism),
        conditions=conditions or [],
    )


def conditions(
    spec_: ExperimentMigrationSpec, job_state: str, shards: list[ShardProgress], now: datetime = NOW
) -> dict[str, dict[str, Any]]:
    result = migration_conditions(status_with(spec_, shards), spec_, 3, None, job_state, now)
    return {c.type: c.model_dump(mode="json", by_alias=True) for c in result}


def test_running_shards_are_progressing_not_ready() -> None:
    found = conditions(spec(parallelism=2), "active", [shard(0, "copying"), shard(1, "planning")])
    assert found["Progressing"]["status"] == "True" and found["Ready"]["status"] == "False"
    assert found["Stalled"]["status"] == "False"
    assert "2/8 runs, 2000 points, 0/2 shards done" in found["Ready"]["message"]
    assert all(c["observedGeneration"] == 3 for c in found.values())


def test_every_shard_done_and_verified_is_succeeded_and_ready() -> None:
    shards = [shard(0, "done", verified=True), shard(1, "done", verified=True)]
    found = conditions(spec(parallelism=2), "complete", shards)
    assert found["Succeeded"]["status"] == "True" and found["Succeeded"]["reason"] == "Verified"
    assert found["Ready"]["status"] == "True" and found["Progressing"]["status"] == "False"


def test_a_completed_job_without_reports_is_not_success() -> None:
    found = conditions(spec(parallelism=2), "complete", [shard(0, "done", verified=True)])
    assert found["Succeeded"]["status"] == "False" and found["Ready"]["status"] == "False"


def test_mismatch_or_failed_job_is_failed() -> None:
    bad = [shard(0, "failed", verified=False, message="3 mismatches, 0 failed runs")]
    found = conditions(spec(), "complete", bad)
    assert found["Failed"]["status"] == "True" and "3 mismatches" in found["Failed"]["message"]
    assert conditions(spec(), "failed", [])["Failed"]["status"] == "True"


def test_no_report_for_too_long_is_stalled() -> None:
    found = conditions(spec(), "active", [shard(0, "copying")], now=NOW + timedelta(hours=1))
    assert found["Stalled"]["status"] == "True" and found["Stalled"]["reason"] == "NoProgress"


def test_suspended_migration_is_neither_progressing_nor_ready() -> None:
    found = conditions(spec(suspend=True), "active", [])
    assert found["Progressing"]["reason"] == "Suspended" and found["Ready"]["status"] == "False"


def test_transition_times_survive_unchanged_status() -> None:
    first = migration_conditions(status_with(spec(), []), spec(), 1, None, "active", NOW)
    again = migration_conditions(
        status_with(spec(), [], first), spec(), 1, None, "active", NOW + timedelta(seconds=30)
    )
    assert find_condition(again, "Progressing") == find_condition(first, "Progressing")


def test_names_and_intervals() -> None:
    assert job_name("m" * 80, 12) == "m" * 60 + "-12"
    assert interval_seconds("30m") == 1800 and interval_seconds("1d") == 86400
    with pytest.raises(PermanentError, match="30m"):
        interval_seconds("soon")


def test_a_scheduled_migration_resyncs_when_due() -> None:
    from ferryman.controller.migration import sync_due

    scheduled = spec(schedule={"interval": "30m"})
    status = ExperimentMigrationStatus.model_validate({"nextSyncTime": "2026-01-01T12:30:00Z"})
    assert not sync_due(scheduled, status, "complete", NOW)
    assert sync_due(scheduled, status, "complete", NOW + timedelta(minutes=31))
    assert not sync_due(scheduled, status, "active", NOW + timedelta(minutes=31))
    assert not sync_due(spec(), status, "complete", NOW + timedelta(minutes=31))


def test_a_failed_shard_message_reaches_status_without_credentials() -> None:
    """The worker redacts what it reports; the operator redacts again before status and events."""
    bad = [shard(0, "failed", message="cannot reach https://bob:hunter22@mlflow:5000/api: refused")]
    found = conditions(spec(), "complete", bad)
    message = found["Failed"]["message"]
    assert "hunter22" not in message and "https://bob:***@mlflow:5000" in message
