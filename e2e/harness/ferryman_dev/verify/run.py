"""`ferryman verify`: run each v1 job and its conversion under the real controllers and compare their pods.

:func:`verify_paths` converts the manifests as `ferryman convert` does, starts (or is given) a sandbox
control plane (:mod:`ferryman_dev.verify.sandbox`), creates every PyTorchJob under the Training Operator and
its TrainJob under Trainer and JobSet at once, waits for the pods each side renders and compares them rank by
rank (:mod:`ferryman_dev.verify.compare`). Each difference is explained by a finding of the conversion report
(:func:`explain`) or counted as unexplained.
"""

from __future__ import annotations

import copy
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from ferryman.api.kinds import PYTORCHJOB
from ferryman.convert.findings import Finding, Severity
from ferryman.convert.launcher import COMPLETION_INDEX_ANNOTATION
from ferryman.convert.manifests import JobResult, ManifestError, convert_stream
from ferryman.convert.options import ConvertOptions
from ferryman_dev.cluster import ControlPlane, Rejected
from ferryman_dev.controllers import create_trainjob
from ferryman_dev.verify import sandbox
from ferryman_dev.verify.compare import Difference, Side, compare

PODS_TIMEOUT = 120.0  # seconds to wait for every pod of every job of a run
V1_MAIN_CONTAINER = "pytorch"
V2_MAIN_CONTAINER = "node"
V2_NODE_JOB = "node"  # the replicated job of the torch runtimes that runs the training nodes
V1_REPLICA_TYPE = "training.kubeflow.org/replica-type"
V1_REPLICA_INDEX = "training.kubeflow.org/replica-index"
V2_REPLICATED_JOB = "jobset.sigs.k8s.io/replicatedjob-name"
# info findings that announce a change (the others say what was carried, so cannot explain a difference)
CHANGE_INFO_CODES = frozenset({"unpatchable-container-field", "clean-pod-policy", "elastic-policy",
                               "nproc-per-node", "backoff-limit"})
# the findings that may explain a different distributed contract
CONTRACT_CODES = frozenset({"elastic-policy", "nproc-per-node", "world-size"})
_CONTAINER = re.compile(r"^spec\.(containers|initContainers)\[([^\]]+)\](?:\.([A-Za-z]+))?")


@dataclass
class JobRecord:
    """One v1 job of the input and what verify found."""

    file: str
    document: int
    location: str
    kind: str
    name: str | None
    status: str  # equivalent | explained | unexplained | not_converted | skipped | v1_rejected
    reason: str = ""  # why skipped, not converted or rejected
    ranks: int = 0
    differences: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "document": self.document, "location": self.location, "kind": self.kind,
            "name": self.name, "status": self.status, "reason": self.reason, "ranks": self.ranks,
            "differences": self.differences,
        }


@dataclass
class VerifyReport:
    jobs: list[JobRecord]
    errors: list[dict[str, str]] = field(default_factory=list)  # files that cannot be read or parsed

    def summary(self) -> dict[str, int]:
        counts = {status: 0 for status in ("equivalent", "explained", "unexplained", "not_converted",
                                           "skipped", "v1_rejected")}
        for job in self.jobs:
            counts[job.status] += 1
        return {"jobs": len(self.jobs), **counts}

    @property
    def exit_code(self) -> int:
        """0 when no converted job has an unexplained difference, else 1 (files that cannot be parsed are
        reported, as `ferryman convert` reports them, and hold no job to compare)."""
        return 1 if any(job.status == "unexplained" for job in self.jobs) else 0


@dataclass
class _Run:
    record: JobRecord
    result: JobResult
    source: dict[str, Any]
    placement: sandbox.Placement | None = None
    expected_v1: int = 0
    expected_v2: int = 0
    admission: Difference | None = None
    stored_v1: dict[str, Any] = field(default_factory=dict)  # the PyTorchJob as the apiserver stored it
    stored_v2: dict[str, Any] = field(default_factory=dict)  # the TrainJob as stored


