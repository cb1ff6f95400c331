"""A migration worker reports to its ExperimentMigration through the apiserver, with its pod's ServiceAccount:
per-shard progress into `status.shards` (server-side apply, one field manager per shard, so shards never
overwrite each other) and the shard's final report into the migration's report ConfigMap.

The worker's Role allows exactly this: get/patch on its own migration's status and report ConfigMap.
Nothing here carries credentials: reports hold counts, and URIs are redacted by the engine.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from typing import Any

from lightkube import ApiError, Client
from lightkube.resources.core_v1 import ConfigMap
from lightkube.types import PatchType

from ferryman.api.kinds import EXPERIMENT_MIGRATION
from ferryman.kube.builders import migration_children
from ferryman.kube.conditions import now_rfc3339
from ferryman.kube.resources import ExperimentMigration
from ferryman.migrate.copy import Progress
from ferryman.migrate.report import MigrationReport
from ferryman.trackers.registry import redact

REPORT_LIMIT = 900_000 // 8  # bytes of one shard's report in the shared ConfigMap (1 MiB in all)


class ReportTargetError(ValueError):
    pass


def parse_target(target: str) -> tuple[str, str]:
    """`experimentmigration/<namespace>/<name>` → (namespace, name)."""
    parts = target.split("/")
    kinds = ("experimentmigration", "experimentmigrations")
    if len(parts) != 3 or parts[0].lower() not in kinds or not all(parts):
        raise ReportTargetError(f"--report-to {target!r}: expected experimentmigration/<namespace>/<name>")
    return parts[1], parts[2]


class MigrationReporter:
    """Progress callback and final report of one shard."""

    def __init__(
        self, target: str, shard: int, *, client: Client | None = None, interval: float = 2.0
    ) -> None:
        self.namespace, self.name = parse_target(target)
        self.shard = shard
        self.client = client or Client(field_manager=f"ferryman-worker-{shard}")
        self.interval = interval
        self.pod = os.environ.get("POD_NAME") or socket.gethostname()
        self._lock = threading.Lock()
        self._last = 0.0
        self._fields: dict[str, Any] = {}  # everything reported so far: an apply drops fields it omits

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        with self._lock:
            if progress.phase != "done" and now - self._last < self.interval:
                return
            self._last = now
        self._apply(
            {
                "phase": "copying" if progress.phase == "done" else progress.phase,
                "runsTotal": progress.runs_total,
                "runsDone": progress.runs_done,
                "points": progress.points_written,
                "bytes": progress.bytes_written,
            }
        )

    def finished(self, report: MigrationReport) -> None:
        """The shard's outcome: `done` (verified or not) or `failed` when runs did not copy or verify."""
        totals = report.to_dict()
        totals["source"], totals["destination"] = redact(report.source), redact(report.destination)
        message = f"{report.mismatches} mismatches, {len(report.failed_runs)} failed runs"
        self._write_report(json.dumps(totals, separators=(",", ":"), default=str))
        self._apply(
            {
                "phase": "done" if report.ok else "failed",
                "runsTotal": len(report.runs),
                "runsDone": sum(1 for run in report.runs if not run.error),
                # What the destination holds for this shard: a retried pod that skipped finished runs
                # still reports the shard's full size.
                "points": report.destination_totals.get("points", report.points_written),
                "bytes": report.destination_totals.get("artifactBytes", 0),
                "verified": bool(report.verified and report.ok),
                "mismatches": report.mismatches,
                "message": message,
            }
        )

    def errored(self, error: str) -> None:
        """This attempt failed (the Job retries the shard, which resumes from the ledger)."""
        self._apply({"phase": "error", "message": error[:1024]})

    def _apply(self, fields: dict[str, Any]) -> None:
        with self._lock:
            self._fields.update(fields)
            entry = {"index": self.shard, "pod": self.pod, "updated": now_rfc3339(), **self._fields}
        body = {
            **EXPERIMENT_MIGRATION.type_meta,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "status": {"shards": [entry]},
        }
        try:
            self.client.patch(
                ExperimentMigration.Status,
                self.name,
                body,
                namespace=self.namespace,
                patch_type=PatchType.APPLY,
                force=True,
            )
        except ApiError as error:  # reporting must never stop the migration itself
            print(f"ferryman migrate: cannot report progress: {error.status.message}", file=sys.stderr)

    def _write_report(self, text: str) -> None:
        key = f"shard-{self.shard}.json"
        if len(text) > REPORT_LIMIT:
            text = json.dumps({"truncated": True, "size": len(text), "head": text[:REPORT_LIMIT // 2]})
        try:
            self.client.patch(
                ConfigMap,
                migration_children(self.name)["report"],
                {"data": {key: text}},
                namespace=self.namespace,
                patch_type=PatchType.MERGE,
            )
        except ApiError as error:
            print(f"ferryman migrate: cannot store the report: {error.status.message}", file=sys.stderr)
