"""The ExperimentMigration handler: workers' RBAC, spec and report ConfigMaps, the Indexed Job per sync round,
suspension, and status (conditions and totals from the shards the workers report).

It runs as a timer on each ExperimentMigration (they are few); children carry ownerReferences, so deleting
the migration removes its Job, pods, ConfigMaps and RBAC.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime, timedelta
from typing import Any

import kopf
import yaml
from lightkube import ApiError, codecs
from lightkube.resources.batch_v1 import Job
from lightkube.types import CascadeType, PatchType

from ferryman.api.base import Condition, find_condition, is_true, now, rfc3339, set_condition
from ferryman.api.experimentmigration import ExperimentMigrationSpec
from ferryman.api.kinds import MIGRATION_LABEL, SPEC_HASH_LABEL
from ferryman.api.migrationstatus import ExperimentMigrationStatus, MigrationTotals, ShardPhase, ShardProgress
from ferryman.controller.context import OperatorContext
from ferryman.kube.builders import (
    MigrationWorkload,
    Placement,
    SecretEnv,
    WorkerVolume,
    build_config_map,
    build_migration_job,
    build_worker_rbac,
    migration_children,
)
from ferryman.kube.children import ChildClash, as_dict, ensure_child, is_child
from ferryman.kube.client import FIELD_MANAGER, get_or_none, namespace_terminating, patch_status
from ferryman.kube.resources import ExperimentMigration
from ferryman.trackers.registry import redact

CHILD_CLASH_REASON = "ChildNameTaken"  # a child's name is held by an object that is not this migration's
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
    image = spec.worker_image or ctx.image
    if image is None:
        raise kopf.PermanentError(
            "no worker image: set spec.workerImage, or FERRYMAN_IMAGE on the operator (in a pod, the "
            "operator runs its workers on its own image)"
        )
    job = build_migration_job(
        MigrationWorkload(
            migration=body,
            job_name=job_name(body["metadata"]["name"], round_),
            image=image,
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
            volumes=worker_volumes(spec),
        )
    )
    job["metadata"]["labels"][SPEC_HASH_LABEL] = spec_hash(spec)
    job["spec"]["suspend"] = spec.suspend
    return job


def worker_volumes(spec: ExperimentMigrationSpec) -> tuple[WorkerVolume, ...]:
    """Both ends' volumes, named by end and position; the source's are read-only unless it says otherwise."""
    return tuple(
        WorkerVolume(
            name=f"{role}-{index}",
            mount_path=volume.mount_path,
            read_only=volume.read_only if volume.read_only is not None else role == "source",
            source=dict(volume.volume),
        )
        for role, end in (("source", spec.source), ("destination", spec.destination))
        for index, volume in enumerate(end.volumes)
    )


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
    status = ExperimentMigrationStatus.model_validate(dict(body.get("status") or {}))
    at = now()
    update = status.model_copy(deep=True)
    update.observed_generation = generation
    update.report_config_map = f"{namespace}/{migration_children(name)['report']}"
    try:
        job, job_state = await _reconcile_children(ctx, body, obj, spec, status, update, at)
    except ChildClash as clash:
        update.conditions = clash_conditions(update.conditions, str(clash), generation, at)
    except ApiError as error:
        if not namespace_terminating(error):
            raise
        logger.info("the namespace is being deleted, and the migration with it: nothing to do")
        return
    else:
        update.totals = shard_totals(update.shards, spec.parallelism)
        update.conditions = migration_conditions(update, spec, generation, job, job_state, at)
    succeeded = is_true(update.conditions, "Succeeded")
    if spec.schedule is not None and succeeded and update.next_sync_time is None:
        # The next round is due an interval after this one verifiably finished, not after its pods exited.
        update.next_sync_time = at + timedelta(seconds=interval_seconds(spec.schedule.interval))
    patch = status_patch(status, update)
    if patch:
        try:
            await patch_status(
                ctx.client,
                ExperimentMigration,
                name,
                patch,
                namespace=namespace,
                resource_version=body["metadata"]["resourceVersion"],
            )
        except ApiError as error:
            if error.status.code == 409:
                raise kopf.TemporaryError(
                    "the ExperimentMigration changed meanwhile; retrying", delay=1
                ) from error
            raise
        _post_transitions(body, status.conditions, update.conditions)


async def _reconcile_children(
    ctx: OperatorContext,
    body: kopf.Body,
    obj: dict[str, Any],
    spec: ExperimentMigrationSpec,
    status: ExperimentMigrationStatus,
    update: ExperimentMigrationStatus,
    at: datetime,
) -> tuple[Job | None, str]:
    """Workers' RBAC, spec and report maps, and this round's Job (started, restarted or (un)suspended);
    `update` gets the round. Only the migration's own children are touched: an object of another owner under
    a child's name raises `ChildClash`, before anything is created that would use it."""
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    generation = obj["metadata"].get("generation", 0)
    names = migration_children(name)
    labels = {MIGRATION_LABEL: name}
    for child in build_worker_rbac(obj):
        await ensure_child(ctx.client, child, obj, MIGRATION_LABEL)
    await ensure_child(
        ctx.client, build_config_map(names["report"], namespace, {}, obj, labels), obj, MIGRATION_LABEL
    )
    spec_map = build_config_map(
        names["spec"], namespace, {"migration.yaml": spec_document(body)}, obj, labels
    )
    created = await ensure_child(ctx.client, spec_map, obj, MIGRATION_LABEL)
    if not created and status.observed_generation != generation:
        await ctx.client.replace(codecs.from_dict(spec_map), field_manager=FIELD_MANAGER)

    round_ = status.round
    job = await get_or_none(ctx.client, Job, job_name(name, round_), namespace) if round_ else None
    if job is not None and not is_child(job, obj, MIGRATION_LABEL):
        raise ChildClash({**as_dict(job), "kind": Job.__name__}, MIGRATION_LABEL)
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
    settled = _finished(status) and status.observed_generation == generation
    due = round_ == 0 or (job is None and not settled) or sync_due(spec, status, job_state, at)
    if due:
        round_ = round_ + 1 if (round_ == 0 or job is not None) else round_
        job_body = workload(ctx, obj, spec, round_)
        if await ensure_child(ctx.client, job_body, obj, MIGRATION_LABEL):
            kopf.info(
                body,
                reason="RoundStarted",
                message=f"round {round_}: {spec.parallelism} worker(s) migrate {redact(spec.source.uri)} "
                f"to {redact(spec.destination.uri)}",
            )
        update.round, update.job = round_, job_body["metadata"]["name"]
        update.last_sync_time, update.next_sync_time = at, None
        update.shards = []  # a new round: the workers report afresh
        job_state = "active"
    elif job is not None and bool(job.spec.suspend) != spec.suspend:
        await ctx.client.patch(
            Job,
            job.metadata.name,
            {"spec": {"suspend": spec.suspend}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
            field_manager=FIELD_MANAGER,
        )
    return job, job_state


def clash_conditions(
    conditions: list[Condition], message: str, generation: int, at: datetime
) -> list[Condition]:
    """A child's name is taken by a foreign object: Stalled (one Warning event), neither Ready nor
    Progressing, until its owner removes or renames it. Succeeded and Failed keep what the last round did."""
    for type_, value in (("Stalled", True), ("Progressing", False), ("Ready", False)):
        conditions = set_condition(
            conditions, type_, value, CHILD_CLASH_REASON, message, observed_generation=generation, at=at
        )
    return conditions


def status_patch(current: ExperimentMigrationStatus, wanted: ExperimentMigrationStatus) -> dict[str, Any]:
    """The merge patch taking `current` to `wanted`: only the fields that differ, so the workers' shard
    entries are left alone unless a new round clears them."""
    before = current.model_dump(mode="json", by_alias=True)
    after = wanted.model_dump(mode="json", by_alias=True)
    return {key: value for key, value in after.items() if before.get(key) != value}


def _job_state(job: Job | None) -> str:
    if job is None:
        return "absent"
    for condition in (job.status.conditions if job.status else None) or []:
        if condition.status == "True" and condition.type == "Complete":
            return "complete"
        if condition.status == "True" and condition.type == "Failed":
            return "failed"
    return "active"


def _finished(status: ExperimentMigrationStatus) -> bool:
    return is_true(status.conditions, "Succeeded") or is_true(status.conditions, "Failed")


def sync_due(
    spec: ExperimentMigrationSpec, status: ExperimentMigrationStatus, job_state: str, at: datetime
) -> bool:
    if spec.schedule is None or job_state != "complete" or status.next_sync_time is None:
        return False
    return at >= status.next_sync_time


def shard_totals(shards: list[ShardProgress], count: int) -> MigrationTotals:
    return MigrationTotals(
        shards=count,
        shards_done=sum(1 for s in shards if s.phase is ShardPhase.DONE),
        runs_total=sum(s.runs_total for s in shards),
        runs_done=sum(s.runs_done for s in shards),
        points=sum(s.points for s in shards),
        bytes=sum(s.bytes for s in shards),
    )


def migration_conditions(
    status: ExperimentMigrationStatus,
    spec: ExperimentMigrationSpec,
    generation: int,
    job: Job | None,
    job_state: str,
    at: datetime,
) -> list[Condition]:
    """Ready, Progressing, Succeeded, Failed, Stalled, from `status` (its shards and totals as this round has
    them). The workers' reports decide success: a Job whose pods exited without every shard reporting `done`
    is not a migration that happened."""
    conditions = list(status.conditions)
    shards, totals = status.shards, status.totals

    def put(type_: str, value: bool, reason: str, message: str = "") -> None:
        nonlocal conditions
        conditions = set_condition(
            conditions, type_, value, reason, message, observed_generation=generation, at=at
        )

    failed_shards = [s for s in shards if s.phase is ShardPhase.FAILED]
    mismatched = [s for s in shards if s.phase is ShardPhase.DONE and s.verified is False]
    done = totals.shards_done == spec.parallelism and not mismatched
    progress = (
        f"{totals.runs_done}/{totals.runs_total} runs, {totals.points} points, "
        f"{totals.shards_done}/{spec.parallelism} shards done"
    )
    if spec.suspend:
        put("Progressing", False, "Suspended", "spec.suspend is true: no worker pods run")
        put("Ready", False, "Suspended", "suspended")
        put("Stalled", False, "Suspended")
        return conditions
    if job_state == "failed" or failed_shards or mismatched:
        first = next(iter(failed_shards or mismatched), None)
        detail = redact((first.message if first is not None else "") or _job_failure(job))
        put("Failed", True, "MigrationFailed", detail)
        put("Succeeded", False, "MigrationFailed")
        put("Progressing", False, "MigrationFailed")
        put("Stalled", False, "MigrationFailed")
        put("Ready", False, "MigrationFailed", detail)
        return conditions
    if done:
        reason = "Verified" if all(s.verified for s in shards) else "Migrated"
        next_sync = f"; next re-sync at {rfc3339(status.next_sync_time)}" if status.next_sync_time else ""
        put("Succeeded", True, reason, progress)
        put("Failed", False, reason)
        put("Progressing", False, reason)
        put("Stalled", False, reason)
        put("Ready", True, reason, progress + (next_sync if spec.schedule else ""))
        return conditions
    reports = [s.updated for s in shards if s.updated is not None]
    quiet_since = max(reports) if reports else status.last_sync_time
    stalled = quiet_since is not None and (at - quiet_since).total_seconds() > stall_seconds()
    put("Progressing", True, "Migrating", progress)
    put(
        "Stalled",
        stalled,
        "NoProgress" if stalled else "Migrating",
        f"no shard reported since {rfc3339(quiet_since)}" if stalled and quiet_since else "",
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


def _post_transitions(body: kopf.Body, old: list[Condition], new: list[Condition]) -> None:
    """Kubernetes Events for the transitions that matter (messages carry counts and redacted URIs only)."""
    for type_, post in (("Succeeded", kopf.info), ("Failed", kopf.warn), ("Stalled", kopf.warn)):
        after = find_condition(new, type_)
        if after is not None and is_true(new, type_) and not is_true(old, type_):
            post(body, reason=after.reason, message=after.message or type_)