def verify_paths(
    paths: list[str],
    options: ConvertOptions,
    *,
    template: bool | None = None,
    plane: ControlPlane | None = None,
    progress: Callable[[str], None] = lambda _: None,
    tamper: Callable[[dict[str, Any]], None] | None = None,
) -> VerifyReport:
    """Verify every v1 job under ``paths`` (files or directories, as `ferryman convert` reads them).

    ``plane``: a running control plane with :data:`~ferryman_dev.verify.sandbox.SANDBOX_CONTROLLERS`
    (the tests' session cluster); without it a disposable one is started and removed. ``tamper`` edits each
    TrainJob before it is created (tests seed wrong conversions with it).
    """
    from ferryman.cli.convert import collect_sources

    sources, missing = collect_sources(paths)
    if missing:
        raise FileNotFoundError(", ".join(f"{r.file}: {r.error}" for r in missing))
    report = VerifyReport(jobs=[])
    runs: list[_Run] = []
    for source in sources:
        assert source.path is not None
        try:
            text = source.path.read_bytes().decode("utf-8-sig")
            result = convert_stream(text, options, template=template)
            documents = list(yaml.safe_load_all(text))
        except (OSError, UnicodeDecodeError, ManifestError, yaml.YAMLError) as error:
            report.errors.append({"file": source.display, "message": str(error)})
            continue
        for job in result.jobs:
            record = JobRecord(source.display, job.document, job.location, job.kind, job.name, "skipped")
            report.jobs.append(record)
            if job.status in ("blocked", "unsupported"):
                record.status, record.reason = "not_converted", job.status
            elif result.template:
                record.reason = "a template: placeholders stand where values must be to run it"
            elif job.kind != PYTORCHJOB.kind:
                record.reason = f"verify runs PyTorchJobs; a {job.kind} is not compared yet"
            elif not job.name:
                record.reason = "the job has no name of its own (its wrapper names it)"
            else:
                runs.append(_Run(record, job, _at(documents[job.document], job.location)))
    if runs:
        with sandbox.sandbox(plane) as running:
            _run_all(running, runs, tamper, progress, disposable=plane is None)
    return report


def _at(document: Any, location: str) -> dict[str, Any]:
    """The object at ``location`` (``spec.components[0].template``) of a parsed document; text on the way
    is parsed as the manifest it embeds."""
    value = document
    for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", location):
        value = value[int(index)] if index else value[key]
        if isinstance(value, str):  # a manifest embedded as text (an Argo resource template)
            value = yaml.safe_load(value)
    return dict(value)


def _run_all(
    plane: ControlPlane,
    runs: list[_Run],
    tamper: Callable[[dict[str, Any]], None] | None,
    progress: Callable[[str], None],
    disposable: bool,
) -> None:
    """Create every job and its conversion at once, wait for their pods, compare; in a control plane that
    outlives the run, remove what the run created."""
    from lightkube import codecs

    run_id = secrets.token_hex(3)
    sandbox.register_kinds()
    kube = plane.client()
    templates = [
        replica.get("template") or {}
        for job in runs
        for replica in (job.source.get("spec", {}).get("pytorchReplicaSpecs") or {}).values()
    ]
    nodes = sandbox.node_shapes(templates)
    for node in nodes:
        kube.apply(codecs.from_dict(node), force=True)
    priority_classes = sandbox.ensure_priority_classes(
        kube, {str(t["spec"]["priorityClassName"]) for t in templates if (t.get("spec") or {}).get(
            "priorityClassName")}
    )
    accounts = {str((t.get("spec") or {}).get("serviceAccountName") or "default") for t in templates}
    progress(f"{len(nodes)} node shape(s); creating {len(runs)} job(s) and their conversions")
    try:
        for index, job in enumerate(runs):
            job.placement = sandbox.prepare_namespaces(kube, run_id, index, accounts)
            _create(kube, job, tamper)
        progress("waiting for the pods of both sides")
        cluster = _wait_pods(kube, runs, f"fv-{run_id}-")
        for job in runs:
            _compare(cluster, job)
    finally:
        if not disposable:
            namespaces = [ns for job in runs if job.placement for ns in
                          (job.placement.v1_namespace, job.placement.v2_namespace)]
            sandbox.cleanup(kube, namespaces, [n["metadata"]["name"] for n in nodes], priority_classes)


def _create(kube: Any, job: _Run, tamper: Callable[[dict[str, Any]], None] | None) -> None:
    assert job.placement is not None and job.result.conversion is not None
    source = copy.deepcopy(job.source)
    meta = source.get("metadata") or {}
    source["metadata"] = {k: meta[k] for k in ("name", "labels", "annotations") if k in meta}
    source["metadata"]["namespace"] = job.placement.v1_namespace
    source.pop("status", None)
    # a suspended job (queued for Kueue) runs as Kueue would run it once admitted, on both sides
    (source.get("spec") or {}).get("runPolicy", {}).pop("suspend", None)
    replicas = (source.get("spec") or {}).get("pytorchReplicaSpecs") or {}
    job.expected_v1 = sum(int(r.get("replicas", 1)) for r in replicas.values())
    try:
        job.stored_v1 = sandbox.create(kube, source) or {}
    except Rejected as rejected:
        job.record.status, job.record.reason = "v1_rejected", rejected.message
        return
    conversion = job.result.conversion
    trainjob = copy.deepcopy(conversion.trainjob)
    assert trainjob is not None
    trainjob["metadata"]["namespace"] = job.placement.v2_namespace
    trainjob["spec"].pop("suspend", None)
    if tamper is not None:
        tamper(trainjob)
    job.expected_v2 = int((trainjob.get("spec", {}).get("trainer") or {}).get("numNodes", 1))
    try:
        if conversion.runtime is not None:
            runtime = copy.deepcopy(conversion.runtime)
            runtime["metadata"]["namespace"] = job.placement.v2_namespace
            sandbox.create(kube, runtime)
        job.stored_v2 = create_trainjob(
            lambda: sandbox.create(kube, trainjob) or {}, derived_runtime=conversion.runtime is not None
        )
    except Rejected as rejected:
        job.admission = Difference(None, "admission", "admitted", f"rejected: {rejected.message}")


