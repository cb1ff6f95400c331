"""Verification: compare each source run with its destination run, point by point, and in total.

Per metric key a `SeriesDigest` holds the point count, step and timestamp ranges and an order-independent hash
of the (step, value) pairs, so two series compare equal exactly when they hold the same multiset of points,
whatever order either side stores them in. The hash is a sum of `point_hash` over the points, integer
arithmetic a database can do too (the MLflow bulk reader computes a destination's digests in SQL); when
series differ, `differing_points` names the points. Known, reported outcomes (a long param kept as an
artifact) are accepted; anything else that differs is a mismatch.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ferryman.trackers.model import (
    COMPLETE_TAG,
    INTERNAL_PREFIX,
    LONG_VALUES_ARTIFACT,
    SOURCE_TAG,
    MetricBatch,
    Outcome,
    OutcomeKind,
    Run,
    TrackerReader,
)
from ferryman.trackers.paths import UnsafePath, safe_relative

if TYPE_CHECKING:
    from numpy import int64
    from numpy.typing import NDArray

NAN_BITS = 0x7FF8_0000_0000_0001  # every NaN hashes as this one
HASH_MODULUS = (1 << 31) - 1  # a prime: every product of two residues fits a signed 64-bit integer
HASH_FACTOR, HASH_OFFSET = 1_103_515_245, 12_345


def value_bits(values: list[float]) -> list[int]:
    """The IEEE 754 bits of each value as a signed 64-bit integer; every NaN `NAN_BITS`, -0.0 as 0.0."""
    bits = struct.unpack(f"<{len(values)}q", struct.pack(f"<{len(values)}d", *values))
    return [0 if v == 0 else NAN_BITS if v != v else b for v, b in zip(values, bits, strict=True)]


def point_hash(step: int, bits: int) -> int:
    """A point's share of a series hash: the cube, modulo a prime, of a mix of its step and value bits."""
    mixed = ((step % HASH_MODULUS) * HASH_FACTOR + bits % HASH_MODULUS + HASH_OFFSET) % HASH_MODULUS
    return mixed * mixed % HASH_MODULUS * mixed % HASH_MODULUS


def points_hash(steps: Sequence[int] | NDArray[Any], bits: Sequence[int] | NDArray[int64]) -> int:
    """The sum of `point_hash` over the points, vectorised (every intermediate fits a signed 64-bit
    integer); steps beyond 64 bits take the point-by-point way."""
    import numpy as np

    try:
        step_array = np.asarray(steps, dtype=np.int64)
        bits_array = np.asarray(bits, dtype=np.int64)
    except OverflowError:
        return sum(map(point_hash, steps, bits))
    mixed = (step_array % HASH_MODULUS * HASH_FACTOR + bits_array % HASH_MODULUS + HASH_OFFSET) % HASH_MODULUS
    return int((mixed * mixed % HASH_MODULUS * mixed % HASH_MODULUS).sum())  # < 2**32 points a call


