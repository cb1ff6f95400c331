"""CutoverPolicy logic, pure: v1 jobs a policy selects, their plans, the TrainJob action each needs, status.

No I/O here: the handler in `controller.policy` feeds it the operator's in-memory indexes and applies
what it decides.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ferryman.api.base import set_condition
from ferryman.api.cutoverpolicy import (
    Blocker,
    CutoverMode,
    CutoverPolicySpec,
    CutoverPolicyStatus,
    KindSummary,
    RateLimiterState,
    SeverityCounts,
    TrainJobCounts,
)
from ferryman.api.kinds import (
    ADMISSION_LABELS,
    CLUSTER_TRAINING_RUNTIME,
    DERIVED_FROM_ANNOTATION,
    DROPPED_METADATA_FIELDS,
    HELD_LABELS_ANNOTATION,
    LAST_APPLIED_ANNOTATION,
    MANAGED_BY,
    MODE_LABEL,
    POLICY_LABEL,
    SOURCE_UID_LABEL,
    SPEC_HASH_LABEL,
    TRAINING_RUNTIME,
    TRAINJOB,
)
from ferryman.api.numbers import quantity
from ferryman.api.trainer import TRAINJOB_IMMUTABLE_FIELDS, TrainerAPI
from ferryman.controller.takeover import is_finished, was_started_elsewhere
from ferryman.convert.findings import Finding, Severity
from ferryman.convert.merge import ClaimModes
from ferryman.convert.options import ConvertOptions
from ferryman.convert.registry import convert_job
from ferryman.kube.builders import build_trainjob, converted_spec, others_runtime_patches
from ferryman.kube.children import is_child

TOP_BLOCKERS = 10
TOP_BLOCKERS_PER_KIND = 3
# of the status, in reports
_SUMMARY_FIELDS = {"jobs", "convertible", "blocked", "derived_runtimes", "findings", "top_blockers", "kinds"}


@dataclass(frozen=True)
class RuntimeCatalog:
    """Installed runtimes: ClusterTrainingRuntime names, (namespace, name) of TrainingRuntimes."""

    cluster: frozenset[str] = frozenset()
    namespaced: frozenset[tuple[str, str]] = frozenset()

    def missing(self, trainjob: dict[str, Any]) -> Finding | None:
        ref = trainjob["spec"].get("runtimeRef") or {}
        name, kind = ref.get("name", ""), ref.get("kind", CLUSTER_TRAINING_RUNTIME.kind)
        namespace = trainjob["metadata"].get("namespace", "")
        if kind == TRAINING_RUNTIME.kind:
            found = (namespace, name) in self.namespaced
        else:
            found = name in self.cluster
        if found:
            return None
        return Finding(
            severity=Severity.BLOCKER,
            path="spec.runtimeRef",
            code="runtime-missing",
            message=f"{kind} {name!r} is not installed in the cluster: install it, or add a runtime rule "
            "to the CutoverPolicy that picks an installed runtime",
        )


JobKey = tuple[str, str, str]  # (kind, namespace, name) of a v1 job


@dataclass(frozen=True)
class JobPlan:
    """One selected v1 job, converted."""

    kind: str
    api_version: str
    namespace: str
    name: str
    uid: str
    resource_version: str
    findings: tuple[Finding, ...]
    trainjob: dict[str, Any] | None  # None when blocked
    runtime: dict[str, Any] | None  # the derived TrainingRuntime the TrainJob runs on, in its namespace
    finished: bool  # Succeeded or Failed under v1: history, never re-run
    started_elsewhere: bool  # v1 wrote status: a Takeover must not start it again

    @property
    def key(self) -> JobKey:
        return self.kind, self.namespace, self.name

    @property
    def blocked(self) -> bool:
        return self.trainjob is None


def convert_options(
    spec: CutoverPolicySpec, served: TrainerAPI, claims: ClaimModes | None = None
) -> ConvertOptions:
    """How the policy's jobs convert; ``claims``: the access modes of the cluster's PersistentVolumeClaims."""
    return ConvertOptions(
        trainer_api=spec.trainer_api or served,
        launcher=spec.launcher,
        runtime_rules=spec.runtime_rules,
        strict_elastic=spec.strict_elastic,
        claims=claims or {},
    )


def selects(spec: CutoverPolicySpec, job: dict[str, Any], namespace_labels: dict[str, str]) -> bool:
    return (
        job["kind"] in spec.kinds
        and spec.namespace_selector.matches(namespace_labels)
        and spec.selector.matches(job["metadata"].get("labels"))
    )


def as_submitted(job: dict[str, Any]) -> dict[str, Any]:
    """A live v1 job as its author wrote it: without status and the metadata the server or kubectl set,
    so the Plan reports the same findings as `ferryman convert` on the author's file."""
    metadata = {k: v for k, v in job["metadata"].items() if k not in DROPPED_METADATA_FIELDS}
    annotations = metadata.get("annotations") or {}
    if LAST_APPLIED_ANNOTATION in annotations:
        rest = {k: v for k, v in annotations.items() if k != LAST_APPLIED_ANNOTATION}
        metadata = {k: v for k, v in metadata.items() if k != "annotations"}
        metadata |= {"annotations": rest} if rest else {}
    return {**{k: v for k, v in job.items() if k != "status"}, "metadata": metadata}


