"""kopf handler registrations, and nothing else: the logic lives in the modules these call.

v1 jobs (every kind in convert.registry.JOB_KINDS) and TrainJobs, thousands in a large cluster, are not
kopf's: informers (kube.informer) keep a trimmed copy of each, read by handlers as if they were kopf indexes
(kopf's per-object workers made a start over 10,000 objects take minutes). Nothing is ever written on v1
jobs. A kind whose CRD is not installed is looked for again every few seconds; policies report it. State
lives in memory (rebuilt from the lists on restart) and on ferryman's own kinds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from ferryman.api import kinds
from ferryman.controller import metrics, migration, policy, serving
from ferryman.controller.context import OperatorContext, context
from ferryman.controller.discovery import is_v1_job_crd, served_job_kind, served_trainer_api
from ferryman.controller.leadership import lead, lease_config, resign
from ferryman.controller.readiness import serve_readiness
from ferryman.controller.retrying import api_handler
from ferryman.controller.settings import configure, resync_seconds
from ferryman.convert.registry import JOB_KINDS
from ferryman.kube.informer import IndexView, Informer
from ferryman.kube.resources import TrainJob, v1_job_resource

logger = logging.getLogger(__name__)
STOP_SECONDS = 5.0  # at exit, how long the work under way has to end once cancelled


def _trimmed(body: dict[str, Any]) -> dict[str, Any]:
    """What the operator keeps of an object: no managedFields, no last-applied annotation."""
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
    return trimmed


def _trimmed_trainjob(body: dict[str, Any]) -> dict[str, Any]:
    """A TrainJob as kept: ferryman's whole; anyone else's (no source-uid label) only its metadata, all a
    decision reads of a TrainJob that is not ferryman's (it is a conflict, its spec never compared)."""
    trimmed = _trimmed(body)
    if kinds.SOURCE_UID_LABEL in (trimmed["metadata"].get("labels") or {}):
        return trimmed
    return {key: trimmed[key] for key in ("apiVersion", "kind", "metadata")}


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
        ctx.readiness = await serve_readiness(memo.readiness_url, ctx.ready)
    if memo.get("metrics_url"):  # a standby's too: it has no ferryman series, only the process's
        memo.metrics_runner = await metrics.serve_metrics(memo.metrics_url)
    if lease is not None:  # a standby waits here: kopf watches nothing before startup ends
        ctx.leadership, ctx.lease = await lead(ctx.client, lease), lease
        ctx.standby = False
    _start_informers(ctx)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    ctx = context(memo)
    stopping = [*ctx.informing, *ctx.handling, *ctx.serving]  # before the client they use closes
    for task in stopping:
        task.cancel()
    if stopping:
        await asyncio.wait(stopping, timeout=STOP_SECONDS)
    if ctx.leadership is not None:  # stopping: hand the Lease over to the standby at once
        ctx.leadership.cancel()
        await resign(ctx.client, ctx.lease)
    if ctx.readiness is not None:
        await ctx.readiness.cleanup()
    if memo.get("metrics_runner") is not None:
        await memo.metrics_runner.cleanup()
    await ctx.client.close()


@kopf.on.event(*kinds.NAMESPACE.resource)
async def indexes_complete(memo: kopf.Memo, **kwargs: Any) -> None:
    """kopf calls no resource handler before all indexes are filled: the first call means ready."""
    ctx = context(memo)
    if not ctx.indexed.is_set():
        ctx.kopf_indexes = {name: kwargs[name] for name in _KOPF_INDEXES}
        ctx.indexed.set()


@kopf.on.probe(id="policies")
async def policies_probe(memo: kopf.Memo, **_: Any) -> int:
    return len(context(memo).policies)


# Indexes: kopf lists and watches these, and runs no other handler until all are filled. Async, so that
# thousands of objects are indexed on the event loop rather than through the thread pool.


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
async def namespaced_runtimes(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    """Each runtime as far as a runtime clash is decided on it (policy.runtime_clash): no list per pass."""
    metadata = body["metadata"]
    kept = {
        "namespace": namespace,
        "name": name,
        "resourceVersion": metadata.get("resourceVersion"),
        "annotations": kopf_plain(metadata.get("annotations") or {}),
    }
    return {(namespace, name): {"metadata": kept, "spec": kopf_plain(body.get("spec"))}}


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


_KOPF_INDEXES = (
    "served_kinds", "jobsets", "namespace_labels", "cluster_runtimes", "namespaced_runtimes", "claims"
)


def _kind_key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]


