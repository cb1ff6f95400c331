"""The migration report: one JSON document (for files, ConfigMaps and CR status) and a human summary."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ferryman.trackers.model import Outcome
from ferryman.trackers.registry import redact


@dataclass(slots=True)
class RunResult:
    experiment: str
    source: str  # source identity
    name: str | None
    action: str  # create / resume / skip / verify
    destination: str | None = None  # destination run key
    points_written: int = 0
    artifacts_written: int = 0
    bytes_written: int = 0
    mismatches: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "experiment": self.experiment,
            "source": self.source,
            "name": self.name,
            "action": self.action,
            "destination": self.destination,
            "pointsWritten": self.points_written,
            "artifactsWritten": self.artifacts_written,
            "bytesWritten": self.bytes_written,
        }
        if self.mismatches:
            data["mismatches"] = self.mismatches
        if self.error:
            data["error"] = self.error
        return data


@dataclass(slots=True)
class MigrationReport:
    source: str
    destination: str
    dry_run: bool = False
    verify_only: bool = False
    verified: bool = False
    shard: str = "0/1"
    started: float = 0.0
    finished: float = 0.0  # 0 while the migration is going on: the report is partial
    copy_seconds: float = 0.0  # time spent copying (rates exclude start-up, planning and verification)
    runs: list[RunResult] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # failures outside single runs (models, experiments)
    source_totals: dict[str, int] = field(default_factory=dict)
    destination_totals: dict[str, int] = field(default_factory=dict)
    models: dict[str, int] = field(default_factory=dict)

    @property
    def mismatches(self) -> int:
        return sum(len(r.mismatches) for r in self.runs)

    @property
    def failed_runs(self) -> list[RunResult]:
        return [r for r in self.runs if r.error]

    @property
    def ok(self) -> bool:
        return not self.errors and not self.failed_runs and self.mismatches == 0

    @property
    def points_written(self) -> int:
        return sum(r.points_written for r in self.runs)

    @property
    def partial(self) -> bool:
        return not self.finished

    def to_dict(self) -> dict[str, Any]:
        actions = Counter(r.action for r in self.runs)
        seconds = max(self.finished - self.started, 0.0)
        return {
            "source": self.source,
            "destination": self.destination,
            "shard": self.shard,
            "dryRun": self.dry_run,
            "verifyOnly": self.verify_only,
            "partial": self.partial,
            "ok": self.ok and not self.partial,
            "verified": self.verified,
            "seconds": round(seconds, 3),
            "copySeconds": round(self.copy_seconds, 3),
            "summary": {
                "runs": len(self.runs),
                "created": actions.get("create", 0),
                "resumed": actions.get("resume", 0),
                "skipped": actions.get("skip", 0),
                "failed": len(self.failed_runs),
                "pointsWritten": self.points_written,
                "pointsPerSecond": (
                    round(self.points_written / self.copy_seconds, 1) if self.copy_seconds else None
                ),
                "artifactsWritten": sum(r.artifacts_written for r in self.runs),
                "bytesWritten": sum(r.bytes_written for r in self.runs),
                "mismatches": self.mismatches,
                "outcomes": dict(Counter(o.kind.value for o in self.outcomes)),
            },
            "sourceTotals": self.source_totals,
            "destinationTotals": self.destination_totals,
            "models": self.models,
            "errors": self.errors,
            "outcomes": [
                {"kind": o.kind.value, "item": o.item, "reason": o.reason} for o in list(self.outcomes)
            ],
            "runs": [r.to_dict() for r in list(self.runs)],
        }

    def to_json(self) -> str:
        return redact(json.dumps(self.to_dict(), indent=2))

    def summary(self) -> str:
        data = self.to_dict()
        s = data["summary"]
        verb = "Verified" if self.verify_only else ("Planned" if self.dry_run else "Migrated")
        runs = (
            f"  runs: {s['runs']} (would create {s['created']}, resume {s['resumed']}, skip {s['skipped']})"
            if self.dry_run
            else f"  runs: {s['runs']} (created {s['created']}, resumed {s['resumed']}, "
            f"skipped {s['skipped']}, failed {s['failed']})"
        )
        lines = [
            f"{verb} {self.source} -> {self.destination} (shard {self.shard}) in {data['seconds']:.1f}s",
            runs,
            f"  points written: {s['pointsWritten']:,}"
            + (f" ({s['pointsPerSecond']:,.0f}/s)" if s["pointsPerSecond"] else "")
            + f"; artifacts: {s['artifactsWritten']} ({s['bytesWritten']:,} bytes)",
        ]
        if self.source_totals:
            lines.append("  source:      " + _totals_line(self.source_totals))
        if self.destination_totals:
            lines.append("  destination: " + _totals_line(self.destination_totals))
        if self.models:
            lines.append("  models: " + ", ".join(f"{k} {v}" for k, v in self.models.items()))
        if s["outcomes"]:
            lines.append("  outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(s["outcomes"].items())))
            lines.extend(f"    {o.kind.value}: {o.item}: {o.reason}" for o in self.outcomes[:20])
            if len(self.outcomes) > 20:
                lines.append(f"    … {len(self.outcomes) - 20} more in the JSON report")
        for run in self.runs:
            if run.error:
                lines.append(f"  FAILED {run.source}: {run.error}")
            for mismatch in run.mismatches[:10]:
                lines.append(f"  MISMATCH {run.source}: {mismatch}")
        lines.extend(f"  ERROR {e}" for e in self.errors)
        if self.dry_run:
            lines.append("  result: dry run, nothing written")
        elif self.ok and s["runs"] and not (s["created"] or s["pointsWritten"] or s["artifactsWritten"]):
            lines.append("  result: OK, nothing to write: the destination already holds every run"
                         + (", verified point by point" if self.verified else ""))
        elif self.ok:
            lines.append("  result: OK" + (", verified point by point" if self.verified else ""))
        else:
            lines.append(
                f"  result: FAILED ({self.mismatches} mismatches, {len(self.failed_runs)} failed runs, "
                f"{len(self.errors)} errors)"
            )
        return redact("\n".join(lines))


def _totals_line(totals: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in totals.items())