def plan_job(job: dict[str, Any], options: ConvertOptions, runtimes: RuntimeCatalog) -> JobPlan:
    metadata = job["metadata"]
    runtime = None
    try:
        conversion = convert_job(as_submitted(job), options)
    except Exception as error:  # one malformed job must not stop a cluster-wide plan
        failure = Finding(
            severity=Severity.BLOCKER,
            path="spec",
            code="conversion-error",
            message=f"cannot convert: {error}; fix the {job['kind']} or convert it by hand",
        )
        findings, trainjob = [failure], None
    else:
        findings = list(conversion.findings)
        trainjob = None if conversion.blocked else conversion.trainjob
        runtime = None if conversion.blocked else conversion.runtime
    if runtime is not None:  # created with the TrainJob: derived runtimes never need to be installed first
        runtime = {**runtime, "metadata": {**runtime["metadata"], "namespace": metadata["namespace"]}}
    if trainjob is not None:
        trainjob = {**trainjob, "metadata": {**trainjob["metadata"], "namespace": metadata["namespace"]}}
        missing = None if runtime is not None else runtimes.missing(trainjob)
        if missing is not None:
            findings.append(missing)
            trainjob = None
    return JobPlan(
        kind=job["kind"],
        api_version=job["apiVersion"],
        namespace=metadata["namespace"],
        name=metadata["name"],
        uid=metadata.get("uid", ""),
        resource_version=metadata.get("resourceVersion", ""),
        findings=tuple(findings),
        trainjob=trainjob,
        runtime=runtime if trainjob is not None else None,
        finished=is_finished(job),
        started_elsewhere=was_started_elsewhere(job),
    )


class Action(StrEnum):
    CREATE = "create"  # no TrainJob by that name yet
    UPDATE = "update"  # ours, but must follow a mode change or, while suspended, its changed source
    REPLACE = "replace"  # ours and suspended, but its source changed a field a TrainJob cannot change
    KEEP = "keep"  # ours and as wanted
    CONFLICT = "conflict"  # a TrainJob not ours holds the name, or someone else changed ours: left alone
    SKIP = "skip"  # nothing to create (blocked, finished, or started by v1 under Takeover)


@dataclass(frozen=True)
class Decision:
    action: Action
    desired: dict[str, Any] | None = None
    patch: dict[str, Any] | None = None
    reason: str = ""
    then: dict[str, Any] | None = None  # a second patch, applied once `patch` is


