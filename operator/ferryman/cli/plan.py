"""`ferryman plan POLICY`: what a CutoverPolicy's Mirror and Takeover would create and change, before either.

It reads the cluster as the operator's indexes hold it (the policy, namespaces, the selected v1 jobs,
TrainJobs, runtimes, claims, the served TrainJob flavour) and runs the operator's own pure functions on it
(`controller.cutover`: selects, plan_job, decide, build_derived_runtime; `controller.takeover.v1_status`), so
the preview is what the operator would do now. Nothing is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from ferryman.api.base import now, rfc3339
from ferryman.api.cutoverpolicy import CutoverMode, CutoverPolicySpec
from ferryman.api.kinds import CUTOVER_POLICY, TRAINJOB
from ferryman.api.trainer import TrainerAPI
from ferryman.controller.cutover import (
    Action,
    RuntimeCatalog,
    build_derived_runtime,
    convert_options,
    decide,
    derived_runtime_key,
    plan_job,
    selects,
)
from ferryman.controller.takeover import v1_status
from ferryman.convert.merge import ClaimModes

PREVIEWED_MODES = (CutoverMode.MIRROR, CutoverMode.TAKEOVER)


@dataclass
class ClusterView:
    """What the operator's indexes would hold: plain objects, keyed as there."""

    policy: dict[str, Any]
    namespaces: dict[str, dict[str, str]]
    jobs: list[dict[str, Any]]
    trainjobs: dict[tuple[str, str], dict[str, Any]]
    runtimes: RuntimeCatalog
    claims: ClaimModes = field(default_factory=dict)
    trainer_api: TrainerAPI | None = None


def preview(view: ClusterView) -> dict[str, Any]:
    """Per mode, the changes the operator would make: objects to create (in full), merge patches, v1 status
    writes (Takeover), and the jobs it would leave alone with why."""
    spec = CutoverPolicySpec.model_validate(view.policy.get("spec") or {})
    policy = {**CUTOVER_POLICY.type_meta, "metadata": view.policy["metadata"]}
    options = convert_options(spec, view.trainer_api or TrainerAPI.V2_2, view.claims)
    selected = [
        job
        for job in view.jobs
        if selects(spec, job, view.namespaces.get(job["metadata"]["namespace"], {}))
    ]
    selected.sort(key=lambda job: (job["kind"], job["metadata"]["namespace"], job["metadata"]["name"]))
    plans = [(job, plan_job(job, options, view.runtimes)) for job in selected]
    modes = {}
    for mode in PREVIEWED_MODES:
        mode_spec = spec.model_copy(update={"mode": mode})
        changes: list[dict[str, Any]] = []
        runtimes = set(view.runtimes.namespaced)
        for job, plan in plans:
            source = f"{plan.kind} {plan.namespace}/{plan.name}"
            existing = None
            if plan.trainjob is not None:
                existing = view.trainjobs.get((plan.namespace, plan.trainjob["metadata"]["name"]))
            decision = decide(plan, job, policy, mode_spec, existing)
            if decision.action in (Action.SKIP, Action.CONFLICT):
                changes.append({"action": "leave", "source": source, "reason": decision.reason})
                continue
            assert decision.desired is not None
            name = decision.desired["metadata"]["name"]
            if plan.runtime is not None and derived_runtime_key(plan.runtime) not in runtimes:
                runtimes.add(derived_runtime_key(plan.runtime))
                derived = build_derived_runtime(plan.runtime, policy)
                changes.append({"action": "create", "source": source, "object": derived})
            if decision.action is Action.CREATE:
                changes.append({"action": "create", "source": source, "object": decision.desired})
            elif decision.action is Action.REPLACE:
                replace = {"action": "replace", "source": source, "reason": decision.reason}
                changes.append({**replace, "object": decision.desired})
            elif decision.action is Action.UPDATE:
                target = {"kind": TRAINJOB.kind, "namespace": plan.namespace, "name": name}
                patch = {"action": "patch", "source": source, "target": target}
                then = {"then": decision.then} if decision.then is not None else {}  # a second patch
                changes.append({**patch, "patch": decision.patch, **then})
            if mode is CutoverMode.TAKEOVER:
                served = {**(existing or decision.desired), "metadata": decision.desired["metadata"]}
                status = v1_status(job, served, None, now=rfc3339(now()))
                target = {"kind": plan.kind, "namespace": plan.namespace, "name": plan.name}
                changes.append({"action": "status", "source": source, "target": target, "status": status})
        modes[mode.value] = changes
    return {"policy": view.policy["metadata"]["name"], "jobs": len(plans), "modes": modes}