@dataclass
class _Cluster:
    """Pods, Services and Jobs of a run's namespaces, listed cluster-wide at once (one request a kind)."""

    pods: dict[str, list[dict[str, Any]]]
    services: dict[str, list[dict[str, Any]]]
    jobs: dict[str, list[dict[str, Any]]]


def _list(kube: Any, resource: Any, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """The ``resource`` objects of every namespace named ``prefix...``, by namespace (one request)."""
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for item in kube.list(resource, namespace="*"):
        obj = item.to_dict()
        namespace = obj["metadata"]["namespace"]
        if namespace.startswith(prefix):
            by_namespace.setdefault(namespace, []).append(obj)
    return by_namespace


def _wait_pods(kube: Any, runs: list[_Run], prefix: str) -> _Cluster:
    """Until every job has all its pods on both sides, or :data:`PODS_TIMEOUT` (missing ranks then count)."""
    from lightkube.resources.batch_v1 import Job
    from lightkube.resources.core_v1 import Pod, Service

    deadline = time.monotonic() + PODS_TIMEOUT
    while True:
        pods = _list(kube, Pod, prefix)
        pending = [job for job in runs if not _complete(pods, job)]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return _Cluster(pods, _list(kube, Service, prefix), _list(kube, Job, prefix))


def _complete(pods: dict[str, list[dict[str, Any]]], job: _Run) -> bool:
    if job.placement is None or job.record.status == "v1_rejected":
        return True
    v1 = len(_v1_pods(pods.get(job.placement.v1_namespace, [])))
    v2 = len(_v2_pods(pods.get(job.placement.v2_namespace, []))) if job.admission is None else job.expected_v2
    return v1 >= job.expected_v1 and v2 >= job.expected_v2


def _live(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((p for p in pods if not p["metadata"].get("deletionTimestamp")),
                  key=lambda p: p["metadata"]["creationTimestamp"])


def _v1_pods(listed: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    pods = _live(listed)
    has_master = any(p["metadata"]["labels"].get(V1_REPLICA_TYPE) == "master" for p in pods)
    ranked: dict[int, dict[str, Any]] = {}
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if V1_REPLICA_INDEX not in labels:
            continue
        shift = 1 if has_master and labels.get(V1_REPLICA_TYPE) == "worker" else 0
        ranked.setdefault(int(labels[V1_REPLICA_INDEX]) + shift, pod)
    return ranked


def _v2_pods(listed: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    ranked: dict[int, dict[str, Any]] = {}
    for pod in _live(listed):
        meta = pod["metadata"]
        index = (meta.get("annotations") or {}).get(COMPLETION_INDEX_ANNOTATION)
        if (meta.get("labels") or {}).get(V2_REPLICATED_JOB) == V2_NODE_JOB and index is not None:
            ranked.setdefault(int(index), pod)
    return ranked


def _compare(cluster: _Cluster, job: _Run) -> None:
    record = job.record
    if record.status == "v1_rejected" or job.placement is None:
        return
    v1_namespace, v2_namespace = job.placement.v1_namespace, job.placement.v2_namespace
    v1 = Side(_v1_pods(cluster.pods.get(v1_namespace, [])), cluster.services.get(v1_namespace, []),
              V1_MAIN_CONTAINER)
    differences = [job.admission] if job.admission is not None else []
    if job.admission is None:
        v2 = Side(_v2_pods(cluster.pods.get(v2_namespace, [])), cluster.services.get(v2_namespace, []),
                  V2_MAIN_CONTAINER)
        differences += compare(v1, v2) + _failure(job, cluster.jobs.get(v2_namespace, []))
    record.ranks = len(v1.pods)
    findings = job.result.findings
    main_index = _main_index(job.source)
    roles = list((job.source.get("spec") or {}).get("pytorchReplicaSpecs") or {})
    for difference in differences:
        finding = explain(difference, findings, job.result.location, main_index, roles)
        record.differences.append(
            {
                "rank": difference.rank, "path": difference.path, "v1": difference.v1, "v2": difference.v2,
                "explainedBy": None if finding is None else {"code": finding.code, "path": finding.path},
            }
        )
    if not differences:
        record.status = "equivalent"
    elif all(d["explainedBy"] for d in record.differences):
        record.status = "explained"
    else:
        record.status = "unexplained"


def _failure(job: _Run, jobs: list[dict[str, Any]]) -> list[Difference]:
    """Job-level failure behaviour: how often failed pods are retried and the deadline, as each side's
    controllers enforce them (v1: the PyTorchJob's runPolicy, without a backoffLimit unlimited; v2: each
    node Job's backoffLimit, and the TrainJob's deadline, which the Trainer enforces)."""
    policy = (job.stored_v1.get("spec") or {}).get("runPolicy") or {}
    nodes = [j for j in jobs if (j["metadata"].get("labels") or {}).get(V2_REPLICATED_JOB) == V2_NODE_JOB]
    v1 = {"backoffLimit": policy.get("backoffLimit", "unlimited"),
          "activeDeadlineSeconds": policy.get("activeDeadlineSeconds")}
    v2 = {"backoffLimit": nodes[0]["spec"].get("backoffLimit") if nodes else None,
          "activeDeadlineSeconds": (job.stored_v2.get("spec") or {}).get("activeDeadlineSeconds")}
    return [Difference(None, f"failure.{key}", v1[key], v2[key]) for key in v1 if v1[key] != v2[key]]


def _main_index(source: dict[str, Any]) -> dict[str, int]:
    """Container name -> its index in the v1 pod template (the main container also as ``main``)."""
    replicas = (source.get("spec") or {}).get("pytorchReplicaSpecs") or {}
    indexes: dict[str, int] = {}
    for replica in replicas.values():
        spec = (replica.get("template") or {}).get("spec") or {}
        for kind in ("containers", "initContainers"):
            for i, container in enumerate(spec.get(kind) or []):
                name = container.get("name")
                indexes.setdefault(f"{kind}:{'main' if name == V1_MAIN_CONTAINER else name}", i)
    return indexes


def source_paths(difference: Difference, indexes: dict[str, int], roles: list[str]) -> list[str]:
    """The source fields (job-relative paths) a finding must be about to explain ``difference``; none for
    the distributed contract and missing ranks (only :data:`CONTRACT_CODES` explain them), pods that never
    came and a conversion the webhooks refused (nothing explains those)."""
    path = difference.path
    templates = [f"spec.pytorchReplicaSpecs.{role}.template." for role in roles]
    if path.startswith("metadata."):
        return [f"{t}metadata.{path.split('.')[1]}" for t in templates]
    if path.startswith("failure."):
        return [f"spec.runPolicy.{path.removeprefix('failure.')}"]
    if not path.startswith("spec."):
        return []
    found = _CONTAINER.match(path)
    if found:
        kind, name, item = found.groups()
        index = indexes.get(f"{kind}:{name}")
        containers = [f"{t}spec.{kind}" + (f"[{index}]" if index is not None else "") for t in templates]
        if item == "argv":
            return [f"{c}.{key}" for c in containers for key in ("command", "args")]
        return [f"{c}.{item}" if item else c for c in containers]
    field_name = path.split(".")[1]
    paths = [f"{t}spec.{field_name}" for t in templates]
    if field_name == "restartPolicy":
        paths += [f"spec.pytorchReplicaSpecs.{role}.restartPolicy" for role in roles]
    return paths


def _related(one: str, other: str) -> bool:
    """One path is the other or lies inside it."""
    short, long = sorted((one, other), key=len)
    return long == short or long.startswith((f"{short}.", f"{short}["))


def explain(
    difference: Difference, findings: list[Finding], location: str, indexes: dict[str, int], roles: list[str]
) -> Finding | None:
    """The finding that announced ``difference``, if any: a warning or blocker (or an info finding that
    announces a change) about the source field the difference comes from."""
    prefix = f"{location}." if location else ""
    candidates = [
        f for f in findings
        if (f.severity is not Severity.INFO or f.code in CHANGE_INFO_CODES) and f.path.startswith(prefix)
    ]
    if difference.path == "pod" or difference.path.startswith("contract."):  # a rank missing, or the contract
        return next((f for f in candidates if f.code in CONTRACT_CODES), None)
    for path in source_paths(difference, indexes, roles):
        for finding in candidates:
            if _related(finding.path.removeprefix(prefix), path):
                return finding
    return None