@dataclass(slots=True)
class SeriesDigest:
    count: int = 0
    step_min: int | None = None
    step_max: int | None = None
    ts_min: int | None = None
    ts_max: int | None = None
    hash: int = 0
    duplicates: int = (
        0  # exact repeats (step, timestamp, value) of the previous point; trackers store them once
    )
    last: tuple[int, int, int] | None = field(default=None, compare=False)  # the previous point, as bits

    def add(self, batch: MetricBatch) -> None:
        """Fold a batch in, a column at a time (integers beyond 64 bits as Python's own)."""
        import numpy as np

        if not batch.values:
            return
        stored = np.asarray(batch.values, dtype=np.float64)
        values = stored.view(np.int64).copy()
        values[stored == 0] = 0
        values[np.isnan(stored)] = NAN_BITS
        columns = (batch.steps, batch.timestamps)
        try:
            steps, timestamps = (np.asarray(column, dtype=np.int64) for column in columns)
        except OverflowError:
            steps, timestamps = (np.asarray(column, dtype=object) for column in columns)
        # a point equal to the one before it (the batch's first: to the last one of the batch before)
        repeats = np.empty(len(values), dtype=bool)
        repeats[0] = (int(steps[0]), int(timestamps[0]), int(values[0])) == self.last
        repeats[1:] = steps[1:] == steps[:-1]
        repeats[1:] &= (timestamps[1:] == timestamps[:-1]) & (values[1:] == values[:-1])
        self.last = (int(steps[-1]), int(timestamps[-1]), int(values[-1]))
        if repeats.any():
            self.duplicates += int(repeats.sum())
            kept = ~repeats
            steps, timestamps, values = steps[kept], timestamps[kept], values[kept]
            if not len(steps):
                return
        self.hash += points_hash(steps, values)
        self.count += len(steps)
        low, high = int(steps.min()), int(steps.max())
        self.step_min = low if self.step_min is None else min(self.step_min, low)
        self.step_max = high if self.step_max is None else max(self.step_max, high)
        low, high = int(timestamps.min()), int(timestamps.max())
        self.ts_min = low if self.ts_min is None else min(self.ts_min, low)
        self.ts_max = high if self.ts_max is None else max(self.ts_max, high)

    def differences(self, other: SeriesDigest) -> list[str]:
        found = []
        if self.count != other.count:
            found.append(f"{self.count} points at the source, {other.count} in the destination")
        if (self.step_min, self.step_max) != (other.step_min, other.step_max):
            found.append(f"steps {self.step_min}..{self.step_max} vs {other.step_min}..{other.step_max}")
        if (self.ts_min, self.ts_max) != (other.ts_min, other.ts_max):
            found.append(f"timestamps {self.ts_min}..{self.ts_max} vs {other.ts_min}..{other.ts_max}")
        if self.hash != other.hash and self.count == other.count:
            found.append("same number of points but different (step, value) pairs")
        return found

    def to_dict(self) -> dict[str, int | None]:
        return {
            "points": self.count,
            "duplicates": self.duplicates,
            "stepMin": self.step_min,
            "stepMax": self.step_max,
            "timestampMin": self.ts_min,
            "timestampMax": self.ts_max,
        }


@dataclass(slots=True)
class RunDigest:
    run: Run
    series: dict[str, SeriesDigest] = field(default_factory=dict)
    artifacts: dict[str, tuple[int, str]] = field(default_factory=dict)  # path -> (size, sha256)

    def add(self, batch: MetricBatch) -> None:
        digest = self.series.get(batch.key)
        if digest is None:
            digest = self.series[batch.key] = SeriesDigest()
        digest.add(batch)

    @property
    def points(self) -> int:
        return sum(s.count for s in self.series.values())


def sha256_of(stream_factory: object) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with stream_factory() as stream:  # type: ignore[operator]
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """What a destination's metric points cannot hold, as its writer declares it (`max_step`,
    `largest_value`): steps beyond ±max_step are left out, infinities are stored as ±largest_value."""

    max_step: int | None = None
    largest_value: float | None = None
    dropped: Counter[str] = field(default_factory=Counter)  # per key: points left out
    clamped: Counter[str] = field(default_factory=Counter)  # per key: infinities stored as ±largest_value

    @classmethod
    def of(cls, writer: object) -> StoreLimits:
        return cls(getattr(writer, "max_step", None), getattr(writer, "largest_value", None))

    def outcomes(self, run_key: str) -> list[Outcome]:
        return [
            Outcome(OutcomeKind.TRUNCATED, f"run {run_key}/metric {key}",
                    f"{count} point(s) with a step beyond ±{self.max_step} not stored: the destination's "
                    "steps stop there")
            for key, count in sorted(self.dropped.items())
        ] + [
            Outcome(OutcomeKind.TRUNCATED, f"run {run_key}/metric {key}",
                    f"{count} infinite value(s) stored as ±{self.largest_value:.6g}: the destination holds "
                    "no infinities")
            for key, count in sorted(self.clamped.items())
        ]