def summary(changes: list[dict[str, Any]]) -> str:
    counted: dict[str, int] = {}
    for change in changes:
        what = change["action"]
        if what in ("create", "replace"):
            what = f"{what} {change['object']['kind']}"
        counted[what] = counted.get(what, 0) + 1
    return ", ".join(f"{count} {what}" for what, count in sorted(counted.items())) or "nothing"


def render_text(result: dict[str, Any]) -> str:
    """Reviewable YAML: per mode a summary line, then one document per change, headed by what it does."""
    lines = [f"# CutoverPolicy {result['policy']}: {result['jobs']} jobs selected"]
    for mode, changes in result["modes"].items():
        lines.append(f"# --- {mode}: {summary(changes)}")
        for change in changes:
            header = f"# {mode}: {change['action']} ({change['source']})"
            if change["action"] == "leave":
                lines.append(f"{header}: {change['reason']}")
                continue
            if "reason" in change:
                header += f": {change['reason']}"
            shown = {key: change[key] for key in ("patch", "then", "status") if key in change}
            body = change.get("object") or {"target": change["target"], **shown}
            lines += ["---", header, yaml.safe_dump(body, sort_keys=False).rstrip()]
    return "\n".join(lines) + "\n"


def render(result: dict[str, Any], output: str) -> str:
    return json.dumps(result, indent=1) + "\n" if output == "json" else render_text(result)


def read_cluster(policy_name: str, kubeconfig: str | None) -> ClusterView:
    """The cluster as the operator would index it, read with the user's kubeconfig."""
    import click
    from lightkube import ApiError, Client, KubeConfig
    from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
    from lightkube.resources.core_v1 import Namespace, PersistentVolumeClaim

    from ferryman.controller.discovery import served_job_kind, served_trainer_api
    from ferryman.convert.registry import JOB_KINDS
    from ferryman.kube.resources import (
        ClusterTrainingRuntime,
        CutoverPolicy,
        TrainingRuntime,
        TrainJob,
        v1_job_resource,
    )

    config = KubeConfig.from_file(kubeconfig) if kubeconfig else None
    client = Client(config=config) if config else Client()

    def crd(name: str) -> dict[str, Any] | None:
        try:
            return dict(client.get(CustomResourceDefinition, name).to_dict())
        except ApiError as error:
            if error.status.code == 404:
                return None
            raise

    def items(resource: Any, namespaced: bool = True) -> list[dict[str, Any]]:
        listed = client.list(resource, namespace="*") if namespaced else client.list(resource)
        return [dict(obj.to_dict()) for obj in listed]

    def key(obj: dict[str, Any]) -> tuple[str, str]:
        return obj["metadata"]["namespace"], obj["metadata"]["name"]

    try:
        policy = dict(client.get(CutoverPolicy, policy_name).to_dict())
    except ApiError as error:
        if error.status.code == 404:
            raise click.ClickException(f"CutoverPolicy {policy_name!r} not found") from error
        raise
    spec = CutoverPolicySpec.model_validate(policy.get("spec") or {})
    jobs = []
    for row in JOB_KINDS.values():
        definition = crd(row.kind.crd_name)
        kind = served_job_kind(definition) if definition and row.kind.kind in spec.kinds else None
        if kind is not None:
            resource = v1_job_resource(kind.api_version, kind.kind)
            jobs += [{**job, "apiVersion": kind.api_version, "kind": kind.kind} for job in items(resource)]
    trainer_crd = crd(TRAINJOB.crd_name)
    cluster_runtimes: frozenset[str] = frozenset()
    namespaced: frozenset[tuple[str, str]] = frozenset()
    trainjobs: dict[tuple[str, str], dict[str, Any]] = {}
    if trainer_crd is not None:
        cluster_runtimes = frozenset(r["metadata"]["name"] for r in items(ClusterTrainingRuntime, False))
        namespaced = frozenset(key(runtime) for runtime in items(TrainingRuntime))
        trainjobs = {key(trainjob): trainjob for trainjob in items(TrainJob)}
    claims: dict[tuple[str | None, str], tuple[str, ...]] = {
        key(claim): tuple((claim.get("spec") or {}).get("accessModes") or ())
        for claim in items(PersistentVolumeClaim)
    }
    return ClusterView(
        policy=policy,
        namespaces={
            ns["metadata"]["name"]: ns["metadata"].get("labels") or {} for ns in items(Namespace, False)
        },
        jobs=jobs,
        trainjobs=trainjobs,
        runtimes=RuntimeCatalog(cluster=cluster_runtimes, namespaced=namespaced),
        claims=claims,
        trainer_api=served_trainer_api(trainer_crd) if trainer_crd else None,
    )

