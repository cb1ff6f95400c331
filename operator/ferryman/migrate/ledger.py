"""The ledger lives in the destination: each migrated run carries its source identity (`ferryman.source`), a
completion mark (`ferryman.complete`) and, implicitly, per-key high-water marks (the points already stored).

Deriving everything from the destination means a crash between two writes can never make the ledger disagree
with the data: a re-run finds half-written runs, skips the points they already hold and finishes them, and
skips runs that are complete and unchanged at the source.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from enum import StrEnum

from ferryman.trackers.model import DestinationRun, MetricBatch, Run, RunStatus, source_state


class Action(StrEnum):
    CREATE = "create"  # not in the destination yet
    RESUME = "resume"  # in the destination, not complete (or the source run moved on since)
    SKIP = "skip"  # complete and unchanged at the source


def source_identity(kind: str, experiment_key: str, run_key: str) -> str:
    """The `ferryman.source` value: tracker kind, source experiment and run, stable across re-runs."""
    return f"{kind}:{experiment_key}/{run_key}"


def same_source(tag: str, identity: str) -> bool:
    """Whether a destination run's `ferryman.source` tag names the source run of `identity`: equal, or the
    same run under a longer experiment key (older versions keyed TensorBoard logs by their absolute path)."""
    kind, _, rest = identity.partition(":")
    tag_kind, _, tag_rest = tag.partition(":")
    return tag == identity or (tag_kind == kind and tag_rest.endswith("/" + rest))


def shard_of(identity: str, shard_count: int) -> int:
    """The shard a run belongs to, by a stable hash of its (root run's) source identity."""
    digest = hashlib.sha256(identity.encode()).digest()
    return int.from_bytes(digest[:8], "big") % max(shard_count, 1)


def decide(run: Run, existing: DestinationRun | None) -> Action:
    if existing is None:
        return Action.CREATE
    if existing.complete and run.status != RunStatus.RUNNING and existing.source_state == source_state(run):
        return Action.SKIP
    return Action.RESUME


def after_high_water(batches: Iterable[MetricBatch], marks: dict[str, int]) -> Iterator[MetricBatch]:
    """Drop each key's first `marks[key]` points (already in the destination), keep the rest in order."""
    remaining = dict(marks)
    for batch in batches:
        skip = remaining.get(batch.key, 0)
        if skip <= 0:
            yield batch
            continue
        if skip >= len(batch):
            remaining[batch.key] = skip - len(batch)
            continue
        remaining[batch.key] = 0
        yield MetricBatch(
            batch.key, batch.steps[skip:], batch.timestamps[skip:], batch.values[skip:], batch.system
        )
