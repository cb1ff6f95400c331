"""The kind-agnostic core of converting a Training Operator v1 job into a Kubeflow Trainer v2 TrainJob.

Pure and deterministic: every source fact ends up in the TrainJob, in the derived TrainingRuntime or in a
finding. The README section "Converting manifests" describes the mapping.

A v1 kind is converted by a subclass of :class:`JobConverter` in a module of its own
(``convert/pytorchjob.py`` is the model) and one row of the table in ``convert/registry.py``. The subclass
implements ``convert() -> Conversion`` from the core's steps, in this order:

1. ``validate(model)``: the typed v1 object (a pydantic view from ``api/``), or None after blockers;
2. ``begin(job)``: unknown top-level fields, status, the TrainJob's name and metadata;
3. the kind's own topology: which replica's pod template every v2 node runs, ``numNodes``, replica
   ``restart_policy``; a kind whose roles differ merges or blocks here;
4. ``node(base, template, has_leader)``: the node pod template (pod metadata, pod patch, the trainer
   container named ``self.container_name``, sidecars, env with ``self.operator_env`` dropped and v1 host
   names rewritten by ``self.rewriter``), as a :class:`Node`;
5. the kind's distributed semantics on ``trainer``/``env`` (launcher, processes per node, ...);
6. ``finish(trainer, node, run_policy)``: list limits, run policy, runtime selection, the derived runtime
   and the TrainJob in the requested flavour, as a :class:`Conversion`.

Class attributes a kind sets: ``kind`` (as in reports), ``container_name`` (the container v1 requires) and
``operator_env`` (variables the v1 operator set over the user's, dropped when the job has a leader).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from ferryman.api import pytorchjob as v1
from ferryman.api.kinds import (
    CLUSTER_TRAINING_RUNTIME,
    KUEUE_ADMISSION_POD_METADATA,
    TRAINING_RUNTIME,
    TRAINJOB,
)
from ferryman.api.trainer import TrainerAPI
from ferryman.convert.findings import Finding, Severity
from ferryman.convert.launcher import (
    COMPLETION_INDEX,
    COMPLETION_INDEX_ANNOTATION,
    RESERVED_ENV,
    HostRewriter,
    hostname_ranks,
)
from ferryman.convert.metadata import clean_metadata
from ferryman.convert.names import MAX_NAME_LENGTH, trainjob_name
from ferryman.convert.options import Conversion, ConvertOptions
from ferryman.convert.overrides import (
    CONTAINER_PATCH_FIELDS,
    NOT_CARRIED_BY_RUNTIME,
    POD_METADATA_PATCH,
    POD_PATCH_FIELDS,
    UNPATCHABLE_CONTAINER_FIELDS,
    UNPATCHABLE_POD_FIELDS,
    WARN_ONLY_UNCARRIED,
    pod_overrides,
)
from ferryman.convert.placeholders import is_placeholder
from ferryman.convert.runtime import accelerators, derived_runtime, select_runtime

VOLCANO_QUEUE_ANNOTATION = "scheduling.volcano.sh/queue-name"
V1_MANAGER = "kubeflow.org/training-operator"
V2_MANAGERS = ("trainer.kubeflow.org/trainjob-controller", "kueue.x-k8s.io/multikueue")
V1_LABEL_PREFIX = "training.kubeflow.org/"
_REPLICA_INDEX_LABEL = "training.kubeflow.org/replica-index"
_JOB_NAME_LABEL = "training.kubeflow.org/job-name"
_JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
_KEYED_BY_NAME = ("volumes", "imagePullSecrets", "schedulingGates")  # listType=map, key name, in patches
_TRAINER_TYPES: dict[str, type | tuple[type, ...]] = {
    "image": str,
    "resources": dict,
    "env": list,
    "command": list,
    "args": list,
}
TRAINER_LIST_LIMITS = {"command": 128, "args": 128, "env": 128}  # TrainJob CRD MaxItems
POD_LIST_LIMITS = {"volumes": 128, "tolerations": 128, "imagePullSecrets": 64, "schedulingGates": 16}


_ViewT = TypeVar("_ViewT", bound=BaseModel)


def join(path: str, key: str) -> str:
    """Field paths are dotted with raw keys and ``[i]`` list indexes: ``spec.x.containers[0].env``."""
    return f"{path}.{key}" if path else key


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class RuntimeNeed:
    """A source setting only a derived TrainingRuntime can carry, and what is lost without one."""

    severity: Severity  # of the loss, when no runtime is derived
    path: str
    code: str  # of the finding when it is lost
    lost: str  # what happens without the derived runtime
    carried: str  # how the derived runtime carries it


@dataclass
class Node:
    """The pod template every v2 node runs, split into what the TrainJob and the runtime carry."""

    pod_path: str  # of the pod spec in the source
    path: str  # of the trainer container in the source
    pod_metadata: dict[str, Any]  # pod labels and annotations the flavour patches
    pod_patch: dict[str, Any]  # pod fields the flavour patches
    container_patch: dict[str, Any]  # fields of the `node` container the flavour patches
    container: dict[str, Any]  # the trainer container's image, command, args, env and resources
    env: list[dict[str, Any]] = field(default_factory=list)  # trainer.env so far
    accelerators: list[str] = field(default_factory=list)  # accelerator resources it requests


class JobConverter:
    """Converts one v1 job; a kind subclasses it (see the module docstring)."""

    kind: ClassVar[str]
    container_name: ClassVar[str]
    operator_env: ClassVar[tuple[str, ...]] = ()
    port_name: ClassVar[str] = v1.DEFAULT_PORT_NAME  # the port v1 declared for its own use
    reserved_env: ClassVar[frozenset[str]] = RESERVED_ENV  # names the runtime's ML policy sets
    runtime_name: ClassVar[str | None] = None  # the kind's ClusterTrainingRuntime; None: the runtime rules
    ml_policy: ClassVar[dict[str, Any]] = {"torch": {}}  # of a derived runtime
    framework: ClassVar[str] = "torch"  # a derived runtime's framework label
    longest_job: ClassVar[str] = "node"  # the runtime's longest replicated job name: pod names must fit 63
    name_limit: ClassVar[int] = MAX_NAME_LENGTH  # of the TrainJob's name, for pods of `longest_job`

    def __init__(self, obj: dict[str, Any], options: ConvertOptions) -> None:
        self.obj = obj
        self.options = options
        self.api = TrainerAPI(options.trainer_api)
        self.findings: list[Finding] = []
        metadata = mapping(obj.get("metadata"))
        self.source_metadata: dict[str, Any] = metadata
        self.source_name = str(metadata.get("name") or metadata.get("generateName") or "")
        self.namespace: str | None = metadata.get("namespace")
        self.name = ""
        self.metadata: dict[str, Any] = {}
        # what only a derived runtime can carry: pod settings, pod metadata, node container fields
        self.runtime_pod: dict[str, Any] = {}
        self.runtime_pod_metadata: dict[str, Any] = {}
        self.runtime_container: dict[str, Any] = {}
        self.runtime_policy: dict[str, Any] = {}  # runtime spec fields besides the template (podGroupPolicy)
        self.needs: list[RuntimeNeed] = []
        self.rewriter: HostRewriter | None = None

    def convert(self) -> Conversion:
        raise NotImplementedError

    # -- findings -----------------------------------------------------------------------------------

    def report(self, severity: Severity, path: str, code: str, message: str) -> None:
        self.findings.append(Finding(severity=severity, path=path, code=code, message=message))

    def need(self, severity: Severity, path: str, code: str, lost: str, carried: str) -> None:
        """Record a setting the caller has put in ``runtime_*``; `finish` reports it once it knows whether a
        runtime is derived."""
        self.needs.append(RuntimeNeed(severity, path, code, lost, carried))

    def unknown(self, fields: dict[str, Any], path: str) -> None:
        for key in fields:
            self.report(
                Severity.WARNING,
                join(path, key),
                "unknown-field",
                f"{key!r} is not a field of the v1 API; it was not carried. Remove it or move it where v1 "
                "expects it",
            )

    def result(self, trainjob: dict[str, Any] | None, runtime: dict[str, Any] | None = None) -> Conversion:
        conversion = Conversion(
            source_name=self.source_name,
            source_namespace=self.namespace,
            trainjob=trainjob,
            runtime=runtime,
            findings=self.findings,
        )
        if conversion.blocked and not self.options.force:
            conversion.trainjob = None
            conversion.runtime = None
        return conversion

    # -- numbers and placeholders -------------------------------------------------------------------

    def integer(self, value: Any, path: str, what: str, minimum: int = 0) -> int | str | None:
        """An int field's value, a carried placeholder (template output), or None after a blocker."""
        if isinstance(value, bool):
            value = None
        if isinstance(value, int):
            if value >= minimum:
                return value
            self.report(
                Severity.BLOCKER, path, "invalid-value", f"{what} is {value}; it must be >= {minimum}"
            )
            return None
        if isinstance(value, str) and value.strip().isdigit():
            return self.integer(int(value), path, what, minimum)
        if is_placeholder(value):
            if self.options.template:
                self.report(
                    Severity.INFO,
                    path,
                    "placeholder-carried",
                    f"{what} is the template placeholder {value!r}; it is carried as a placeholder",
                )
                return str(value).strip()
            self.report(
                Severity.BLOCKER,
                path,
                "placeholder-in-number",
                f"{what} is the template placeholder {value!r}, not a number; substitute it first (envsubst) "
                "or convert with template output enabled",
            )
            return None
        self.report(Severity.BLOCKER, path, "invalid-value", f"{what} is {value!r}, not an integer")
        return None

    # -- the object ---------------------------------------------------------------------------------

    def validate(self, model: type[_ViewT]) -> _ViewT | None:
        """The typed v1 object; None (every invalid field reported as a blocker) when it does not fit."""
        try:
            return model.model_validate(self.obj)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = ".".join(str(p) for p in err["loc"])
                self.report(
                    Severity.BLOCKER,
                    loc,
                    "invalid-field",
                    f"{loc}: {err['msg']} (got {repr(err.get('input'))[:80]})",
                )
            return None

    def begin(self, job: Any, api_version: str) -> None:
        """Unknown fields, the source's apiVersion and status, and the TrainJob's name and metadata."""
        self.unknown({k: v for k, v in job.unknown_fields().items()}, "")
        if job.api_version != api_version:
            self.report(
                Severity.WARNING,
                "apiVersion",
                "api-version",
                f"{job.api_version} is not {api_version}; converted with v1 semantics",
            )
        if job.status is not None:
            self.report(Severity.INFO, "status", "status-dropped", "status of the source is not copied")

        name, finding = (
            trainjob_name(self.source_name, max_length=self.name_limit, job=self.longest_job)
            if self.source_name
            else ("", None)
        )
        if finding:
            self.findings.append(finding)
        if not self.source_name:
            self.report(
                Severity.BLOCKER, "metadata.name", "name-missing", f"the {self.kind} has no name; give it one"
            )
        self.name = name
        self.metadata, dropped = clean_metadata(self.source_metadata, name)
        self.findings.extend(dropped)
        if self.source_metadata.get("generateName"):
            if self.source_metadata.get("name"):
                severity, message = Severity.INFO, "generateName is ignored because the object has a name"
            else:
                severity, message = (
                    Severity.WARNING,
                    f"the TrainJob gets the fixed name {name!r}: v2 node host names (MASTER_ADDR, rewritten "
                    "v1 host names) need a name known before creation; rename it to submit it again",
                )
            self.report(severity, "metadata.generateName", "generate-name", message)
        self.unknown(job.spec.unknown_fields(), "spec")

    def restart_policy(self, policy: str | None, path: str, primary: bool) -> None:
        """A replica's restartPolicy; ``primary``: the replica whose template the TrainJob's nodes use."""
        if policy in (None, "OnFailure"):
            return  # v1's default; JobSet defaults pods to OnFailure as well
        if policy == "Never" and primary:
            self.runtime_pod["restartPolicy"] = "Never"
            self.need(
                Severity.WARNING,
                path,
                "restart-policy",
                "restartPolicy Never: v2 pods restart in place on failure (OnFailure)",
                "restartPolicy Never is set in the derived runtime",
            )
            return
        remedy = {
            "Never": "v2 pods restart in place on failure (OnFailure)",
            "ExitCode": "v2 has no exit-code based retry; failed pods restart in place (OnFailure)",
            "Always": "Job pods cannot use Always; v2 pods restart on failure only (OnFailure)",
        }.get(str(policy), f"{policy!r} is not a v1 restart policy; v2 uses OnFailure")
        self.report(Severity.WARNING, path, "restart-policy", f"restartPolicy {policy}: {remedy}")

    # -- the node pod template ----------------------------------------------------------------------

    def node(self, base: str, template: dict[str, Any], has_leader: bool) -> Node:
        """The pod template at ``base``.template that every v2 node runs. ``has_leader``: the job has a
        replica (a Master) that v1 treated as rank 0 besides the Workers."""
        pod_spec = mapping(template.get("spec"))
        pod_metadata = self.pod_metadata(template, f"{base}.template")
        self.rewriter = HostRewriter(self.source_name, self.name, has_leader) if self.source_name else None
        self.typed(v1.PodSpecView, pod_spec, f"{base}.template.spec")
        pod_patch = self.pod_spec(pod_spec, f"{base}.template.spec")
        container_index, container = self.trainer_container(pod_spec, f"{base}.template.spec")
        cpath = f"{base}.template.spec.containers[{container_index}]"
        view = self.typed(v1.ContainerView, container, cpath)
        container_patch, trainer_container = self.container(container, view, cpath)
        if isinstance(trainer_container.get("resources"), dict):
            trainer_container["resources"] = self.quantities(trainer_container["resources"], cpath)
        node = Node(
            pod_path=f"{base}.template.spec",
            path=cpath,
            pod_metadata=pod_metadata,
            pod_patch=pod_patch,
            container_patch=container_patch,
            container=trainer_container,
            accelerators=accelerators(trainer_container.get("resources")),
        )
        node.env = self.env(trainer_container.get("env") or [], f"{cpath}.env", has_leader)
        return node

    def quantities(self, resources: dict[str, Any], path: str) -> dict[str, Any]:
        """Resources without null quantities (``nvidia.com/gpu:`` with no value), which the apiserver
        rejects in a TrainJob; each dropped one reported."""
        out: dict[str, Any] = {}
        for section, quantities in resources.items():
            if not isinstance(quantities, dict):
                out[section] = quantities
                continue
            for name, quantity in quantities.items():
                if quantity is None:
                    self.report(
                        Severity.WARNING,
                        f"{path}.resources.{section}.{name}",
                        "null-quantity",
                        f"{section} {name} has no quantity; dropped (the apiserver rejects a null quantity). "
                        "Give it a value if the job needs it",
                    )
            kept = {name: quantity for name, quantity in quantities.items() if quantity is not None}
            if kept:
                out[section] = kept
        return out

    def without_queue_admission(self, values: dict[str, Any], path: str) -> dict[str, Any]:
        """Pod template labels or annotations without those Kueue writes as it admits the v1 job."""
        for key in values.keys() & KUEUE_ADMISSION_POD_METADATA.keys():
            self.report(
                Severity.INFO,
                path,
                "queue-admission-metadata",
                f"{key} ({KUEUE_ADMISSION_POD_METADATA[key]}) is written by Kueue as it admits the v1 job; "
                "not carried",
            )
        return {key: value for key, value in values.items() if key not in KUEUE_ADMISSION_POD_METADATA}

    def pod_metadata(self, template: dict[str, Any], path: str) -> dict[str, Any]:
        for key in template:
            if key not in ("metadata", "spec"):
                self.unknown({key: template[key]}, path)
        meta = template.get("metadata")
        if not isinstance(meta, dict):
            if meta is not None:
                self.report(
                    Severity.BLOCKER, f"{path}.metadata", "invalid-field", f"metadata is {meta!r}, not a map"
                )
            meta = {}
        out: dict[str, Any] = {}
        for key, value in meta.items():
            if key in ("labels", "annotations"):
                if isinstance(value, dict):
                    kept = self.without_queue_admission(value, f"{path}.metadata.{key}")
                    if kept:
                        out[key] = kept
                elif value is not None:
                    self.report(
                        Severity.BLOCKER,
                        f"{path}.metadata.{key}",
                        "invalid-field",
                        f"{key} is {value!r}, not a map",
                    )
            elif value is not None:
                self.report(
                    Severity.INFO,
                    f"{path}.metadata.{key}",
                    "pod-metadata-ignored",
                    f"pod template metadata.{key} is set by the Job controller; not carried",
                )
        for label in (out.get("labels") or {}) | (out.get("annotations") or {}):
            if label.startswith(V1_LABEL_PREFIX):
                self.report(
                    Severity.WARNING,
                    f"{path}.metadata",
                    "v1-label",
                    f"{label} is a Training Operator v1 key; nothing in v2 reads it",
                )
        if POD_METADATA_PATCH[self.api] or not out:
            return out
        self.runtime_pod_metadata = out
        self.need(
            Severity.WARNING,
            f"{path}.metadata",
            "pod-metadata",
            "TrainJob v2.0 cannot set pod labels or annotations (spec.labels reach only the JobSet and "
            "Jobs); selectors, mesh injection and monitoring keyed on them change",
            "pod labels and annotations are set in the derived runtime (v2.0 cannot patch them)",
        )
        return {}

    def pod_spec(self, pod_spec: dict[str, Any], path: str) -> dict[str, Any]:
        """The flavour's pod patch; unpatchable settings go to the derived runtime or into findings."""
        patchable = POD_PATCH_FIELDS[self.api]
        patch: dict[str, Any] = {}
        for key, value in pod_spec.items():
            if key == "containers":
                continue
            if value is None or value == [] or value == {}:
                continue
            fpath = join(path, key)
            if key in patchable:
                if key == "terminationGracePeriodSeconds":
                    value = self.integer(value, fpath, key)
                    if value is None:
                        continue
                if key in _KEYED_BY_NAME:
                    value, conflicts = self.by_name(value, fpath)
                    for index in conflicts:
                        self.report(
                            Severity.BLOCKER,
                            f"{fpath}[{index}]",
                            "duplicate-name",
                            f"another entry of {key} has the same name; a pod rejects that, and so does the "
                            "TrainJob (its lists are keyed by name). Rename or remove one",
                        )
                patch[key] = self.v1_selectors(value, fpath) if key == "affinity" else value
            elif key in WARN_ONLY_UNCARRIED:
                severity, why = WARN_ONLY_UNCARRIED[key]
                self.report(severity, fpath, "pod-field", f"pod {key} is not carried: {why}")
            else:
                self.unpatchable_pod_field(key, value, fpath)
        return patch

    def by_name(self, items: Any, path: str) -> tuple[Any, list[int]]:
        """A list keyed by ``name`` without exact duplicates (reported), and the indexes of entries whose
        name is taken by a different entry."""
        if not isinstance(items, list):
            return items, []
        seen: dict[Any, Any] = {}
        kept: list[Any] = []
        conflicts: list[int] = []
        for index, item in enumerate(items):
            name = item.get("name") if isinstance(item, dict) else None
            if name is None or name not in seen:
                seen.setdefault(name, item)
                kept.append(item)
            elif seen[name] == item:
                self.report(
                    Severity.INFO,
                    f"{path}[{index}]",
                    "duplicate-entry",
                    "an exact duplicate entry is dropped",
                )
            else:
                conflicts.append(index)
        return kept, conflicts

    def unpatchable_pod_field(self, key: str, value: Any, path: str) -> None:
        severity, why = UNPATCHABLE_POD_FIELDS.get(
            key, (Severity.BLOCKER, "the TrainJob cannot set it on the pods")
        )
        lost = f"TrainJob {self.api} cannot set pod {key}: {why}"
        if key in NOT_CARRIED_BY_RUNTIME:
            self.report(severity, path, "unpatchable-pod-field", lost)
            return
        if key == "initContainers" and isinstance(value, list):
            value = [self.rewrite_container(c, f"{path}[{i}]") for i, c in enumerate(value)]
        elif key == "affinity":
            value = self.v1_selectors(value, path)
        self.runtime_pod[key] = value
        self.need(severity, path, "unpatchable-pod-field", lost, f"pod {key} is set in the derived runtime")

    def trainer_container(self, pod_spec: dict[str, Any], path: str) -> tuple[int, dict[str, Any]]:
        """(index, container) of the container named ``container_name``; the others are sidecars."""
        containers = pod_spec.get("containers")
        if not isinstance(containers, list):
            containers = []  # typed() reported it
        index = next(
            (
                i
                for i, c in enumerate(containers)
                if isinstance(c, dict) and c.get("name") == self.container_name
            ),
            None,
        )
        if index is None:
            self.report(
                Severity.BLOCKER,
                f"{path}.containers",
                f"no-{self.container_name}-container",
                f"no container is named {self.container_name!r} (v1 requires one); the first container was "
                "used",
            )
            index = 0
        sidecars = [c for i, c in enumerate(containers) if i != index]
        if sidecars:
            self.runtime_pod["containers"] = [
                self.rewrite_container(c, f"{path}.containers[{i}]")
                for i, c in enumerate(containers)
                if i != index
            ]
            for i, c in enumerate(containers):
                if i != index:
                    name = c.get("name") if isinstance(c, dict) else c
                    self.need(
                        Severity.BLOCKER,
                        f"{path}.containers[{i}]",
                        "sidecar",
                        f"container {name!r} cannot be added by a TrainJob (patches only modify runtime "
                        "containers)",
                        f"sidecar {name} runs from the derived runtime",
                    )
        container = (
            containers[index] if index < len(containers) and isinstance(containers[index], dict) else {}
        )
        return index, container

    def typed(self, model: type[_ViewT], data: dict[str, Any], path: str) -> _ViewT | None:
        """The typed view of ``data``; every field of the wrong type is a blocker naming its path."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
                self.report(
                    Severity.BLOCKER,
                    loc,
                    "invalid-field",
                    f"{err['msg']} (got {repr(err.get('input'))[:80]}); the v1 API server would reject it",
                )
            return None

    def container(
        self, container: dict[str, Any], view: v1.ContainerView | None, path: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the node container patch, the fields trainer.* carries, typed where the view validated)."""
        patchable = CONTAINER_PATCH_FIELDS[self.api]
        patch: dict[str, Any] = {}
        trainer: dict[str, Any] = {}
        if view is not None:
            typed = {
                "image": view.image,
                "command": view.command,
                "args": view.args,
                "env": view.env,
                "resources": view.resources,
            }
            trainer = {key: value for key, value in typed.items() if value is not None}
        for key, value in container.items():
            fpath = join(path, key)
            if key == "name":
                continue
            if key in ("image", "resources", "env", "command", "args"):
                if view is None and isinstance(value, _TRAINER_TYPES[key]):
                    trainer[key] = value  # blocked already (typed() reported the bad field)
            elif value is None or value == [] or value == {}:
                continue
            elif key == "volumeMounts" and isinstance(value, list):
                mounts, conflicts = self.by_name(value, fpath)
                if not conflicts:
                    patch[key] = mounts
                else:
                    self.runtime_container[key] = value
                    self.need(
                        Severity.BLOCKER,
                        fpath,
                        "duplicate-name",
                        "volumeMounts mount one volume more than once (e.g. two subPaths); a TrainJob keys "
                        "mounts by volume name and cannot carry that",
                        "volumeMounts mount one volume more than once; they are set in the derived runtime "
                        "(a TrainJob keys mounts by volume name)",
                    )
            elif key in patchable:
                patch[key] = value
            elif key == "ports" and _only_v1_port(value, self.port_name):
                self.report(
                    Severity.INFO,
                    fpath,
                    "v1-port",
                    f"the v1 port {self.port_name} is not declared: v2 nodes reach each other on any port "
                    "through the JobSet's headless service (the runtime declares 29500)",
                )
            else:
                severity, why = UNPATCHABLE_CONTAINER_FIELDS.get(
                    key, (Severity.BLOCKER, "the TrainJob cannot set it on the node container")
                )
                self.runtime_container[key] = value
                self.need(
                    severity,
                    fpath,
                    "unpatchable-container-field",
                    f"TrainJob {self.api} cannot set {key} on the trainer container: {why}",
                    f"container {key} is set in the derived runtime",
                )
        return patch, trainer

    def v1_selectors(self, affinity: Any, path: str) -> Any:
        """Pod (anti-)affinity selecting this job's pods by the v1 job-name label selects them by JobSet name;
        any other v1 pod label in it matches nothing in v2 (reported)."""
        if V1_LABEL_PREFIX not in repr(affinity):
            return affinity
        names = {self.source_name: self.name}

        def rewrite(value: Any) -> Any:
            if isinstance(value, list):
                return [rewrite(item) for item in value]
            if not isinstance(value, dict):
                return value
            out = {key: rewrite(item) for key, item in value.items()}
            labels = out.get("matchLabels")
            if isinstance(labels, dict) and _JOB_NAME_LABEL in labels:
                out["matchLabels"] = {
                    (_JOBSET_NAME_LABEL if k == _JOB_NAME_LABEL else k): (
                        names.get(v, v) if k == _JOB_NAME_LABEL else v
                    )
                    for k, v in labels.items()
                }
            if out.get("key") == _JOB_NAME_LABEL and "operator" in out:  # a label selector requirement
                out["key"] = _JOBSET_NAME_LABEL
                if isinstance(out.get("values"), list):
                    out["values"] = [names.get(v, v) for v in out["values"]]
            return out

        rewritten = rewrite(affinity)
        if V1_LABEL_PREFIX in repr(rewritten):
            self.report(
                Severity.WARNING,
                path,
                "v1-label",
                f"selects pods by a Training Operator v1 label ({V1_LABEL_PREFIX}*) that v2 pods lack; "
                f"use {_JOBSET_NAME_LABEL} or other jobset.sigs.k8s.io/* labels",
            )
        else:
            self.report(
                Severity.INFO,
                path,
                "v1-reference-rewritten",
                f"selectors on {_JOB_NAME_LABEL} now select {_JOBSET_NAME_LABEL} (the TrainJob's name)",
            )
        return rewritten

    # -- env and v1 host names ----------------------------------------------------------------------

    def env(self, env: list[Any], path: str, has_leader: bool) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        rewriter = self.rewriter
        for i, entry in enumerate(env):
            epath = f"{path}[{i}]"
            if not isinstance(entry, dict) or not entry.get("name"):
                self.report(Severity.BLOCKER, epath, "invalid-value", f"env entry {entry!r} has no name")
                continue
            name = str(entry["name"])
            if name in self.reserved_env:
                self.report(
                    Severity.WARNING,
                    epath,
                    "reserved-env",
                    f"{name} is reserved by Trainer v2 (its {self.framework} policy injects it from numNodes "
                    "and the processes per node), not copied",
                )
                continue
            if has_leader and name in self.operator_env:
                self.report(
                    Severity.WARNING,
                    epath,
                    "v1-env-overridden",
                    f"{name} is set by the v1 operator over the user's value; not copied (v2 values are "
                    "injected where the entrypoint needs them)",
                )
                continue
            entry = dict(entry)
            if isinstance(entry.get("value"), str) and rewriter is not None:
                entry["value"] = self.rewrite_hosts(entry["value"], f"{epath}.value", rewriter)
            field_path = ((entry.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            if isinstance(field_path, str) and V1_LABEL_PREFIX in field_path:
                entry = self.rewrite_field_ref(
                    entry, field_path, f"{epath}.valueFrom.fieldRef.fieldPath", has_leader
                )
            if name in out:
                self.report(
                    Severity.WARNING,
                    epath,
                    "env-duplicate",
                    f"{name} is set more than once; the last value wins (as in Kubernetes): trainer.env is "
                    "keyed by name",
                )
                del out[name]
            out[name] = entry
        return list(out.values())

    def rewrite_field_ref(
        self, entry: dict[str, Any], field_path: str, path: str, has_leader: bool
    ) -> dict[str, Any]:
        if _REPLICA_INDEX_LABEL in field_path and not has_leader:
            new = f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"
            self.report(
                Severity.INFO,
                path,
                "v1-reference-rewritten",
                f"{field_path} rewritten to {new} (a Worker-only job's replica index is the node index)",
            )
        elif _JOB_NAME_LABEL in field_path:
            new = field_path.replace(_JOB_NAME_LABEL, _JOBSET_NAME_LABEL)
            self.report(Severity.INFO, path, "v1-reference-rewritten", f"{field_path} rewritten to {new}")
        else:
            self.report(
                Severity.BLOCKER,
                path,
                "v1-reference",
                f"{field_path} refers to a v1-only pod label; v2 pods do not carry it"
                + (
                    " and a Master+Worker replica index is not the node index (use RANK / PET_NODE_RANK)"
                    if _REPLICA_INDEX_LABEL in field_path
                    else ""
                ),
            )
            return entry
        value_from = dict(entry["valueFrom"])
        value_from["fieldRef"] = {**value_from["fieldRef"], "fieldPath": new}
        return {**entry, "valueFrom": value_from}

    def rewrite_container(self, container: Any, path: str) -> Any:
        """A sidecar or init container for the derived runtime, with v1 host names rewritten."""
        if not isinstance(container, dict) or self.rewriter is None:
            return container
        out = dict(container)
        for key in ("command", "args"):
            if isinstance(out.get(key), list):
                out[key] = self.rewrite_hosts(out[key], f"{path}.{key}", self.rewriter)
        if isinstance(out.get("env"), list):
            out["env"] = [
                {**e, "value": self.rewrite_hosts(e["value"], f"{path}.env[{i}].value", self.rewriter)}
                if isinstance(e, dict) and isinstance(e.get("value"), str)
                else e
                for i, e in enumerate(out["env"])
            ]
        return out

    def rewrite_hosts(self, value: Any, path: str, rewriter: HostRewriter) -> Any:
        if isinstance(value, list):
            return [self.rewrite_hosts(v, f"{path}[{i}]", rewriter) for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        new, changed, unsafe = rewriter.rewrite(value)
        ranked, ranks = hostname_ranks(new)
        if ranks and rewriter.has_master:
            self.report(
                Severity.BLOCKER,
                path,
                "v1-hostname-rank",
                "takes a rank from the v1 pod host name's index (<job>-worker-<i>), which v2 pod names do "
                "not end in, and with a Master the worker index is not the node rank: use $PET_NODE_RANK "
                "(the node rank, 0 on the node playing the Master)",
            )
        elif ranks:
            new = ranked
            self.report(
                Severity.INFO,
                path,
                "v1-hostname-rank",
                f"a rank taken from the v1 pod host name's index now reads {COMPLETION_INDEX}, the node's "
                "index (v2 pod names do not end in it)",
            )
        if changed:
            self.report(
                Severity.INFO,
                path,
                "v1-hostname-rewritten",
                f"v1 host names of {rewriter.job} rewritten to v2 names ({rewriter.trainjob}-node-0-<i>)",
            )
        if unsafe:
            self.report(
                Severity.BLOCKER,
                path,
                "v1-hostname",
                f"refers to a v1 host name of {rewriter.job} with a computed or unknown index; rewrite it to "
                f"{rewriter.trainjob}-node-0-<index>.{rewriter.trainjob} (index 0 is the v1 master)",
            )
        return new

    # -- run policy ---------------------------------------------------------------------------------

    def run_policy(
        self, policy: v1.RunPolicy, body: dict[str, Any], jobset_annotations: dict[str, str]
    ) -> None:
        path = "spec.runPolicy"
        self.unknown(policy.unknown_fields(), path)
        if policy.suspend is not None:
            if isinstance(policy.suspend, bool):
                body["suspend"] = policy.suspend
            elif is_placeholder(policy.suspend) and self.options.template:
                body["suspend"] = policy.suspend
                self.report(
                    Severity.INFO, f"{path}.suspend", "placeholder-carried", "suspend placeholder carried"
                )
            else:
                self.report(
                    Severity.BLOCKER, f"{path}.suspend", "invalid-value", f"suspend is {policy.suspend!r}"
                )
        if policy.active_deadline_seconds is not None:
            apath = f"{path}.activeDeadlineSeconds"
            if self.api is TrainerAPI.V2_2:
                value = self.integer(policy.active_deadline_seconds, apath, "activeDeadlineSeconds", 1)
                if value is not None:
                    body["activeDeadlineSeconds"] = value
            else:
                self.report(
                    Severity.WARNING,
                    apath,
                    "active-deadline",
                    f"TrainJob {self.api} has no activeDeadlineSeconds (added in v2.2); the job runs without "
                    "a deadline",
                )
        if policy.managed_by is not None:
            mpath = f"{path}.managedBy"
            if policy.managed_by == V1_MANAGER:
                self.report(
                    Severity.INFO,
                    mpath,
                    "managed-by",
                    f"managedBy {V1_MANAGER} maps to the default trainer.kubeflow.org/trainjob-controller",
                )
            elif policy.managed_by in V2_MANAGERS:
                body["managedBy"] = policy.managed_by
            else:
                self.report(
                    Severity.BLOCKER,
                    mpath,
                    "managed-by",
                    f"managedBy {policy.managed_by!r} has no v2 equivalent "
                    f"(allowed: {', '.join(V2_MANAGERS)})",
                )
        clean = policy.clean_pod_policy
        if clean is not None:
            self.report(
                Severity.INFO if clean == "None" else Severity.WARNING,
                f"{path}.cleanPodPolicy",
                "clean-pod-policy",
                "v2 keeps the pods of finished jobs until the TrainJob is deleted"
                + (
                    ""
                    if clean == "None"
                    else f"; cleanPodPolicy {clean} is not applied, delete finished TrainJobs"
                ),
            )
        if policy.ttl_seconds_after_finished is not None:
            self.report(
                Severity.WARNING,
                f"{path}.ttlSecondsAfterFinished",
                "ttl-after-finished",
                "TrainJob has no ttlSecondsAfterFinished; finished TrainJobs stay until deleted (delete them "
                "with a CronJob or the runtime)",
            )
        if policy.backoff_limit is not None:
            self.report(
                Severity.WARNING,
                f"{path}.backoffLimit",
                "backoff-limit",
                f"TrainJob has no backoffLimit ({policy.backoff_limit}); retries follow the runtime's Job "
                "backoffLimit / JobSet failurePolicy. Set them in a custom runtime",
            )
        if policy.scheduling_policy is not None:
            self.scheduling_policy(policy.scheduling_policy, f"{path}.schedulingPolicy", jobset_annotations)

    def scheduling_policy(
        self, policy: v1.SchedulingPolicy, path: str, jobset_annotations: dict[str, str]
    ) -> None:
        self.unknown(policy.unknown_fields(), path)
        if policy.queue and self.api is TrainerAPI.V2_0:
            self.report(
                Severity.WARNING,
                f"{path}.queue",
                "volcano-queue",
                f"Trainer v2.0 has no Volcano integration; queue {policy.queue} is not applied (Kueue "
                "queues use the kueue.x-k8s.io/queue-name label, which is kept)",
            )
        elif policy.queue:
            jobset_annotations[VOLCANO_QUEUE_ANNOTATION] = policy.queue
            self.report(
                Severity.INFO,
                f"{path}.queue",
                "volcano-queue",
                f"queue {policy.queue} is carried as the JobSet annotation {VOLCANO_QUEUE_ANNOTATION} (Kueue "
                "queues use the kueue.x-k8s.io/queue-name label, which is kept)",
            )
        for key, value in (
            ("minAvailable", policy.min_available),
            ("minResources", policy.min_resources),
            ("scheduleTimeoutSeconds", policy.schedule_timeout_seconds),
        ):
            if value is not None:
                self.report(
                    Severity.WARNING,
                    f"{path}.{key}",
                    "gang-scheduling",
                    f"schedulingPolicy.{key} has no TrainJob field: gang scheduling is configured on the "
                    "runtime (podGroupPolicy; minMember is always all nodes)",
                )
        if policy.priority_class:
            lost = (
                f"priorityClass {policy.priority_class} has no TrainJob field: pods run without it (with "
                "Kueue, the kueue.x-k8s.io/priority-class label sets the workload's priority)"
            )
            if "priorityClassName" in self.runtime_pod:
                self.report(
                    Severity.WARNING,
                    f"{path}.priorityClass",
                    "priority-class",
                    f"{lost}; the pod template's priorityClassName {self.runtime_pod['priorityClassName']} "
                    "applies instead",
                )
            else:
                self.runtime_pod["priorityClassName"] = policy.priority_class
                self.need(
                    Severity.WARNING,
                    f"{path}.priorityClass",
                    "priority-class",
                    lost,
                    "the priority class is set on the derived runtime's pods",
                )

    # -- the TrainJob -------------------------------------------------------------------------------

    def check_limits(
        self, trainer: dict[str, Any], pod_patch: dict[str, Any], cpath: str, ppath: str
    ) -> None:
        """The TrainJob CRD caps list lengths that v1 pods never capped."""
        for fields, path, limits in (
            (trainer, cpath, TRAINER_LIST_LIMITS),
            (pod_patch, ppath, POD_LIST_LIMITS),
        ):
            for key, limit in limits.items():
                value = fields.get(key)
                if isinstance(value, list) and len(value) > limit:
                    self.report(
                        Severity.BLOCKER,
                        join(path, key),
                        "too-many-items",
                        f"{len(value)} entries in {key}; a TrainJob allows at most {limit}. Move them into a "
                        "script, a ConfigMap (envFrom in a runtime) or a custom runtime",
                    )

    def finish(self, trainer: dict[str, Any], node: Node, run_policy: v1.RunPolicy | None) -> Conversion:
        """The TrainJob (and derived runtime) running ``trainer`` on ``node``'s pod template."""
        trainer["env"] = node.env
        self.check_limits(trainer, node.pod_patch, node.path, node.pod_path)
        body: dict[str, Any] = {}
        jobset_annotations: dict[str, str] = {}
        if run_policy is not None:
            self.run_policy(run_policy, body, jobset_annotations)
        if run_policy is None or run_policy.backoff_limit is None:
            self.report(
                Severity.INFO,
                "spec.runPolicy.backoffLimit",
                "backoff-limit",
                "the Training Operator retried failed pods without limit (no backoffLimit); under v2 a "
                "node's Job fails after the runtime's Job backoffLimit (Kubernetes' default 6) and fails the "
                "TrainJob",
            )

        runtime_name, runtime_kind, rule_resource = (
            select_runtime(self.options.runtime_rules, node.accelerators)
            if self.runtime_name is None
            else (self.runtime_name, CLUSTER_TRAINING_RUNTIME.kind, None)
        )
        if rule_resource is not None:
            self.report(
                Severity.INFO,
                f"{node.path}.resources",
                "runtime-selected",
                f"runtime {runtime_kind}/{runtime_name} selected by the rule for {rule_resource}",
            )
        runtime_ref: dict[str, Any] = {
            "name": runtime_name,
            "apiGroup": TRAINING_RUNTIME.group,
            "kind": runtime_kind,
        }

        if VOLCANO_QUEUE_ANNOTATION in jobset_annotations:
            self.runtime_policy["podGroupPolicy"] = {"volcano": {}}
            self.need(
                Severity.WARNING,
                "spec.runPolicy.schedulingPolicy.queue",
                "volcano-runtime",
                f"the Volcano queue only applies when runtime {runtime_name} has podGroupPolicy.volcano",
                "the derived runtime has podGroupPolicy.volcano, so the Volcano queue applies",
            )
        runtime: dict[str, Any] | None = None
        if self.derive():
            runtime = derived_runtime(
                namespace=self.namespace,
                base_runtime=runtime_name,
                pod_metadata=self.runtime_pod_metadata,
                pod_spec=self.runtime_pod,
                node_container=self.runtime_container,
                policy=self.runtime_policy,
                ml_policy=self.ml_policy,
                framework=self.framework,
            )
            runtime_ref = {
                "name": runtime["metadata"]["name"],
                "apiGroup": TRAINING_RUNTIME.group,
                "kind": TRAINING_RUNTIME.kind,
            }

        spec_out: dict[str, Any] = {"runtimeRef": runtime_ref, "trainer": trainer}
        spec_out.update(body)
        spec_out.update(
            pod_overrides(
                self.api,
                pod_metadata=node.pod_metadata,
                pod_spec=node.pod_patch,
                container=node.container_patch,
                jobset_annotations=jobset_annotations,
            )
        )
        trainjob = {**TRAINJOB.type_meta, "metadata": self.metadata, "spec": spec_out}
        # the output shares no mutable part with the source: callers may edit either freely
        return self.result(clone(trainjob), clone(runtime) if runtime is not None else None)

    def derive(self) -> bool:
        """Whether a runtime is derived (some setting only it can carry would otherwise be lost with a
        warning or a blocker, and the options allow it), with every need reported accordingly."""
        derive = self.options.derived_runtime and any(n.severity is not Severity.INFO for n in self.needs)
        for need in self.needs:
            if derive:
                self.report(Severity.INFO, need.path, "derived-runtime", need.carried)
            elif need.severity is Severity.INFO or self.options.derived_runtime:
                self.report(need.severity, need.path, need.code, need.lost)
            else:
                self.report(
                    need.severity,
                    need.path,
                    need.code,
                    f"{need.lost}; a derived TrainingRuntime would carry it (drop --no-derived-runtime)",
                )
        return derive


def clone(value: Any) -> Any:
    """A deep copy of a JSON-like value (several times faster than copy.deepcopy)."""
    if isinstance(value, dict):
        return {key: clone(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clone(item) for item in value]
    return value


def _only_v1_port(ports: Any, name: str) -> bool:
    return (
        isinstance(ports, list)
        and len(ports) == 1
        and isinstance(ports[0], dict)
        and ports[0].get("name") == name
    )