def decide(
    plan: JobPlan,
    pytorchjob: dict[str, Any],
    policy: dict[str, Any],
    spec: CutoverPolicySpec,
    existing: dict[str, Any] | None,
) -> Decision:
    """What the TrainJob serving `plan` needs under the policy's mode (Mirror or Takeover)."""
    takeover = spec.mode is CutoverMode.TAKEOVER
    if plan.trainjob is None:
        return Decision(Action.SKIP, reason="blocked")
    labels = (existing or {}).get("metadata", {}).get("labels") or {}
    # Ours: owned (the policy's mirror or the v1 job's takeover) AND labelled with the source's uid.
    ours = existing is not None and any(
        is_child(existing, owner, SOURCE_UID_LABEL, plan.uid) for owner in (policy, pytorchjob)
    )
    if not ours and plan.finished:
        return Decision(Action.SKIP, reason="finished under Training Operator v1")
    if takeover and not ours and plan.started_elsewhere:
        return Decision(Action.SKIP, reason="started by Training Operator v1")
    if takeover:
        suspend = bool(((pytorchjob.get("spec") or {}).get("runPolicy") or {}).get("suspend"))
    else:
        suspend = spec.mirror.suspend if spec.mirror is not None else True
    desired = build_trainjob(
        plan.trainjob, source=pytorchjob, policy=policy, takeover=takeover, suspend=suspend
    )
    if existing is None:
        return Decision(Action.CREATE, desired)
    if not ours:
        return Decision(Action.CONFLICT, reason=foreign_reason(labels, plan.uid))
    if labels.get(POLICY_LABEL) != policy["metadata"]["name"]:
        owner = labels.get(POLICY_LABEL)
        return Decision(Action.CONFLICT, reason=f"the TrainJob belongs to CutoverPolicy {owner}")
    spec_patch: dict[str, Any] = {}
    built_from: dict[str, str] = {}
    if (existing.get("spec") or {}).get("suspend"):  # only a suspended TrainJob follows its source
        live, wanted = converted_spec(existing.get("spec") or {}), converted_spec(desired["spec"])
        wanted_hash = desired["metadata"]["labels"][SPEC_HASH_LABEL]
        changed = first_difference(live, wanted, "spec")
        if changed is not None and labels.get(SPEC_HASH_LABEL) == wanted_hash:
            reason = f"the TrainJob was changed by someone else ({changed}); ferryman leaves it alone"
            return Decision(Action.CONFLICT, reason=reason)
        if changed is not None:
            spec_patch = merge_patch(live, wanted)
            if "runtimePatches" in spec_patch:  # the list is replaced whole: others' entries stay in it
                converted = spec_patch["runtimePatches"] or []
                spec_patch["runtimePatches"] = [*converted, *others_runtime_patches(existing["spec"])] or None
        fixed = sorted(set(spec_patch) & set(TRAINJOB_IMMUTABLE_FIELDS))
        if fixed:
            fields = ", ".join(f"spec.{key}" for key in fixed)
            reason = f"its {plan.kind} changed {fields}, which a TrainJob cannot change"
            return Decision(Action.REPLACE, desired, reason=reason)
        if labels.get(SPEC_HASH_LABEL) != wanted_hash:
            built_from = {SPEC_HASH_LABEL: wanted_hash}
    wanted_mode = desired["metadata"]["labels"][MODE_LABEL]
    held_labels, held_annotations = _admission_patch(existing, desired)
    # A Takeover's TrainJob is suspended and resumed with its PyTorchJob, running or not, as v1 would
    # suspend and resume the job. Under Kueue the PyTorchJob's Workload admits both: Kueue resumes a queued
    # PyTorchJob once admitted, and takes the TrainJob it controls for part of it (no Workload of its own).
    if takeover and bool((existing.get("spec") or {}).get("suspend")) != suspend:
        spec_patch = {**spec_patch, "suspend": suspend}
    moved = held_labels or held_annotations or spec_patch or built_from
    if labels.get(MODE_LABEL) == wanted_mode and not moved:
        return Decision(Action.KEEP, desired)
    update: dict[str, Any] = {
        "metadata": {"labels": {MODE_LABEL: wanted_mode, **held_labels, **built_from}}
    }
    if spec_patch:
        update["spec"] = spec_patch
    if held_annotations:
        update["metadata"]["annotations"] = held_annotations
    if labels.get(MODE_LABEL) != wanted_mode:
        update["metadata"]["ownerReferences"] = desired["metadata"]["ownerReferences"]
        update["spec"] = {**update.get("spec", {}), "suspend": desired["spec"]["suspend"]}
    # Kueue refuses a queue label that comes back on a TrainJob not suspended: the labels first, then resumed
    if held_labels and update.get("spec", {}).get("suspend") is False:
        update["spec"]["suspend"] = True
        return Decision(Action.UPDATE, desired, update, then={"spec": {"suspend": False}})
    return Decision(Action.UPDATE, desired, update)