def storable(batches: Iterable[MetricBatch], limits: StoreLimits | None) -> Iterator[MetricBatch]:
    """The points as a destination with these limits stores them (all, unchanged, when None)."""
    for batch in batches:
        if limits is None:
            yield batch
            continue
        if limits.max_step is not None and not all(
            -limits.max_step <= step <= limits.max_step for step in batch.steps
        ):
            keep = [i for i, step in enumerate(batch.steps) if -limits.max_step <= step <= limits.max_step]
            limits.dropped[batch.key] += len(batch) - len(keep)
            steps, times = [batch.steps[i] for i in keep], [batch.timestamps[i] for i in keep]
            batch = MetricBatch(batch.key, steps, times, [batch.values[i] for i in keep], batch.system)
        if limits.largest_value is not None and any(math.isinf(value) for value in batch.values):
            limits.clamped[batch.key] += sum(math.isinf(value) for value in batch.values)
            largest = limits.largest_value
            values = [math.copysign(largest, v) if math.isinf(v) else v for v in batch.values]
            batch = MetricBatch(batch.key, batch.steps, batch.timestamps, values, batch.system)
        yield batch


def digest_run(
    reader: TrackerReader,
    run: Run,
    *,
    with_artifacts: bool = True,
    limits: StoreLimits | None = None,
) -> RunDigest:
    """Read a whole run once and digest it (metrics streamed, artifacts hashed); with `limits`, the points
    as a destination with those limits stores them (see `storable`). A reader that digests series itself
    (`series_digests`, in SQL) is asked to when there are no limits to apply."""
    digest = RunDigest(run)
    computed = getattr(reader, "series_digests", None)
    series = computed(run) if computed is not None and limits is None else None
    if series is not None:
        digest.series = series
    else:
        for batch in storable(reader.metrics(run), limits):
            digest.add(batch)
    if with_artifacts:
        for artifact in reader.artifacts(run):  # under the names the engine writes (see trackers.paths)
            try:
                path = safe_relative(artifact.path)
            except UnsafePath:
                continue  # never written, reported when copied
            if path not in digest.artifacts:
                digest.artifacts[path] = sha256_of(artifact.open)
    return digest


def _long_values(reader: TrackerReader, run: Run) -> dict[str, dict[str, str]]:
    for artifact in reader.artifacts(run):
        if artifact.path == LONG_VALUES_ARTIFACT:
            with artifact.open() as stream:
                document = json.loads(stream.read())
                return document if isinstance(document, dict) else {}
    return {}


def compare_runs(
    source: RunDigest,
    destination: RunDigest,
    destination_reader: TrackerReader,
    parent_expected: str | None,
    outcomes: list[Outcome] | None = None,
) -> list[str]:
    """Every difference between a source run and its destination run, as readable sentences. Metric keys the
    writer had to rename (recorded in its long-values artifact) are compared under their new name and added
    to `outcomes`."""
    problems: list[str] = []
    src, dst = source.run, destination.run
    if src.name and src.name != dst.name:  # a nameless source run gets a generated name
        problems.append(f"name {src.name!r} became {dst.name!r}")
    if src.status != dst.status:
        problems.append(f"status {src.status} became {dst.status}")
    if src.start_time != dst.start_time:
        problems.append(f"start time {src.start_time} became {dst.start_time}")
    if src.end_time != dst.end_time:
        problems.append(f"end time {src.end_time} became {dst.end_time}")
    if sorted(map(repr, src.inputs)) != sorted(map(repr, dst.inputs)):
        names = [i.name for i in src.inputs], [i.name for i in dst.inputs]
        problems.append(f"dataset inputs {names[0]} became {names[1]}")
    if src.deleted != dst.deleted:
        problems.append(
            "deleted in the destination only" if dst.deleted
            else "not deleted in the destination"
        )
    if (src.user or None) != (dst.user or None):
        problems.append(f"user {src.user!r} became {dst.user!r}")
    if (src.notes or None) != (dst.notes or None) and not _kept_whole(src.notes, dst.notes):
        problems.append("notes differ")
    if parent_expected != dst.parent_key:
        problems.append(f"parent should be {parent_expected}, is {dst.parent_key}")
    long_values: dict[str, dict[str, str]] | None = None

    def whole(section: str) -> dict[str, str]:
        nonlocal long_values
        if long_values is None:
            long_values = _long_values(destination_reader, dst)
        return long_values.get(section, {})

    for section, theirs, ours in (
        ("params", src.params, dst.params),
        ("tags", _user_tags(src.tags), _user_tags(dst.tags)),
    ):
        for key, value in theirs.items():
            if ours.get(key) == value:
                continue
            if whole(section).get(key) == value:
                continue  # kept whole as an artifact, reported when copied
            problems.append(f"{section[:-1]} {key!r} " + ("missing" if key not in ours else "differs"))
        for key in ours.keys() - theirs.keys():
            problems.append(f"{section[:-1]} {key!r} only in the destination")
    renamed = whole("metrics") if source.series.keys() - destination.series.keys() else {}
    for key, digest in source.series.items():
        stored = key if key in destination.series else renamed.get(key, key)
        other = destination.series.get(stored)
        if other is None:
            problems.append(f"metric {key!r} missing ({digest.count} points)")
            continue
        if stored != key and outcomes is not None:
            outcomes.append(
                Outcome(
                    OutcomeKind.RENAMED,
                    f"run {src.key}/metric {key}",
                    f"stored as {stored!r}: the destination does not accept the key",
                )
            )
        problems.extend(f"metric {key!r}: {text}" for text in digest.differences(other))
    for key in destination.series.keys() - source.series.keys() - set(renamed.values()):
        problems.append(f"metric {key!r} only in the destination")
    copied = {p: v for p, v in destination.artifacts.items() if not p.startswith(INTERNAL_PREFIX)}
    for path, (size, sha) in source.artifacts.items():
        found = copied.get(path)
        if found is None:
            problems.append(f"artifact {path} missing")
        elif found != (size, sha):
            problems.append(f"artifact {path}: size/sha256 {size}/{sha[:12]} vs {found[0]}/{found[1][:12]}")
    for path in copied.keys() - source.artifacts.keys():
        problems.append(f"artifact {path} only in the destination")
    return problems