def _start_informers(ctx: OperatorContext) -> None:
    """Informers for v1 jobs, by (kind, namespace, name), of every kind in every version ferryman converts
    (the cluster serves one: MPIJob v2beta1 from mpi-operator or v1 from the Training Operator), and TrainJobs
    by (namespace, name)."""
    versions = (kind for row in JOB_KINDS.values() for kind in (row.kind, *row.also))
    ctx.informers = {
        "v1jobs": [
            Informer(ctx.client, v1_job_resource(kind.api_version, kind.kind), _trimmed, key=_kind_key)
            for kind in versions
        ],
        "trainjobs": [
            Informer(ctx.client, TrainJob, _trimmed_trainjob, changed=lambda _, j: _trainjob_changed(ctx, j))
        ],
    }
    ctx.informing = [asyncio.create_task(informer.run()) for informer in ctx.every_informer()]


def _indexes(ctx: OperatorContext, kwargs: dict[str, Any]) -> dict[str, Any]:
    """kopf's indexes and the informers' copies, by name; handlers read both alike."""
    views = {name: IndexView(*informers) for name, informers in ctx.informers.items()}
    return {**{name: kwargs[name] for name in _KOPF_INDEXES}, **views}


# CutoverPolicy: a timer per policy (policies are few), re-planning from the indexes.


@kopf.timer(*kinds.CUTOVER_POLICY.resource, interval=resync_seconds(), id="reconcile")
@api_handler
async def cutover_policy(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> None:
    ctx = context(memo)
    flavours: kopf.Index[str, Any] = kwargs["trainer_flavour"]
    ctx.trainer_api = next(iter(flavours["served"])) if "served" in flavours else None
    await ctx.wait_listed()
    with metrics.RECONCILE_SECONDS.labels(kinds.CUTOVER_POLICY.kind).time():
        await policy.reconcile_policy(ctx, body, _indexes(ctx, kwargs), logger)


@kopf.on.update(*kinds.CUTOVER_POLICY.resource, field="spec")
@api_handler
async def cutover_policy_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await policy.mark_applying(context(memo), body)


@kopf.on.event(*kinds.CUTOVER_POLICY.resource)
async def forget_policy(type: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        context(memo).policies.pop(name, None)
        metrics.forget_policy(name)


# ExperimentMigration: a timer per migration drives its Job rounds and status.


@kopf.timer(*kinds.EXPERIMENT_MIGRATION.resource, interval=migration.RECONCILE_SECONDS, id="reconcile")
@api_handler
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


def _trainjob_changed(ctx: OperatorContext, trainjob: dict[str, Any]) -> None:
    """A TrainJob listed, added, changed or deleted: a Takeover's status flows into its v1 job."""
    if (trainjob["metadata"].get("labels") or {}).get(kinds.MODE_LABEL) == "takeover":
        metadata = trainjob["metadata"]
        task = asyncio.create_task(_takeover_trainjob(ctx, metadata["namespace"], metadata["name"]))
        ctx.serving.add(task)
        task.add_done_callback(ctx.serving.discard)


async def _takeover_trainjob(ctx: OperatorContext, namespace: str, name: str) -> None:
    await ctx.indexed.wait()  # JobSets are in kopf's indexes
    await ctx.wait_listed()
    try:
        await serving.mirror_status(ctx, namespace, name, _indexes(ctx, ctx.kopf_indexes), logger)
    except Exception:  # as a kopf handler's would be: logged, and tried again at the TrainJob's next change
        logger.exception(f"mirroring the status of TrainJob {namespace}/{name}")


@kopf.on.event(*kinds.JOBSET.resource)
@api_handler
async def takeover_jobset(
    body: kopf.Body, namespace: str | None, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any
) -> None:
    owner = serving.owning_trainjob(kopf_plain(body))
    if owner is not None:
        ctx = context(memo)
        await serving.mirror_status(ctx, namespace or "", owner, _indexes(ctx, kwargs), logger)
