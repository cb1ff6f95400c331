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

from ferryman.api.base import now
from ferryman.api.kinds import EXPERIMENT_MIGRATION
from ferryman.api.migrationstatus import ShardPhase, ShardProgress
from ferryman.kube.builders import migration_children
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
    names = (EXPERIMENT_MIGRATION.kind.lower(), EXPERIMENT_MIGRATION.plural)
    if len(parts) != 3 or parts[0].lower() not in names or not all(parts):
        raise ReportTargetError(f"--report-to {target!r}: expected experimentmigration/<namespace>/<name>")
    return parts[1], parts[2]


def shard_apply_body(namespace: str, name: str, entry: ShardProgress) -> dict[str, Any]:
    """The server-side apply body by which one shard's worker reports `entry` into `status.shards`."""
    return {
        **EXPERIMENT_MIGRATION.type_meta,
        "metadata": {"name": name, "namespace": namespace},
        "status": {"shards": [entry.model_dump(mode="json", by_alias=True, exclude_none=True)]},
    }


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
        self.entry = ShardProgress(index=shard, pod=self.pod)  # all reported so far: an apply drops omissions

    def __call__(self, progress: Progress) -> None:
        tick = time.monotonic()
        with self._lock:
            if progress.phase != "done" and tick - self._last < self.interval:
                return
            self._last = tick
            entry = self.entry
            entry.phase = ShardPhase.COPYING if progress.phase == "done" else ShardPhase(progress.phase)
            entry.runs_total, entry.runs_done = progress.runs_total, progress.runs_done
            entry.points, entry.bytes = progress.points_written, progress.bytes_written
        self._apply()

    def finished(self, report: MigrationReport) -> None:
        """The shard's outcome: `done` (verified or not) or `failed` when runs did not copy or verify."""
        totals = report.to_dict()
        totals["source"], totals["destination"] = redact(report.source), redact(report.destination)
        message = f"{report.mismatches} mismatches, {len(report.failed_runs)} failed runs"
        self._write_report(redact(json.dumps(totals, separators=(",", ":"), default=str)))
        with self._lock:
            entry = self.entry
            entry.phase = ShardPhase.DONE if report.ok else ShardPhase.FAILED
            entry.runs_total = len(report.runs)
            entry.runs_done = sum(1 for run in report.runs if not run.error)
            # What the destination holds for this shard: a retried pod that skipped finished runs still
            # reports the shard's full size.
            entry.points = report.destination_totals.get("points", report.points_written)
            entry.bytes = report.destination_totals.get("artifactBytes", 0)
            entry.verified = bool(report.verified and report.ok)
            entry.mismatches = report.mismatches
            entry.message = message
        self._apply()

    def errored(self, error: str) -> None:
        """This attempt failed (the Job retries the shard, which resumes from the ledger)."""
        with self._lock:
            self.entry.phase, self.entry.message = ShardPhase.ERROR, redact(error)[:1024]
        self._apply()

    def _apply(self) -> None:
        with self._lock:
            self.entry.updated = now()
            body = shard_apply_body(self.namespace, self.name, self.entry)
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
