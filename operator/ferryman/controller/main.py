"""kopf handler registrations, and nothing else: the logic lives in the modules these call.

v1 jobs (every kind in convert.registry.JOB_KINDS) are only indexed and watched (no change-detecting
handlers): kopf never writes an annotation or finalizer on them. A kind whose CRD is not installed is not
watched (kopf warns once, and starts watching when the CRD appears); policies report it. State lives in
memory (rebuilt from the indexes on restart) and on ferryman's own kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from ferryman.api import kinds
from ferryman.controller import metrics, migration, policy, serving
from ferryman.controller.context import OperatorContext, context
from ferryman.controller.discovery import is_v1_job_crd, served_job_kind, served_trainer_api
from ferryman.controller.leadership import lead, lease_config, resign
from ferryman.controller.readiness import serve_readiness
from ferryman.controller.settings import configure, resync_seconds
from ferryman.convert.registry import JOB_KINDS


def _trimmed(body: kopf.Body) -> dict[str, Any]:
    """A compact, plain copy of an object for the indexes: no managedFields, no last-applied annotation."""
    metadata = body["metadata"]
    kept = {
        key: metadata[key]
        for key in ("name", "namespace", "uid", "resourceVersion", "generation", "labels", "ownerReferences")
        if key in metadata
    }
    annotations = {
        key: value
        for key, value in (metadata.get("annotations") or {}).items()
        if key != kinds.LAST_APPLIED_ANNOTATION
    }
    if annotations:
        kept["annotations"] = annotations
    trimmed = {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": kept}
    for section in ("spec", "status"):
        if section in body:
            trimmed[section] = body[section]
    return kopf_plain(trimmed)


def kopf_plain(value: Any) -> Any:
    """A plain-dict deep copy of a kopf body (or any nested mapping)."""
    if isinstance(value, Mapping):
        return {key: kopf_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [kopf_plain(item) for item in value]
    return value


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure(settings)
    ctx = OperatorContext.from_environment()
    memo.ferryman = ctx
    await ctx.find_worker_image()
    lease = lease_config(ctx.namespace)
    ctx.standby = lease is not None
    if memo.get("readiness_url"):
        # Ready: a standby at once (a rollout must not wait for it to lead), the leader once indexed.
        ctx.readiness = await serve_readiness(memo.readiness_url, lambda: ctx.standby or ctx.indexes_complete)
    if memo.get("metrics_url"):  # a standby's too: it has no ferryman series, only the process's
        memo.metrics_runner = await metrics.serve_metrics(memo.metrics_url)
    if lease is not None:  # a standby waits here: kopf watches nothing before startup ends
        ctx.leadership, ctx.lease = await lead(ctx.client, lease), lease
        ctx.standby = False


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    ctx = context(memo)
    if ctx.leadership is not None:  # stopping: hand the Lease over to the standby at once
        ctx.leadership.cancel()
        await resign(ctx.client, ctx.lease)
    if ctx.readiness is not None:
        await ctx.readiness.cleanup()
    if memo.get("metrics_runner") is not None:
        await memo.metrics_runner.cleanup()
    await ctx.client.close()


@kopf.on.event(*kinds.NAMESPACE.resource)
async def indexes_complete(memo: kopf.Memo, **_: Any) -> None:
    """kopf calls no resource handler before all indexes are filled: the first call means ready."""
    context(memo).indexes_complete = True


@kopf.on.probe(id="policies")
async def policies_probe(memo: kopf.Memo, **_: Any) -> int:
    return len(context(memo).policies)


# Indexes: kopf lists and watches these, and runs no other handler until all are filled. Async, so that
# thousands of objects are indexed on the event loop rather than through the thread pool.


async def v1jobs(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    return {(body["kind"], namespace, name): _trimmed(body)}


# One index of every kind in every version ferryman converts; the cluster serves one (MPIJob: v2beta1 from
# mpi-operator or v1 from the Training Operator), and kopf leaves the others unresolved.
for _kind in (kind for row in JOB_KINDS.values() for kind in (row.kind, *row.also)):
    kopf.index(*_kind.resource, id="v1jobs")(v1jobs)


@kopf.index(*kinds.TRAINJOB.resource)
async def trainjobs(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): _trimmed(body)}


@kopf.index(*kinds.JOBSET.resource)
async def jobsets(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any] | None:
    if serving.owning_trainjob(kopf_plain(body)) is None:
        return None
    # each replicated job's pods per Job (its parallelism): JobSet and TrainJob statuses count Jobs, v1 pods
    replicated = [
        {"name": job.get("name"), "template": {"spec": {"parallelism": spec.get("parallelism")}}}
        for job in (body.get("spec") or {}).get("replicatedJobs") or []
        for spec in [(job.get("template") or {}).get("spec") or {}]
    ]
    return {
        (namespace, name): {
            "metadata": {"name": name},
            "spec": {"replicatedJobs": replicated},
            "status": kopf_plain(body.get("status") or {}),
        }
    }


@kopf.index(*kinds.NAMESPACE.resource)
async def namespace_labels(name: str, labels: kopf.Labels, **_: Any) -> dict[Any, Any]:
    return {name: dict(labels)}


@kopf.index(*kinds.CLUSTER_TRAINING_RUNTIME.resource)
async def cluster_runtimes(name: str, **_: Any) -> dict[Any, Any]:
    return {name: True}


@kopf.index(*kinds.TRAINING_RUNTIME.resource)
async def namespaced_runtimes(namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): True}


@kopf.index(*kinds.PERSISTENT_VOLUME_CLAIM.resource)
async def claims(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> dict[Any, Any]:
    modes = spec.get("accessModes")
    return {(namespace, name): tuple(modes) if isinstance(modes, list) else ()}


def _is_trainjob_crd(name: str | None, **_: Any) -> bool:
    return name == kinds.TRAINJOB.crd_name


@kopf.index(*kinds.CUSTOM_RESOURCE_DEFINITION.resource, when=_is_trainjob_crd)
async def trainer_flavour(body: kopf.Body, **_: Any) -> dict[Any, Any] | None:
    flavour = served_trainer_api(kopf_plain(body))
    return None if flavour is None else {"served": flavour}


def _is_v1_job_crd(name: str | None, **_: Any) -> bool:
    return is_v1_job_crd(name)


@kopf.index(*kinds.CUSTOM_RESOURCE_DEFINITION.resource, when=_is_v1_job_crd)
async def served_kinds(body: kopf.Body, **_: Any) -> dict[Any, Any] | None:
    kind = served_job_kind(kopf_plain(body))
    return None if kind is None else {kind.kind: kind.api_version}


def _indexes(kwargs: dict[str, Any]) -> dict[str, kopf.Index[Any, Any]]:
    names = "v1jobs served_kinds trainjobs jobsets namespace_labels cluster_runtimes namespaced_runtimes"
    names += " claims"
    return {name: kwargs[name] for name in names.split()}


# CutoverPolicy: a timer per policy (policies are few), re-planning from the indexes.


@kopf.timer(*kinds.CUTOVER_POLICY.resource, interval=resync_seconds(), id="reconcile")
async def cutover_policy(
    body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any
) -> None:
    ctx = context(memo)
    flavours: kopf.Index[str, Any] = kwargs["trainer_flavour"]
    ctx.trainer_api = next(iter(flavours["served"])) if "served" in flavours else None
    with metrics.RECONCILE_SECONDS.labels(kinds.CUTOVER_POLICY.kind).time():
        await policy.reconcile_policy(ctx, body, _indexes(kwargs), logger)


@kopf.on.update(*kinds.CUTOVER_POLICY.resource, field="spec")
async def cutover_policy_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await policy.mark_applying(context(memo), body)


@kopf.on.event(*kinds.CUTOVER_POLICY.resource)
async def forget_policy(type: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        context(memo).policies.pop(name, None)
        metrics.forget_policy(name)


# ExperimentMigration: a timer per migration drives its Job rounds and status.


@kopf.timer(*kinds.EXPERIMENT_MIGRATION.resource, interval=migration.RECONCILE_SECONDS, id="reconcile")
async def experiment_migration(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    with metrics.RECONCILE_SECONDS.labels(kinds.EXPERIMENT_MIGRATION.kind).time():
        await migration.reconcile_migration(context(memo), body, logger)
    metadata = body["metadata"]
    metrics.record_migration(metadata["namespace"], metadata["name"], kopf_plain(body.get("status") or {}))


@kopf.on.event(*kinds.EXPERIMENT_MIGRATION.resource)
async def forget_migration(type: str, namespace: str | None, name: str, **_: Any) -> None:
    if type == "DELETED":
        metrics.forget_migration(namespace or "", name)


# Takeover: TrainJob and JobSet status flows back into the v1 job served.


@kopf.on.event(*kinds.TRAINJOB.resource, labels={kinds.MODE_LABEL: "takeover"})
async def takeover_trainjob(
    namespace: str | None, name: str, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any
) -> None:
    await serving.mirror_status(context(memo), namespace or "", name, _indexes(kwargs), logger)


@kopf.on.event(*kinds.JOBSET.resource)
async def takeover_jobset(
    body: kopf.Body, namespace: str | None, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any
) -> None:
    owner = serving.owning_trainjob(kopf_plain(body))
    if owner is not None:
        await serving.mirror_status(context(memo), namespace or "", owner, _indexes(kwargs), logger)
