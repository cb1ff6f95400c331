"""Pure parts of the engine: ledger decisions, high-water marks, shards, digests, spec loading, --since."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ferryman.api.experimentmigration import ExperimentMigrationSpec, load_spec
from ferryman.cli.migrate import request_from_spec, shard_from_env
from ferryman.migrate.ledger import Action, after_high_water, decide, shard_of, source_identity
from ferryman.migrate.plan import MigrationError, RunFilter, parse_since
from ferryman.migrate.validate import SeriesDigest
from ferryman.trackers.model import DestinationRun, MetricBatch, Run, RunStatus, source_state


def batch(key: str, steps: list[int], values: list[float] | None = None) -> MetricBatch:
    return MetricBatch(key, steps, [1000 + s for s in steps], values or [float(s) for s in steps])


def test_high_water_marks_skip_exactly_the_stored_prefix_per_key() -> None:
    batches = [batch("a", [0, 1, 2]), batch("b", [0, 1]), batch("a", [3, 4]), batch("b", [2, 3])]
    kept = list(after_high_water(batches, {"a": 4, "b": 1}))
    assert [(b.key, b.steps) for b in kept] == [("b", [1]), ("a", [4]), ("b", [2, 3])]


def test_ledger_decisions() -> None:
    run = Run("r1", "e", status=RunStatus.FINISHED, end_time=5)
    assert decide(run, None) is Action.CREATE
    assert decide(run, DestinationRun("d", "s", complete=False)) is Action.RESUME
    assert decide(run, DestinationRun("d", "s", True, source_state(run))) is Action.SKIP
    moved_on = Run("r1", "e", status=RunStatus.FINISHED, end_time=9)
    assert decide(moved_on, DestinationRun("d", "s", True, source_state(run))) is Action.RESUME
    running = Run("r1", "e", status=RunStatus.RUNNING)
    assert decide(running, DestinationRun("d", "s", True, source_state(running))) is Action.RESUME


def test_shards_are_stable_and_cover_every_run() -> None:
    identities = [source_identity("mlflow", "1", f"run{i}") for i in range(200)]
    shards = [shard_of(identity, 4) for identity in identities]
    assert shards == [shard_of(identity, 4) for identity in identities]
    assert set(shards) == {0, 1, 2, 3}
    assert all(shard_of(identity, 1) == 0 for identity in identities)


def test_series_digest_is_order_independent_and_sees_changed_values() -> None:
    one, two, changed = SeriesDigest(), SeriesDigest(), SeriesDigest()
    one.add(batch("a", [0, 1, 2], [0.5, math.nan, math.inf]))
    two.add(batch("a", [2], [math.inf]))
    two.add(batch("a", [1, 0], [math.nan, 0.5]))
    changed.add(batch("a", [0, 1, 2], [0.5, math.nan, 1.0]))
    assert one.differences(two) == []
    assert one.differences(changed) == ["same number of points but different (step, value) pairs"]


def test_series_digest_counts_exact_repeats_once() -> None:
    digest = SeriesDigest()
    digest.add(MetricBatch("a", [0, 0], [5, 5], [1.0, 1.0]))
    digest.add(MetricBatch("a", [0, 1], [5, 6], [1.0, 2.0]))
    assert (digest.count, digest.duplicates) == (2, 2)


def test_since_accepts_dates_durations_and_epoch_ms() -> None:
    assert parse_since("2024-01-02") == 1704153600000
    assert parse_since("2024-01-02T00:00:00+01:00") == 1704150000000
    assert parse_since("1700000000000") == 1700000000000
    assert parse_since("2d", now=1_000_000) == (1_000_000 - 172_800) * 1000
    with pytest.raises(MigrationError, match="--since 'yesterday'"):
        parse_since("yesterday")


def test_run_filter() -> None:
    run = Run("r", "e", name="trial-3", status=RunStatus.FAILED, tags={"team": "a"})
    assert RunFilter(names=["trial-*"], statuses=["failed"], tags={"team": "a"}).matches(run)
    assert not RunFilter(names=["sweep*"]).matches(run)
    assert not RunFilter(tags={"team": "b"}).matches(run)


def test_experiment_migration_spec_defaults_and_manifest(tmp_path: Path) -> None:
    spec = ExperimentMigrationSpec.model_validate(
        {
            "source": {"uri": "tensorboard:/data", "credentials": None},
            "destination": {
                "uri": "http://mlflow:5000",
                "credentials": {"secretName": "mlflow", "usernameKey": "user", "passwordKey": "pw"},
            },
        }
    )
    assert spec.placement.node_selector == {"nvidia.com/gpu.present": "true"}
    assert spec.placement.tolerations[0]["key"] == "nvidia.com/gpu"
    assert spec.credentials_environment() == {
        "FERRYMAN_DESTINATION_USERNAME": ("mlflow", "user"),
        "FERRYMAN_DESTINATION_PASSWORD": ("mlflow", "pw"),
    }
    manifest = tmp_path / "migration.yaml"
    manifest.write_text(
        "apiVersion: ferryman.dev/v1alpha1\nkind: ExperimentMigration\nmetadata: {name: m}\n"
        "spec:\n  source: {uri: ./mlruns}\n  destination: {uri: 'sqlite:///x.db'}\n"
        "  selection: {experiments: [a], since: 2024-01-01, runs: {statuses: [FINISHED]}}\n"
        "  options: {workers: 2, dryRun: true}\n  parallelism: 3\n  schedule: {interval: 6h}\n"
    )
    request = request_from_spec(manifest)
    assert (request.experiments, request.workers, request.dry_run, request.shard_count) == (["a"], 2, True, 3)
    assert request.since == 1704067200000 and request.run_filter.statuses == ["FINISHED"]
    manifest.write_text("spec: {source: {uri: x}, destination: {uri: y}, options: {workers: 0}}\n")
    with pytest.raises(MigrationError, match=r"spec\.options\.workers"):
        request_from_spec(manifest)
    with pytest.raises(ValueError, match="interval"):
        load_spec({"source": {"uri": "a"}, "destination": {"uri": "b"}, "schedule": {"interval": "soon"}})


def test_shard_from_env() -> None:
    assert shard_from_env({"JOB_COMPLETION_INDEX": "2", "FERRYMAN_SHARDS": "4"}) == (2, 4)
    assert shard_from_env({}) == (0, 1)
