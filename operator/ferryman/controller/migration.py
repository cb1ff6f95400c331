"""The ExperimentMigration handler: workers' RBAC, spec and report ConfigMaps, the Indexed Job per sync round,
suspension, and status (conditions and totals from the shards the workers report).

It runs as a timer on each ExperimentMigration (they are few); children carry ownerReferences, so deleting
the migration removes its Job, pods, ConfigMaps and RBAC.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import yaml
from lightkube import ApiError, codecs
from lightkube.resources.batch_v1 import Job
from lightkube.types import CascadeType, PatchType

from ferryman.api.experimentmigration import ExperimentMigrationSpec
from ferryman.api.kinds import MIGRATION_LABEL, SPEC_HASH_LABEL
from ferryman.controller.context import OperatorContext
from ferryman.kube.builders import (
    MigrationWorkload,
    Placement,
    SecretEnv,
    build_config_map,
    build_migration_job,
    build_worker_rbac,
    migration_children,
)
from ferryman.kube.client import FIELD_MANAGER, create_if_missing, get_or_none, patch_status
from ferryman.kube.conditions import find_condition, is_true, now_rfc3339, set_condition
from ferryman.kube.resources import ExperimentMigration
from ferryman.trackers.registry import redact

RECONCILE_SECONDS = float(os.environ.get("FERRYMAN_MIGRATION_SECONDS", "5"))
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def stall_seconds() -> float:
    """A running migration with no shard report for this long is Stalled."""
    return float(os.environ.get("FERRYMAN_STALL_SECONDS", "600"))


def interval_seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+)([smhdw])", text)
    if match is None:
        raise kopf.PermanentError(f"spec.schedule.interval {text!r}: expected a duration such as 30m or 6h")
    return int(match.group(1)) * _UNITS[match.group(2)]


def spec_hash(spec: ExperimentMigrationSpec) -> str:
    """Changes when a running round must restart: anything but `suspend`, which the Job follows in place."""
    text = spec.model_dump_json(by_alias=True, exclude={"suspend"})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def job_name(name: str, round_: int) -> str:
    suffix = f"-{round_}"
    return name[: 63 - len(suffix)] + suffix  # Job names become pod labels: at most 63 characters


def spec_document(body: kopf.Body) -> str:
    """What the workers run (`ferryman migrate -f`): the manifest. Credentials stay Secret references."""
    manifest = {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": {"name": body["metadata"]["name"], "namespace": body["metadata"]["namespace"]},
        "spec": dict(body["spec"]),
    }
    return yaml.safe_dump(manifest, sort_keys=False)


def workload(
    ctx: OperatorContext, body: dict[str, Any], spec: ExperimentMigrationSpec, round_: int
) -> dict[str, Any]:
    names = migration_children(body["metadata"]["name"])
    placement = spec.placement
    job = build_migration_job(
        MigrationWorkload(
            migration=body,
            job_name=job_name(body["metadata"]["name"], round_),
            image=ctx.image,
            shards=spec.parallelism,
            spec_config_map=names["spec"],
            service_account=names["account"],
            secret_env=tuple(
                SecretEnv(env, secret, key)
                for env, (secret, key) in sorted(spec.credentials_environment().items())
            ),
            placement=Placement(
                node_selector=dict(placement.node_selector),
                tolerations=tuple(placement.tolerations),
                resources={kind: dict(values) for kind, values in placement.resources.items()},
                priority_class_name=placement.priority_class_name,
            ),
        )
    )
    job["metadata"]["labels"][SPEC_HASH_LABEL] = spec_hash(spec)
    job["spec"]["suspend"] = spec.suspend
    return job


async def reconcile_migration(ctx: OperatorContext, body: kopf.Body, logger: kopf.Logger) -> None:
    obj = {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": dict(body["metadata"]),
        "spec": dict(body["spec"]),
    }
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    generation = obj["metadata"].get("generation", 0)
    spec = ExperimentMigrationSpec.model_validate(obj["spec"])
    status = dict(body.get("status") or {})
    names = migration_children(name)
    labels = {MIGRATION_LABEL: name}

    for child in build_worker_rbac(obj):
        await create_if_missing(ctx.client, child)
    await create_if_missing(ctx.client, build_config_map(names["report"], namespace, {}, obj, labels))
    spec_map = build_config_map(
        names["spec"], namespace, {"migration.yaml": spec_document(body)}, obj, labels
    )
    if not await create_if_missing(ctx.client, spec_map) and status.get("observedGeneration") != generation:
        await ctx.client.replace(codecs.from_dict(spec_map), field_manager=FIELD_MANAGER)

    now = datetime.now(UTC)
    round_ = int(status.get("round") or 0)
    job = await get_or_none(ctx.client, Job, job_name(name, round_), namespace) if round_ else None
    update: dict[str, Any] = {
        "observedGeneration": generation,
        "reportConfigMap": f"{namespace}/{names['report']}",
    }
    job_state = _job_state(job)

    if (
        job is not None
        and job_state in ("active", "failed")
        and job.metadata.labels.get(SPEC_HASH_LABEL) != spec_hash(spec)
    ):
        # The spec changed mid-round or after a failure: restart the round; workers resume from the ledger.
        await ctx.client.delete(Job, job.metadata.name, namespace=namespace, cascade=CascadeType.BACKGROUND)
        kopf.info(body, reason="RoundRestarted", message=f"spec changed: restarting round {round_}")
        raise kopf.TemporaryError("waiting for the previous Job to go", delay=2)
    settled = _finished(status) and status.get("observedGeneration") == generation
    due = round_ == 0 or (job is None and not settled) or sync_due(spec, status, job_state, now)
    if due:
        round_ = round_ + 1 if (round_ == 0 or job is not None) else round_
        job_body = workload(ctx, obj, spec, round_)
        if await create_if_missing(ctx.client, job_body):
            kopf.info(
                body,
                reason="RoundStarted",
                message=f"round {round_}: {spec.parallelism} worker(s) migrate {redact(spec.source.uri)} "
                f"to {redact(spec.destination.uri)}",
            )
        update.update(
            round=round_, job=job_body["metadata"]["name"], lastSyncTime=now_rfc3339(), nextSyncTime=None
        )
        if status.get("shards"):
            update["shards"] = None  # a new round: the workers report afresh
        job_state, shards = "active", []
    else:
        shards = list(status.get("shards") or [])
        if job is not None and bool(job.spec.suspend) != spec.suspend:
            await ctx.client.patch(
                Job,
                job.metadata.name,
                {"spec": {"suspend": spec.suspend}},
                namespace=namespace,
                patch_type=PatchType.MERGE,
                field_manager=FIELD_MANAGER,
            )

    update["totals"] = shard_totals(shards, spec.parallelism)
    conditions = migration_conditions(status, spec, generation, job, job_state, shards, update["totals"], now)
    update["conditions"] = conditions
    if spec.schedule is not None and is_true(conditions, "Succeeded") and not status.get("nextSyncTime"):
        # The next round is due an interval after this one verifiably finished, not after its pods exited.
        update["nextSyncTime"] = _rfc3339(now + timedelta(seconds=interval_seconds(spec.schedule.interval)))
    if any(status.get(key) != value for key, value in update.items()):
        try:
            await patch_status(
                ctx.client,
                ExperimentMigration,
                name,
                update,
                namespace=namespace,
                resource_version=body["metadata"]["resourceVersion"],
            )
        except ApiError as error:
            if error.status.code == 409:
                raise kopf.TemporaryError(
                    "the ExperimentMigration changed meanwhile; retrying", delay=1
                ) from error
            raise
        _post_transitions(body, status.get("conditions") or [], conditions)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _job_state(job: Job | None) -> str:
    if job is None:
        return "absent"
    for condition in (job.status.conditions if job.status else None) or []:
        if condition.status == "True" and condition.type == "Complete":
            return "complete"
        if condition.status == "True" and condition.type == "Failed":
            return "failed"
    return "active"


def _finished(status: dict[str, Any]) -> bool:
    return any(
        c.get("type") in ("Succeeded", "Failed") and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def sync_due(spec: ExperimentMigrationSpec, status: dict[str, Any], job_state: str, now: datetime) -> bool:
    next_sync = status.get("nextSyncTime")
    if spec.schedule is None or job_state != "complete" or not next_sync:
        return False
    return now >= datetime.fromisoformat(str(next_sync).replace("Z", "+00:00"))


def shard_totals(shards: list[dict[str, Any]], count: int) -> dict[str, int]:
    return {
        "shards": count,
        "shardsDone": sum(1 for s in shards if s.get("phase") == "done"),
        "runsTotal": sum(int(s.get("runsTotal") or 0) for s in shards),
        "runsDone": sum(int(s.get("runsDone") or 0) for s in shards),
        "points": sum(int(s.get("points") or 0) for s in shards),
        "bytes": sum(int(s.get("bytes") or 0) for s in shards),
    }


def migration_conditions(
    status: dict[str, Any],
    spec: ExperimentMigrationSpec,
    generation: int,
    job: Job | None,
    job_state: str,
    shards: list[dict[str, Any]],
    totals: dict[str, int],
    now: datetime,
) -> list[dict[str, Any]]:
    """Ready, Progressing, Succeeded, Failed, Stalled. The workers' reports decide success: a Job whose pods
    exited without every shard reporting `done` is not a migration that happened."""
    conditions = list(status.get("conditions") or [])

    def put(type_: str, value: bool, reason: str, message: str = "") -> None:
        nonlocal conditions
        conditions = set_condition(conditions, type_, value, reason, message, observed_generation=generation)

    failed_shards = [s for s in shards if s.get("phase") == "failed"]
    mismatched = [s for s in shards if s.get("phase") == "done" and s.get("verified") is False]
    done = totals["shardsDone"] == spec.parallelism and not mismatched
    progress = (
        f"{totals['runsDone']}/{totals['runsTotal']} runs, {totals['points']} points, "
        f"{totals['shardsDone']}/{spec.parallelism} shards done"
    )
    if spec.suspend:
        put("Progressing", False, "Suspended", "spec.suspend is true: no worker pods run")
        put("Ready", False, "Suspended", "suspended")
        put("Stalled", False, "Suspended")
        return conditions
    if job_state == "failed" or failed_shards or mismatched:
        detail = (failed_shards or mismatched or [{}])[0].get("message") or _job_failure(job)
        put("Failed", True, "MigrationFailed", detail)
        put("Succeeded", False, "MigrationFailed")
        put("Progressing", False, "MigrationFailed")
        put("Stalled", False, "MigrationFailed")
        put("Ready", False, "MigrationFailed", detail)
        return conditions
    if done:
        reason = "Verified" if all(s.get("verified") for s in shards) else "Migrated"
        message = progress + (f"; next re-sync at {status.get('nextSyncTime')}" if spec.schedule else "")
        put("Succeeded", True, reason, progress)
        put("Failed", False, reason)
        put("Progressing", False, reason)
        put("Stalled", False, reason)
        put("Ready", True, reason, message)
        return conditions
    last_report = max((str(s.get("updated") or "") for s in shards), default="")
    started = str(status.get("lastSyncTime") or "")
    quiet_since = last_report or started
    stalled = (
        bool(quiet_since)
        and (now - datetime.fromisoformat(quiet_since.replace("Z", "+00:00"))).total_seconds()
        > stall_seconds()
    )
    put("Progressing", True, "Migrating", progress)
    put(
        "Stalled",
        stalled,
        "NoProgress" if stalled else "Migrating",
        f"no shard reported since {quiet_since}" if stalled else "",
    )
    put("Succeeded", False, "Migrating")  # a new round has not succeeded yet, whatever the last one did
    put("Failed", False, "Migrating")
    put("Ready", False, "Migrating", progress)
    return conditions


def _job_failure(job: Job | None) -> str:
    for condition in (job.status.conditions if job is not None and job.status else None) or []:
        if condition.type == "Failed" and condition.status == "True":
            return f"Job {job.metadata.name} failed: {condition.reason}: {condition.message}"  # type: ignore[union-attr]
    return "the migration failed"


def _post_transitions(body: kopf.Body, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    """Kubernetes Events for the transitions that matter (messages carry counts and redacted URIs only)."""
    for type_, post in (("Succeeded", kopf.info), ("Failed", kopf.warn), ("Stalled", kopf.warn)):
        before, after = find_condition(old, type_), find_condition(new, type_)
        if after and after["status"] == "True" and (before is None or before["status"] != "True"):
            post(body, reason=after["reason"], message=after["message"] or type_)