def foreign_reason(labels: dict[str, str], source_uid: str) -> str:
    """Why a TrainJob holding the wanted name is not ferryman's to change: ferryman never adopts one."""
    if labels.get(SOURCE_UID_LABEL) not in (None, source_uid):
        return "the TrainJob serves another v1 job"
    if labels.get(SOURCE_UID_LABEL) == source_uid and labels.get(POLICY_LABEL):
        return f"the TrainJob belongs to CutoverPolicy {labels[POLICY_LABEL]}"
    return (
        "a TrainJob ferryman did not create for this job holds the name (it lacks the ownerReference "
        f"or the {SOURCE_UID_LABEL} label); ferryman never adopts one: delete or rename it to be served"
    )


_QUANTITY_SECTIONS = frozenset({"limits", "requests"})  # resources' sections, whose values are quantities


def first_difference(live: Any, wanted: Any, path: str) -> str | None:
    """The first path at which `live` does not hold `wanted`, or None. Keys only `live` has are taken for
    the API server's defaults, so a field someone else adds is not seen: a changed one is. Resource
    quantities are compared by amount: Trainer's webhook writes `nvidia.com/gpu: 1` back as `"1"`."""
    if isinstance(wanted, dict) and isinstance(live, dict):
        for key, value in wanted.items():
            found = first_difference(live[key], value, f"{path}.{key}") if key in live else f"{path}.{key}"
            if found is not None:
                return found
        return None
    if isinstance(wanted, list) and isinstance(live, list) and len(wanted) == len(live):
        for index, (live_item, wanted_item) in enumerate(zip(live, wanted, strict=True)):
            found = first_difference(live_item, wanted_item, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    if live == wanted:
        return None
    amount = quantity(wanted)
    in_resources = any(part in _QUANTITY_SECTIONS for part in path.split("."))
    return None if in_resources and amount is not None and quantity(live) == amount else path


def merge_patch(live: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) turning `live` into `wanted`."""
    patch: dict[str, Any] = {key: None for key in live if key not in wanted}
    for key, value in wanted.items():
        if isinstance(value, dict) and isinstance(live.get(key), dict):
            nested = merge_patch(live[key], value)
            if nested:
                patch[key] = nested
        elif live.get(key) != value:
            patch[key] = value
    return patch


def _admission_patch(
    existing: dict[str, Any], desired: dict[str, Any]
) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """The merge-patch entries (labels, annotations) that move queueing systems' admission labels where
    `desired` has them: held in an annotation on a suspended mirror, restored as labels at Takeover."""
    have, want = existing["metadata"], desired["metadata"]
    labels = {
        key: (want.get("labels") or {}).get(key)
        for key in ADMISSION_LABELS
        if (want.get("labels") or {}).get(key) != (have.get("labels") or {}).get(key)
    }
    held = (want.get("annotations") or {}).get(HELD_LABELS_ANNOTATION)
    if held == (have.get("annotations") or {}).get(HELD_LABELS_ANNOTATION):
        return labels, {}
    return labels, {HELD_LABELS_ANNOTATION: held}


@dataclass
class TokenBucket:
    """Creation rate limit: `rate` per second, at most `burst` at once (`now`, `updated`: epoch seconds)."""

    rate: float
    burst: int
    tokens: float = -1.0  # full at the first take
    updated: float = 0.0

    @classmethod
    def resumed(cls, rate: float, burst: int, saved: RateLimiterState | None) -> TokenBucket:
        """The bucket carrying on from the state a policy's status saved (full only for a new policy)."""
        if saved is None:
            return cls(rate=rate, burst=burst)
        return cls(rate, burst, min(float(burst), saved.tokens), saved.updated.timestamp())

    def retuned(self, rate: float, burst: int) -> TokenBucket:
        """The same bucket under a changed spec: tokens kept (at most the new burst), so no fresh burst."""
        tokens = min(self.tokens, float(burst)) if self.tokens >= 0 else self.tokens
        return TokenBucket(rate, burst, tokens, self.updated)

    def saved(self) -> RateLimiterState | None:
        """The state to keep in the status (None while the bucket is untouched)."""
        if self.tokens < 0:
            return None
        updated = datetime.fromtimestamp(self.updated, UTC)
        return RateLimiterState(tokens=round(self.tokens, 3), updated=updated)

    def take(self, wanted: int, now: float) -> int:
        if wanted == 0:  # nothing changes (the refill is the same taken later), so the saved state holds
            return 0
        if self.tokens < 0:
            self.tokens, self.updated = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        granted = min(wanted, int(self.tokens))
        self.tokens -= granted
        return granted

    def wait(self) -> float:
        """Seconds until the next token."""
        return max(0.0, (1.0 - self.tokens) / self.rate)


@dataclass
class PolicyState:
    """What the operator remembers about one policy between reconciliations (rebuilt after a restart)."""

    options_key: str = ""
    plans: dict[JobKey, JobPlan] = field(default_factory=dict)
    bucket: TokenBucket | None = None
    report_digest: str = ""
    report_clash: str = ""  # why the report ConfigMap's name is not the policy's, once reported
    conflicts: set[tuple[JobKey, str]] = field(default_factory=set)  # (job, why) reported
    # derived runtime (namespace, name) -> (resourceVersion checked, why it is not ferryman's or None)
    runtime_checks: dict[tuple[str, str], tuple[str, str | None]] = field(default_factory=dict)
    reported: dict[JobKey, JobPlan] | None = None  # the plans the report was last written from
    # each job's decision, with what it was made from (plan, resourceVersions), under decisions_key
    decisions: dict[JobKey, tuple[tuple[Any, ...], Decision]] = field(default_factory=dict)
    decisions_key: tuple[Any, ...] = ()  # the policy's name, uid and spec


def _top_blockers(plans: list[JobPlan], top: int) -> list[Blocker]:
    """The blocker codes blocking most of `plans`, each with one job it blocks and its message."""
    blocker_jobs: Counter[str] = Counter()
    examples: dict[str, tuple[str, str]] = {}
    for plan in plans:
        for code in sorted({f.code for f in plan.findings if f.severity is Severity.BLOCKER}):
            blocker_jobs[code] += 1
            if code not in examples:
                message = next(f.message for f in plan.findings if f.code == code)
                examples[code] = (f"{plan.namespace}/{plan.name}", message)
    ranked = sorted(blocker_jobs.items(), key=lambda item: (-item[1], item[0]))[:top]
    return [
        Blocker(code=code, jobs=count, example=examples[code][0], message=examples[code][1][:512])
        for code, count in ranked
    ]


def summarise(
    plans: dict[JobKey, JobPlan], kinds: dict[str, str | None] | None = None
) -> CutoverPolicyStatus:
    """A status holding the plans' counts, findings and top blockers, and with `kinds` (each selected kind:
    the apiVersion the cluster serves, None when its CRD is absent) the same per kind; the rest is left at
    its defaults."""
    ordered = [plans[key] for key in sorted(plans)]
    severities = Counter(f.severity.value for plan in ordered for f in plan.findings)
    blocked = sum(1 for plan in ordered if plan.blocked)
    runtimes = {derived_runtime_key(plan.runtime) for plan in ordered if plan.runtime is not None}
    per_kind = []
    for kind, api_version in (kinds or {}).items():
        of_kind = [plan for plan in ordered if plan.kind == kind]
        kind_blocked = sum(1 for plan in of_kind if plan.blocked)
        per_kind.append(
            KindSummary(
                kind=kind,
                api_version=api_version,
                jobs=len(of_kind),
                convertible=len(of_kind) - kind_blocked,
                blocked=kind_blocked,
                top_blockers=_top_blockers(of_kind, TOP_BLOCKERS_PER_KIND),
            )
        )
    return CutoverPolicyStatus(
        jobs=len(plans),
        convertible=len(plans) - blocked,
        blocked=blocked,
        derived_runtimes=len(runtimes),
        findings=SeverityCounts(
            blocker=severities[Severity.BLOCKER],
            warning=severities[Severity.WARNING],
            info=severities[Severity.INFO],
        ),
        top_blockers=_top_blockers(ordered, TOP_BLOCKERS),
        kinds=per_kind,
    )


def policy_status(
    current: CutoverPolicyStatus,
    spec: CutoverPolicySpec,
    plans: dict[JobKey, JobPlan],
    *,
    served_kinds: dict[str, str] | None = None,
    generation: int | None,
    trainer_api: TrainerAPI,
    trainer_missing: bool,
    train_jobs: TrainJobCounts,
    unserved: list[str],
    rate_limiter: RateLimiterState | None,
    report_config_map: str | None,
    at: datetime,
) -> CutoverPolicyStatus:
    """The status a policy's reconciliation writes: its plans' summary, TrainJobs, Ready, Progressing and
    Degraded (`unserved`: up to UNSERVED_EXAMPLES jobs without a TrainJob, each with why; `served_kinds`:
    the apiVersion of each v1 kind whose CRD is installed)."""
    served = served_kinds or {}
    status = summarise(plans, {kind.value: served.get(kind.value) for kind in spec.kinds})
    status.observed_generation = generation
    status.trainer_api = trainer_api.value
    status.train_jobs = train_jobs
    status.report_config_map = report_config_map
    status.rate_limiter = rate_limiter
    summary = f"{status.jobs} jobs selected, {status.blocked} blocked"
    absent = [kind.kind for kind in status.kinds if kind.api_version is None]
    if absent:
        summary += f"; not installed, so not watched: {', '.join(absent)}"
    pending = train_jobs.pending
    if trainer_missing:
        ready = (False, "TrainerNotInstalled", f"the TrainJob CRD ({TRAINJOB.crd_name}) is not installed")
    elif pending:
        ready = (False, "RateLimited", f"{summary}; {pending} TrainJobs wait for the rate limit")
    elif spec.mode is CutoverMode.PLAN:
        ready = (True, "Planned", summary)
    else:
        trainjobs = (
            f"{train_jobs.present} TrainJobs, {train_jobs.conflicts} conflicts, "
            f"{train_jobs.not_served} not served, {train_jobs.skipped} finished or started under v1"
        )
        done = "Mirrored" if spec.mode is CutoverMode.MIRROR else "Serving"
        ready = (True, done, f"{summary}; {trainjobs}")
    conditions = set_condition(current.conditions, "Ready", *ready, observed_generation=generation, at=at)
    conditions = set_condition(
        conditions,
        "Progressing",
        bool(pending),
        "Creating" if pending else "Idle",
        f"{pending} TrainJobs to create" if pending else "",
        observed_generation=generation,
        at=at,
    )
    degraded = _degraded(spec.mode, train_jobs, unserved)
    status.conditions = set_condition(
        conditions, "Degraded", *degraded, observed_generation=generation, at=at
    )
    return status


UNSERVED_EXAMPLES = 5  # jobs the Degraded condition names


def _degraded(mode: CutoverMode, train_jobs: TrainJobCounts, unserved: list[str]) -> tuple[bool, str, str]:
    """Degraded: a Takeover leaves jobs that neither v1 (removed) nor Trainer runs."""
    if mode is CutoverMode.PLAN:
        return False, "Planned", "nothing is served in Plan"
    if not train_jobs.not_served:
        return False, "AllServed", ""
    shown = unserved[:UNSERVED_EXAMPLES]
    more = train_jobs.not_served - len(shown)
    jobs = "; ".join(shown) + (f"; and {more} more (see the report)" if more > 0 else "")
    count = train_jobs.not_served
    if mode is CutoverMode.MIRROR:
        return False, "NotMirrored", f"{count} jobs have no mirror (v1 still runs them): {jobs}"
    return True, "JobsNotServed", f"{count} jobs are run by neither Training Operator v1 nor Trainer: {jobs}"


def unserved_reason(plan: JobPlan, decision: Decision) -> str | None:
    """Why an unfinished job has no TrainJob (`Kind namespace/name: why`), or None when served or done."""
    if plan.finished:
        return None
    if plan.blocked:
        codes = sorted({f.code for f in plan.findings if f.severity is Severity.BLOCKER})
        return f"{plan.kind} {plan.namespace}/{plan.name}: blocked ({', '.join(codes)})"
    if decision.action is Action.CONFLICT:
        return f"{plan.kind} {plan.namespace}/{plan.name}: {decision.reason}"
    return None


def applying_status(
    current: CutoverPolicyStatus, generation: int, mode: CutoverMode, at: datetime
) -> CutoverPolicyStatus | None:
    """Ready False for a new generation until its reconciliation ends (None when already reconciled)."""
    ready = next((c for c in current.conditions if c.type == "Ready"), None)
    if ready is not None and (ready.observed_generation or 0) >= generation:
        return None
    status = current.model_copy()
    message = f"applying generation {generation} (mode {mode.value})"
    conditions = set_condition(
        current.conditions, "Ready", False, "Applying", message, observed_generation=generation, at=at
    )
    status.conditions = set_condition(
        conditions, "Progressing", True, "Applying", message, observed_generation=generation, at=at
    )
    return status


def derived_runtime_key(runtime: dict[str, Any]) -> tuple[str, str]:
    """(namespace, name) of a derived TrainingRuntime: jobs needing the same settings share it."""
    return runtime["metadata"]["namespace"], runtime["metadata"]["name"]


def runtime_clash(live: dict[str, Any], stored: dict[str, Any]) -> str | None:
    """Why the TrainingRuntime `live`, under a derived runtime's name, is not that runtime (`stored`: the
    derived one as the API server would store it, defaults applied), or None when it is: derived by
    ferryman from the same base (its derived-from annotation) and holding the same spec."""
    metadata = live.get("metadata") or {}
    name = f"TrainingRuntime {metadata.get('namespace')}/{metadata.get('name')}"
    base = stored["metadata"]["annotations"][DERIVED_FROM_ANNOTATION]
    if (metadata.get("annotations") or {}).get(DERIVED_FROM_ANNOTATION) != base:
        return (
            f"{name} exists but ferryman did not derive it (it lacks the {DERIVED_FROM_ANNOTATION}: {base} "
            "annotation); ferryman neither uses nor overwrites it: delete or rename it to be served"
        )
    if live.get("spec") != stored["spec"]:
        where = first_difference(live.get("spec"), stored["spec"], "spec") or "fields the derived one lacks"
        return (
            f"{name} exists with other content than the derived runtime its name stands for (differs at "
            f"{where}); ferryman neither uses nor overwrites it: delete or rename it to be served"
        )
    return None


def build_derived_runtime(runtime: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    """The derived TrainingRuntime as the operator creates it: labelled with the policy that created it; no
    owner, since TrainJobs of other policies and `ferryman convert` output may share it."""
    metadata = runtime["metadata"]
    labels = {**(metadata.get("labels") or {}), **MANAGED_BY, POLICY_LABEL: policy["metadata"]["name"]}
    return {**runtime, "metadata": {**metadata, "labels": labels}}


def render_report(policy_name: str, plans: dict[JobKey, JobPlan]) -> str:
    """The full per-job report (JSON), as stored in the policy's report ConfigMap."""
    jobs = [
        {
            "kind": plan.kind,
            "apiVersion": plan.api_version,
            "namespace": plan.namespace,
            "name": plan.name,
            "trainJob": plan.trainjob["metadata"]["name"] if plan.trainjob else None,
            "derivedRuntime": plan.runtime["metadata"]["name"] if plan.runtime else None,
            "blocked": plan.blocked,
            "findings": [
                {"severity": f.severity.value, "code": f.code, "path": f.path, "message": f.message}
                for f in plan.findings
            ],
        }
        for _, plan in sorted(plans.items())
    ]
    kinds: dict[str, str | None] = {plan.kind: plan.api_version for _, plan in sorted(plans.items())}
    summary = summarise(plans, kinds).model_dump(mode="json", by_alias=True, include=_SUMMARY_FIELDS)
    return json.dumps({"policy": policy_name, "summary": summary, "jobs": jobs}, indent=1)
