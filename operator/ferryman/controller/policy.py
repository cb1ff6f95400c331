"""The CutoverPolicy handler: plan every selected v1 job, create or update its TrainJobs, write status.

It runs as a timer on the policy (never on v1 jobs) and reads v1 jobs of every kind, TrainJobs, namespaces
and runtimes from kopf's in-memory indexes, which kopf fills before any handler runs: a restarted operator
re-plans from a complete picture, and nothing is stored on the v1 jobs themselves.
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
from lightkube import ApiError, codecs
from lightkube.types import PatchType

from ferryman.api.base import now
from ferryman.api.cutoverpolicy import CutoverMode, CutoverPolicySpec, CutoverPolicyStatus, TrainJobCounts
from ferryman.api.kinds import CUTOVER_POLICY, POLICY_LABEL
from ferryman.api.trainer import RUNTIME_NOT_FOUND_DENIAL, TrainerAPI
from ferryman.controller import metrics
from ferryman.controller.batches import CreationWindow
from ferryman.controller.context import OperatorContext, values
from ferryman.controller.cutover import (
    Action,
    Decision,
    JobKey,
    JobPlan,
    PolicyState,
    RuntimeCatalog,
    TokenBucket,
    applying_status,
    build_derived_runtime,
    convert_options,
    decide,
    derived_runtime_key,
    plan_job,
    policy_status,
    render_report,
    runtime_clash,
    selects,
    unserved_reason,
)
from ferryman.kube.builders import build_config_map
from ferryman.kube.children import ChildClash, as_dict, ensure_child
from ferryman.kube.client import FIELD_MANAGER, namespace_terminating, patch_status, tolerate_gone_or_conflict
from ferryman.kube.resources import CutoverPolicy, TrainingRuntime, TrainJob

CONFIG_MAP_LIMIT = 900_000  # ConfigMaps hold at most 1 MiB; larger reports are stored gzipped
PROGRESS_SECONDS = 2.0  # a pass writes the TrainJobs it created so far in the status this often
CREATED_NAMED = 10  # TrainJobs named in a pass's TrainJobsCreated event
RUNTIME_CACHE_DELAY = 1.0  # seconds before creating again a TrainJob denied while its new runtime was unseen


def _as_body(obj: dict[str, Any]) -> kopf.Body:
    """An indexed object as the body kopf posts Events for."""
    return kopf.Body(cast(kopf.RawBody, obj))


def report_config_map_name(policy_name: str) -> str:
    return f"ferryman-plan-{policy_name}"[:253]


async def reconcile_policy(
    ctx: OperatorContext,
    body: kopf.Body,
    indexes: dict[str, kopf.Index[Any, Any]],
    logger: logging.Logger | kopf.Logger,
) -> None:
    body = _as_body(copy.deepcopy(dict(body)))  # kopf's is a live view: the status is for the body planned
    name = body["metadata"]["name"]
    generation = body["metadata"].get("generation")
    spec = CutoverPolicySpec.model_validate(dict(body.get("spec") or {}))
    state = ctx.policies.setdefault(name, PolicyState())
    served = ctx.trainer_api
    claims = values(indexes["claims"])  # a Master-only volume converts when its claim is ReadWriteMany
    options = convert_options(spec, served or TrainerAPI.V2_2, claims)
    live_runtimes = values(indexes["namespaced_runtimes"])
    runtimes = RuntimeCatalog(
        cluster=frozenset(indexes["cluster_runtimes"]), namespaced=frozenset(live_runtimes)
    )
    options_key = repr((options, sorted(runtimes.cluster), sorted(runtimes.namespaced)))
    if options_key != state.options_key:
        state.options_key, state.plans = options_key, {}

    started = time.monotonic()
    v1jobs = values(indexes["v1jobs"])
    namespaces = values(indexes["namespace_labels"])
    plans: dict[JobKey, JobPlan] = {}
    replanned = False
    for key, job in v1jobs.items():
        if not selects(spec, job, namespaces.get(key[1], {})):
            continue
        plan = state.plans.get(key)
        if plan is None or plan.resource_version != job["metadata"].get("resourceVersion"):
            plan, replanned = plan_job(job, options, runtimes), True
        plans[key] = plan
    if replanned or plans.keys() != state.plans.keys():  # else the same plans: the report is not redone
        state.plans = plans
    plans = state.plans
    elapsed = time.monotonic() - started
    logger.debug(f"planned {len(plans)} of {len(v1jobs)} v1 jobs in {elapsed:.2f}s")

    policy = {**CUTOVER_POLICY.type_meta, "metadata": dict(body["metadata"])}
    trainjobs = values(indexes["trainjobs"])
    writes = StatusWrites.of(ctx, body)
    rate = spec.rate_limit.creations_per_minute / 60.0
    if state.bucket is None:  # a new policy or a restarted operator: carry on from the saved bucket
        state.bucket = TokenBucket.resumed(rate, spec.rate_limit.burst, writes.status.rate_limiter)
    elif (state.bucket.rate, state.bucket.burst) != (rate, spec.rate_limit.burst):
        state.bucket = state.bucket.retuned(rate, spec.rate_limit.burst)
    counts, unserved = TrainJobCounts(), list[str]()
    trainer_missing = served is None and spec.mode is not CutoverMode.PLAN
    if spec.mode is not CutoverMode.PLAN and not trainer_missing:
        counts, unserved = await _serve(
            ctx, spec, policy, state, plans, v1jobs, trainjobs, runtimes, live_runtimes, writes, logger
        )

    status = policy_status(
        writes.status,
        spec,
        plans,
        served_kinds=values(indexes["served_kinds"]),
        generation=generation,
        trainer_api=options.trainer_api,
        trainer_missing=trainer_missing,
        train_jobs=counts,
        unserved=unserved,
        rate_limiter=state.bucket.saved(),
        report_config_map=await _write_report(ctx, name, policy, state, plans),
        at=now(),
    )
    await writes.write(status)
    metrics.record_policy(name, spec.mode, status)
    if counts.pending:
        message = f"{counts.pending} TrainJobs wait for the creation rate limit"
        raise kopf.TemporaryError(message, delay=state.bucket.wait())  # at the next token (at once if here)


async def _serve(
    ctx: OperatorContext,
    spec: CutoverPolicySpec,
    policy: dict[str, Any],
    state: PolicyState,
    plans: dict[JobKey, JobPlan],
    v1jobs: dict[JobKey, dict[str, Any]],
    trainjobs: dict[tuple[str, str], dict[str, Any]],
    runtimes: RuntimeCatalog,
    live_runtimes: dict[tuple[str, str], dict[str, Any]],
    writes: StatusWrites,
    logger: logging.Logger | kopf.Logger,
) -> tuple[TrainJobCounts, list[str]]:
    """Create or update the TrainJobs the mode asks for, within the rate limit, each after the derived
    runtime it runs on, the progress written in the status as the pass goes. Returns the counts and, for
    each unfinished job left without a TrainJob, why."""
    assert state.bucket is not None
    clashes = await _runtime_clashes(ctx, state, plans, live_runtimes, policy)
    decisions = _decisions(spec, policy, state, plans, v1jobs, trainjobs, clashes)
    counts, unserved = TrainJobCounts(), list[str]()
    creations = [(plan, d) for plan, d in decisions if d.action is Action.CREATE]
    window = CreationWindow(ctx, state, policy, creations)
    present = set(runtimes.namespaced)
    for plan, decision in decisions:
        if plan.runtime is not None and decision.action in (Action.KEEP, Action.UPDATE, Action.REPLACE):
            await _ensure_runtime(ctx, plan.runtime, policy, present)  # a kept or updated TrainJob's
    kept = sum(d.action in (Action.UPDATE, Action.REPLACE, Action.KEEP) for _, d in decisions)

    async def create(plan: JobPlan, decision: Decision) -> str | None:
        version = await _create(ctx, policy, plan, decision, present)
        if version is None:
            return None
        # The TrainJob as this pass created it is what the next would decide to keep (it was built from the
        # same plan and job), so that pass reuses this decision until the TrainJob's resourceVersion moves.
        inputs = (plan, v1jobs[plan.key]["metadata"].get("resourceVersion"), version)
        state.decisions[plan.key] = (inputs, Decision(Action.KEEP))
        assert decision.desired is not None
        return f"{plan.namespace}/{decision.desired['metadata']['name']}"

    async def progress() -> None:
        assert state.bucket is not None
        await writes.progress(kept + window.granted, len(creations) - window.granted, state.bucket)

    created = await window.run(create, progress)  # as the live policy's rate limit grants them
    if created:  # one event per pass, not per TrainJob: each job's TrainJob is in the report and status
        kopf.info(_as_body(policy), reason="TrainJobsCreated", message=_created_message(spec, created))
    window.raise_if_changed()
    counts.present += window.granted
    counts.pending = len(creations) - window.granted
    conflicts: set[tuple[JobKey, str]] = set()
    for plan, decision in decisions:
        if decision.action is Action.UPDATE:
            assert decision.desired is not None and decision.patch is not None
            with tolerate_gone_or_conflict():
                for patch in (decision.patch, decision.then):
                    if patch is not None:
                        await ctx.client.patch(
                            TrainJob,
                            decision.desired["metadata"]["name"],
                            patch,
                            namespace=plan.namespace,
                            patch_type=PatchType.MERGE,
                            field_manager=FIELD_MANAGER,
                        )
            if "spec" in decision.patch:
                logger.info(f"the TrainJob of {plan.namespace}/{plan.name} follows its changed source")
        if decision.action is Action.REPLACE:
            await _replace(ctx, plan, decision, v1jobs[plan.key])
        if decision.action in (Action.UPDATE, Action.REPLACE, Action.KEEP):
            counts.present += 1
        counts.conflicts += decision.action is Action.CONFLICT
        reason = unserved_reason(plan, decision)
        if reason is not None:
            unserved.append(reason)
        counts.skipped += decision.action is Action.SKIP and not plan.blocked
        conflict = (plan.key, decision.reason)
        if decision.action is Action.CONFLICT:
            conflicts.add(conflict)
        if decision.action is Action.CONFLICT and conflict not in state.conflicts:  # one event per conflict
            kopf.warn(
                _as_body(v1jobs[plan.key]),
                reason="TrainJobConflict",
                message=f"not served by CutoverPolicy {policy['metadata']['name']}: {decision.reason}",
            )
    metrics.CONFLICTS.labels(policy["metadata"]["name"]).inc(len(conflicts - state.conflicts))
    state.conflicts = conflicts
    counts.not_served = len(unserved)
    if window.granted:
        logger.info(f"created {window.granted} TrainJobs, {counts.pending} wait for the rate limit")
    return counts, unserved


def _decisions(
    spec: CutoverPolicySpec,
    policy: dict[str, Any],
    state: PolicyState,
    plans: dict[JobKey, JobPlan],
    v1jobs: dict[JobKey, dict[str, Any]],
    trainjobs: dict[tuple[str, str], dict[str, Any]],
    clashes: dict[tuple[str, str], str],
) -> list[tuple[JobPlan, Decision]]:
    """What each planned job's TrainJob needs, decided again only for a job whose plan, v1 job or TrainJob
    changed since the last pass (or under a policy changed other than in its rate limit), so a pass over
    thousands of jobs costs little. A job whose derived runtime `clashes` (someone else's under its name) is
    a conflict: never run on it."""
    what = spec.model_dump_json(exclude={"rate_limit"})  # the rate limit decides when, never what
    policy_key = (policy["metadata"]["name"], policy["metadata"].get("uid"), what)
    known = state.decisions if state.decisions_key == policy_key else {}
    decisions: list[tuple[JobPlan, Decision]] = []
    kept: dict[JobKey, tuple[tuple[Any, ...], Decision]] = {}
    for key, plan in sorted(plans.items()):
        existing = None
        if plan.trainjob is not None:
            existing = trainjobs.get((plan.namespace, plan.trainjob["metadata"]["name"]))
        job = v1jobs[key]
        trainjob_version = (existing or {}).get("metadata", {}).get("resourceVersion")
        inputs = (plan, job["metadata"].get("resourceVersion"), trainjob_version)
        cached = known.get(key)
        if cached is not None and cached[0][0] is plan and cached[0][1:] == inputs[1:]:
            decision = cached[1]
        else:
            decision = decide(plan, job, policy, spec, existing)
        if decision.action is Action.KEEP:  # nothing to do: not worth a TrainJob's memory per job
            decision = Decision(Action.KEEP, reason=decision.reason)
        kept[key] = (inputs, decision)
        clash = clashes.get(derived_runtime_key(plan.runtime)) if plan.runtime is not None else None
        if clash is not None and decision.action is not Action.SKIP:
            decision = Decision(Action.CONFLICT, reason=clash)
        decisions.append((plan, decision))
    state.decisions, state.decisions_key = kept, policy_key
    return decisions


async def _create(
    ctx: OperatorContext,
    policy: dict[str, Any],
    plan: JobPlan,
    decision: Decision,
    present: set[tuple[str, str]],
) -> str | None:
    """Create a TrainJob, after its derived runtime; its resourceVersion, or None if it was there already
    (or its namespace is being deleted)."""
    assert decision.desired is not None
    if plan.runtime is not None:
        await _ensure_runtime(ctx, plan.runtime, policy, present)
    with tolerate_gone_or_conflict():
        created = await _create_trainjob(ctx, plan, decision.desired)
        metrics.CREATIONS.labels(policy["metadata"]["name"]).inc()
        return str(as_dict(created)["metadata"]["resourceVersion"])
    return None


async def _create_trainjob(ctx: OperatorContext, plan: JobPlan, desired: dict[str, Any]) -> Any:
    """Create a TrainJob. Trainer's webhook denies one whose derived runtime this pass has just created until
    the runtime reaches the webhook's cache: kopf.TemporaryError, created at the next try."""
    try:
        return await ctx.client.create(codecs.from_dict(desired), field_manager=FIELD_MANAGER)
    except ApiError as error:
        if plan.runtime is None or RUNTIME_NOT_FOUND_DENIAL not in str(error.status.message or ""):
            raise
        runtime, name = desired["spec"]["runtimeRef"]["name"], desired["metadata"]["name"]
        message = (
            f"Trainer's webhook does not see TrainingRuntime {plan.namespace}/{runtime} yet (it reads a "
            f"cache); TrainJob {plan.namespace}/{name} is created at the next try"
        )
        raise kopf.TemporaryError(message, delay=RUNTIME_CACHE_DELAY) from error


def _created_message(spec: CutoverPolicySpec, created: list[str]) -> str:
    """The event of a pass's creations: how many, and the first few by name."""
    named = ", ".join(created[:CREATED_NAMED])
    more = f" and {len(created) - CREATED_NAMED} more" if len(created) > CREATED_NAMED else ""
    return f"created {len(created)} TrainJobs ({spec.mode.value}): {named}{more}"


async def _replace(
    ctx: OperatorContext, plan: JobPlan, decision: Decision, job: dict[str, Any]
) -> None:
    """Delete a suspended TrainJob and create it anew: its source changed a field that cannot change."""
    assert decision.desired is not None
    name = decision.desired["metadata"]["name"]
    with tolerate_gone_or_conflict():
        await ctx.client.delete(TrainJob, name, namespace=plan.namespace)
    with tolerate_gone_or_conflict():  # still terminating: created by a later pass
        await _create_trainjob(ctx, plan, decision.desired)
        kopf.info(
            _as_body(job),
            reason="TrainJobReplaced",
            message=f"TrainJob {name} was created anew: {decision.reason}",
        )


async def _runtime_clashes(
    ctx: OperatorContext,
    state: PolicyState,
    plans: dict[JobKey, JobPlan],
    live: dict[tuple[str, str], dict[str, Any]],
    policy: dict[str, Any],
) -> dict[tuple[str, str], str]:
    """The derived runtimes the plans need that exist under their name (`live`: the runtimes index) but are
    not ferryman's (see `runtime_clash`: made by someone else, or holding other content), each with why. The
    derived runtime as the API server would store it comes from a server-side dry run; each live runtime is
    checked once per resourceVersion."""
    wanted = {derived_runtime_key(p.runtime): p.runtime for p in plans.values() if p.runtime is not None}
    clashes: dict[tuple[str, str], str] = {}
    for key in sorted(key for key in wanted if key in live):
        version = str(live[key]["metadata"].get("resourceVersion"))
        checked = state.runtime_checks.get(key)
        if checked is None or checked[0] != version:
            body = build_derived_runtime(wanted[key], policy)
            probe = {**body, "metadata": {**body["metadata"], "name": None, "generateName": "probe-"}}
            try:
                stored = await ctx.client.create(
                    TrainingRuntime.from_dict(probe), dry_run=True, field_manager=FIELD_MANAGER
                )
            except ApiError as error:
                if not namespace_terminating(error):
                    raise
                continue  # the namespace is being deleted, its jobs with it: nothing will run there
            checked = (version, runtime_clash(live[key], as_dict(stored)))
            state.runtime_checks[key] = checked
        if checked[1] is not None:
            clashes[key] = checked[1]
    return clashes


async def _ensure_runtime(
    ctx: OperatorContext, runtime: dict[str, Any], policy: dict[str, Any], present: set[tuple[str, str]]
) -> None:
    """Create a derived TrainingRuntime unless it exists: its name is its content's hash, so jobs, policies
    and `ferryman convert` output needing the same settings share it. One that exists is used only when
    `_runtime_clashes` found it ferryman's, with the same content."""
    key = derived_runtime_key(runtime)
    if key in present:
        return
    with tolerate_gone_or_conflict():  # there already, or its namespace (with its jobs) being deleted
        await ctx.client.create(
            TrainingRuntime.from_dict(build_derived_runtime(runtime, policy)), field_manager=FIELD_MANAGER
        )
    present.add(key)


async def _write_report(
    ctx: OperatorContext,
    name: str,
    policy: dict[str, Any],
    state: PolicyState,
    plans: dict[JobKey, JobPlan],
) -> str | None:
    """Write the report ConfigMap when the report changed; its namespace/name, or None while a ConfigMap that
    is not the policy's holds the name (left untouched; one Warning event)."""
    cm_name = report_config_map_name(name)
    if plans is state.reported and not state.report_clash:
        return f"{ctx.namespace}/{cm_name}"  # the same plans: the same report
    text = render_report(name, plans)
    digest = hashlib.sha256(text.encode()).hexdigest()
    if digest != state.report_digest:
        encoded = text.encode()
        config_map = build_config_map(cm_name, ctx.namespace, {}, policy, {POLICY_LABEL: name})
        if len(encoded) > CONFIG_MAP_LIMIT:
            config_map["binaryData"] = {"report.json.gz": base64.b64encode(gzip.compress(encoded)).decode()}
        else:
            config_map["data"] = {"report.json": text}
        try:
            created = await ensure_child(ctx.client, config_map, policy, POLICY_LABEL)
        except ChildClash as clash:
            if state.report_clash != str(clash):
                kopf.warn(_as_body(policy), reason="ReportNameTaken", message=str(clash))
            state.report_clash = str(clash)
            return None
        if not created:
            await ctx.client.replace(codecs.from_dict(config_map), field_manager=FIELD_MANAGER)
        state.report_digest, state.report_clash = digest, ""
    state.reported = plans
    return f"{ctx.namespace}/{cm_name}"


async def mark_applying(ctx: OperatorContext, body: kopf.Body) -> None:
    """On a spec change: Ready False for the new generation at once, until the next reconciliation has
    applied it (so `kubectl wait --for=condition=Ready` never returns on the previous spec)."""
    spec = CutoverPolicySpec.model_validate(dict(body.get("spec") or {}))
    writes = StatusWrites.of(ctx, body)
    status = applying_status(writes.status, int(body["metadata"]["generation"]), spec.mode, now())
    if status is not None:
        await writes.write(status)


@dataclass
class StatusWrites:
    """A policy's status as last written and the resourceVersion that write left, so that each write (the
    progress of a long pass, then its end) is guarded by the one before: a 409 means someone else wrote."""

    ctx: OperatorContext
    name: str
    status: CutoverPolicyStatus
    resource_version: str
    written: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, ctx: OperatorContext, body: kopf.Body) -> StatusWrites:
        status = CutoverPolicyStatus.model_validate(dict(body.get("status") or {}))
        return cls(ctx, body["metadata"]["name"], status, body["metadata"]["resourceVersion"])

    async def write(self, status: CutoverPolicyStatus) -> None:
        """Write the status if it changed."""
        if status == self.status:
            return
        try:
            written = await patch_status(
                self.ctx.client,
                CutoverPolicy,
                self.name,
                status.model_dump(mode="json", by_alias=True),
                resource_version=self.resource_version,
            )
        except ApiError as error:
            if error.status.code == 409:
                raise kopf.TemporaryError("the CutoverPolicy changed meanwhile; retrying", delay=1) from error
            raise
        self.status, self.resource_version = status, written.metadata.resourceVersion
        self.written = time.monotonic()

    async def progress(self, present: int, pending: int, bucket: TokenBucket) -> None:
        """During a pass, every PROGRESS_SECONDS: the TrainJobs present and pending, and the bucket."""
        if time.monotonic() - self.written < PROGRESS_SECONDS:
            return
        counts = self.status.train_jobs.model_copy(update={"present": present, "pending": pending})
        saved = bucket.saved()
        await self.write(self.status.model_copy(update={"train_jobs": counts, "rate_limiter": saved}))