def differing_points(
    source: Iterable[MetricBatch], destination: Iterable[MetricBatch], keys: set[str], limit: int = 3
) -> dict[str, str]:
    """Per key of `keys`, read point by point: the points only one side holds (at most `limit` named of each
    side), as a sentence; what names the points behind a mismatch of series digests."""
    counts: dict[str, Counter[tuple[int, int, int]]] = {key: Counter() for key in keys}
    for sign, batches in ((1, source), (-1, destination)):
        for batch in batches:
            found = counts.get(batch.key)
            if found is not None:
                for point in zip(batch.steps, batch.timestamps, value_bits(batch.values), strict=True):
                    found[point] += sign
    named = {}
    for key, found in counts.items():
        sides = []
        for label, sign in (("at the source only", 1), ("in the destination only", -1)):
            points = sorted((point, count * sign) for point, count in found.items() if count * sign > 0)
            if points:
                shown = ", ".join(_point_text(*point, times) for point, times in points[:limit])
                more = f" and {len(points) - limit} more" if len(points) > limit else ""
                sides.append(f"{label}: {shown}{more}")
        if sides:
            named[key] = "; ".join(sides)
    return named


def _point_text(step: int, timestamp: int, bits: int, times: int) -> str:
    value = struct.unpack("<d", struct.pack("<q", bits))[0]
    return f"step {step} at {timestamp} = {value!r}" + (f" ({times} times)" if times > 1 else "")


def _kept_whole(source: str | None, destination: str | None) -> bool:
    return bool(source and destination and source.startswith(destination))


def _user_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k not in (SOURCE_TAG, COMPLETE_TAG)}


@dataclass(slots=True)
class Totals:
    runs: int = 0
    params: int = 0
    tags: int = 0
    series: int = 0
    points: int = 0
    artifacts: int = 0
    artifact_bytes: int = 0

    def add(self, digest: RunDigest) -> None:
        self.runs += 1
        self.params += len(digest.run.params)
        self.tags += len(_user_tags(digest.run.tags))
        self.series += len(digest.series)
        self.points += digest.points
        self.artifacts += len([p for p in digest.artifacts if not p.startswith(INTERNAL_PREFIX)])
        self.artifact_bytes += sum(
            s for p, (s, _) in digest.artifacts.items() if not p.startswith(INTERNAL_PREFIX)
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "runs": self.runs,
            "params": self.params,
            "tags": self.tags,
            "series": self.series,
            "points": self.points,
            "artifacts": self.artifacts,
            "artifactBytes": self.artifact_bytes,
        }


def totals(digests: Iterable[RunDigest]) -> Totals:
    result = Totals()
    for digest in digests:
        result.add(digest)
    return result
