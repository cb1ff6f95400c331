"""The operator's Prometheus metrics (prometheus_client) and the `/metrics` endpoint serving them.

Every series is set from what the operator itself computes or sees: a CutoverPolicy's counts after each
reconciliation, an ExperimentMigration's per-shard progress as its workers report it in the status.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

from ferryman.api.cutoverpolicy import CutoverMode, CutoverPolicyStatus
from ferryman.api.migrationstatus import ExperimentMigrationStatus

JOBS = Gauge(
    "ferryman_cutover_jobs",
    "Jobs a CutoverPolicy selects, by state (as in its status; mirrored under Mirror, served under Takeover)",
    ["policy", "state"],
)
CREATIONS = Counter("ferryman_trainjob_creations", "TrainJobs created, by CutoverPolicy", ["policy"])
CONFLICTS = Counter(
    "ferryman_trainjob_conflicts",
    "Conflicts found (a TrainJob not ferryman's under a mirror's name, or one changed by someone else)",
    ["policy"],
)
RATE_LIMIT_WAITS = Counter(
    "ferryman_rate_limit_waits", "Reconciliations that left TrainJobs waiting for the rate limit", ["policy"]
)
RECONCILE_SECONDS = Histogram(
    "ferryman_reconcile_duration_seconds",
    "Time one reconciliation takes, by kind (CutoverPolicy, ExperimentMigration)",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SHARD = ["namespace", "migration", "shard"]
MIGRATION_RUNS = Gauge(
    "ferryman_migration_runs", "Runs of a migration shard, by state (done, total)", [*SHARD, "state"]
)
MIGRATION_POINTS = Gauge("ferryman_migration_points", "Metric points a migration shard wrote", SHARD)
MIGRATION_BYTES = Gauge("ferryman_migration_bytes", "Artifact bytes a migration shard wrote", SHARD)


def record_policy(name: str, mode: CutoverMode, status: CutoverPolicyStatus) -> None:
    """Set a policy's job gauges from the status its reconciliation computed; count a rate-limit wait."""
    counts = status.train_jobs
    states = {
        "selected": status.jobs,
        "blocked": status.blocked,
        "mirrored": counts.present if mode is CutoverMode.MIRROR else 0,
        "served": counts.present if mode is CutoverMode.TAKEOVER else 0,
        "pending": counts.pending,
        "conflicting": counts.conflicts,
        "not_served": counts.not_served,
        "skipped": counts.skipped,
    }
    for state, value in states.items():
        JOBS.labels(name, state).set(value)
    if counts.pending:
        RATE_LIMIT_WAITS.labels(name).inc()


def forget_policy(name: str) -> None:
    """Drop a deleted policy's series."""
    for metric in (JOBS, CREATIONS, CONFLICTS, RATE_LIMIT_WAITS):
        metric.remove_by_labels({"policy": name})


def record_migration(namespace: str, name: str, status: dict[str, Any]) -> None:
    """Set a migration's per-shard gauges from the progress its workers reported in the status."""
    for shard in ExperimentMigrationStatus.model_validate(status).shards:
        labels = (namespace, name, str(shard.index))
        MIGRATION_RUNS.labels(*labels, "done").set(shard.runs_done)
        MIGRATION_RUNS.labels(*labels, "total").set(shard.runs_total)
        MIGRATION_POINTS.labels(*labels).set(shard.points)
        MIGRATION_BYTES.labels(*labels).set(shard.bytes)


def forget_migration(namespace: str, name: str) -> None:
    """Drop a deleted migration's series."""
    for metric in (MIGRATION_RUNS, MIGRATION_POINTS, MIGRATION_BYTES):
        metric.remove_by_labels({"namespace": namespace, "migration": name})


async def serve_metrics(url: str) -> web.AppRunner:
    """Serve `GET <path of url>` on the url's host and port; the caller cleans the runner up."""
    parts = urlsplit(url)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get(parts.path or "/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, parts.hostname or "0.0.0.0", parts.port or 9090).start()
    return runner
