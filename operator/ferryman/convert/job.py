"""Convert one Training Operator v1 PyTorchJob into a Kubeflow Trainer v2 TrainJob (pure, deterministic).

Every source fact ends up in the TrainJob, in the derived TrainingRuntime (``emit_runtime``) or in a
finding. The README section "Converting manifests" describes the mapping and the launcher strategies.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ferryman.api import pytorchjob as v1
from ferryman.api import trainjob as v2
from ferryman.api.trainer import LauncherStrategy, TrainerAPI
from ferryman.convert.findings import Finding, Severity
from ferryman.convert.launcher import (
    COMPLETION_INDEX_ANNOTATION,
    RESERVED_ENV,
    TORCHRUN_WRAP,
    V1_ENV,
    HostRewriter,
    Launch,
    classify,
    v1_env,
    v1_env_references,
)
from ferryman.convert.metadata import clean_metadata, source_ref
from ferryman.convert.names import shorten, trainjob_name
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
_NPROC_WORDS = ("auto", "cpu", "gpu")
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


class ConversionError(ValueError):
    """The input is not a PyTorchJob (nor a TrainJob) at all."""


def convert_pytorchjob(obj: dict[str, Any], options: ConvertOptions | None = None) -> Conversion:
    """Convert a PyTorchJob manifest (a parsed YAML/JSON object) into a TrainJob of ``options.trainer_api``.

    A TrainJob passes through unchanged. Raises :class:`ConversionError` only for input that is neither.
    """
    options = options or ConvertOptions()
    if not isinstance(obj, dict):
        raise ConversionError(f"expected a Kubernetes object (a mapping), got {type(obj).__name__}")
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    metadata = _mapping(obj.get("metadata"))
    name = str(metadata.get("name") or metadata.get("generateName") or "<unnamed>")
    group = str(api_version).split("/", 1)[0] if isinstance(api_version, str) and "/" in api_version else ""
    if kind == v2.KIND and group == v2.GROUP:
        return Conversion(
            source_name=name,
            source_namespace=metadata.get("namespace"),
            trainjob=obj,
            findings=[
                Finding(
                    severity=Severity.INFO,
                    path="kind",
                    code="already-trainjob",
                    message="already a TrainJob; passed through unchanged",
                )
            ],
        )
    if kind != v1.KIND or group != v1.GROUP:
        raise ConversionError(
            f"{kind or '<no kind>'} {name!r} (apiVersion {api_version!r}) is not a PyTorchJob: "
            f"field 'kind' must be {v1.KIND!r} with apiVersion {v1.GROUP}/v1"
        )
    return _Converter(obj, options).convert()


def _join(path: str, key: str) -> str:
    """Field paths are dotted with raw keys and ``[i]`` list indexes: ``spec.x.containers[0].env``."""
    return f"{path}.{key}" if path else key


def _env_value_texts(env: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("value")) for e in env if isinstance(e, dict) and e.get("value") is not None]


class _Converter:
    def __init__(self, obj: dict[str, Any], options: ConvertOptions) -> None:
        self.obj = obj
        self.options = options
        self.api = TrainerAPI(options.trainer_api)
        self.launcher = LauncherStrategy(options.launcher)
        self.findings: list[Finding] = []
        metadata = _mapping(obj.get("metadata"))
        self.source_metadata: dict[str, Any] = metadata
        self.source_name = str(metadata.get("name") or metadata.get("generateName") or "")
        self.namespace: str | None = metadata.get("namespace")
        self.runtime_pod: dict[str, Any] = {}  # pod settings only a derived runtime can carry
        self.runtime_pod_metadata: dict[str, Any] = {}
        self.runtime_container: dict[str, Any] = {}
        self.rewriter: HostRewriter | None = None

    # -- findings -----------------------------------------------------------------------------------

    def report(self, severity: Severity, path: str, code: str, message: str) -> None:
        self.findings.append(Finding(severity=severity, path=path, code=code, message=message))

    def unknown(self, fields: dict[str, Any], path: str) -> None:
        for key in fields:
            self.report(
                Severity.WARNING,
                _join(path, key),
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

    # -- the conversion -----------------------------------------------------------------------------

    def convert(self) -> Conversion:
        try:
            job = v1.PyTorchJob.model_validate(self.obj)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = ".".join(str(p) for p in err["loc"])
                self.report(
                    Severity.BLOCKER,
                    loc,
                    "invalid-field",
                    f"{loc}: {err['msg']} (got {repr(err.get('input'))[:80]})",
                )
            return self.result(None)
        self.unknown({k: v for k, v in job.unknown_fields().items()}, "")
        if job.api_version != f"{v1.GROUP}/v1":
            self.report(
                Severity.WARNING,
                "apiVersion",
                "api-version",
                f"{job.api_version} is not kubeflow.org/v1; converted with v1 semantics",
            )
        if job.status is not None:
            self.report(Severity.INFO, "status", "status-dropped", "status of the source is not copied")

        name, finding = trainjob_name(self.source_name) if self.source_name else ("", None)
        if finding:
            self.findings.append(finding)
        if not self.source_name:
            self.report(
                Severity.BLOCKER, "metadata.name", "name-missing", "the PyTorchJob has no name; give it one"
            )
        self.name = name
        metadata, dropped = clean_metadata(self.source_metadata, name)
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

        spec = job.spec
        self.unknown(spec.unknown_fields(), "spec")
        trainer: dict[str, Any] = {}
        body: dict[str, Any] = {}
        jobset_annotations: dict[str, str] = {}

        replicas = self.replicas(job)
        if replicas is None:
            return self.result(None)
        primary_key, primary, has_master, num_nodes = replicas
        base = f"spec.pytorchReplicaSpecs.{primary_key}"
        template = primary.template if isinstance(primary.template, dict) else {}
        pod_spec = _mapping(template.get("spec"))
        if not isinstance(template.get("spec"), dict):
            self.report(
                Severity.BLOCKER,
                f"{base}.template.spec",
                "invalid-field",
                f"the pod template's spec is {template.get('spec')!r}, not a pod spec",
            )

        if spec.elastic_policy is not None:
            elastic = spec.elastic_policy
            self.report(
                Severity.BLOCKER,
                "spec.elasticPolicy",
                "elastic-policy",
                f"elastic training (minReplicas {elastic.min_replicas}, maxReplicas {elastic.max_replicas}, "
                f"rdzvBackend {elastic.rdzv_backend}) is not supported by Trainer v2; the TrainJob would run "
                f"a fixed {num_nodes} nodes. Remove elasticPolicy, or use --force to accept a fixed size",
            )

        pod_metadata = self.pod_metadata(template, f"{base}.template")
        self.rewriter = HostRewriter(self.source_name, name, has_master) if self.source_name else None
        self.typed(v1.PodSpecView, pod_spec, f"{base}.template.spec")
        pod_patch = self.pod_spec(pod_spec, f"{base}.template.spec")
        container_index, container = self.pytorch_container(pod_spec, f"{base}.template.spec")
        cpath = f"{base}.template.spec.containers[{container_index}]"
        view = self.typed(v1.ContainerView, container, cpath)
        container_patch, trainer_container = self.container(container, view, cpath)

        if num_nodes is not None:
            trainer["numNodes"] = num_nodes
        for key in ("image", "command", "args"):
            if trainer_container.get(key) is not None:
                trainer[key] = trainer_container[key]
        if trainer_container.get("resources"):
            trainer["resourcesPerNode"] = trainer_container["resources"]
        requested = accelerators(trainer_container.get("resources"))

        rewriter = self.rewriter
        env = self.env(trainer_container.get("env") or [], f"{cpath}.env", has_master, rewriter)
        if rewriter:
            for key in ("command", "args"):
                if key in trainer:
                    trainer[key] = self.rewrite_hosts(trainer[key], f"{cpath}.{key}", rewriter)

        nproc = self.nproc(spec.nproc_per_node, requested)
        env, trainer = self.distributed(trainer, env, nproc, num_nodes, has_master, spec, cpath)
        if nproc is not None and "numProcPerNode" not in trainer:
            trainer["numProcPerNode"] = nproc
        if not any(e.get("name") == "PYTHONUNBUFFERED" for e in env):
            env.append({"name": "PYTHONUNBUFFERED", "value": "1"})  # v1 set it in every container
        trainer["env"] = env
        self.check_limits(trainer, pod_patch, cpath, f"{base}.template.spec")

        if spec.run_policy is not None:
            self.run_policy(spec.run_policy, body, jobset_annotations)

        runtime_name, runtime_kind, rule_resource = select_runtime(self.options.runtime_rules, requested)
        if rule_resource is not None:
            self.report(
                Severity.INFO,
                f"{cpath}.resources",
                "runtime-selected",
                f"runtime {runtime_kind}/{runtime_name} selected by the rule for {rule_resource}",
            )
        runtime_ref: dict[str, Any] = {"name": runtime_name, "apiGroup": v2.GROUP, "kind": runtime_kind}

        runtime: dict[str, Any] | None = None
        volcano = VOLCANO_QUEUE_ANNOTATION in jobset_annotations
        if self.options.emit_runtime and (
            self.runtime_pod or self.runtime_pod_metadata or self.runtime_container or volcano
        ):
            runtime = self.build_runtime(runtime_name, trainer_container, volcano)
            runtime_ref = {
                "name": runtime["metadata"]["name"],
                "apiGroup": v2.GROUP,
                "kind": "TrainingRuntime",
            }
        elif volcano:
            self.report(
                Severity.WARNING,
                "spec.runPolicy.schedulingPolicy.queue",
                "volcano-runtime",
                f"the Volcano queue only applies when runtime {runtime_name} has podGroupPolicy.volcano; use "
                "such a runtime or convert with --emit-runtime",
            )

        spec_out: dict[str, Any] = {"runtimeRef": runtime_ref, "trainer": trainer}
        spec_out.update(body)
        spec_out.update(
            pod_overrides(
                self.api,
                pod_metadata=pod_metadata,
                pod_spec=pod_patch,
                container=container_patch,
                jobset_annotations=jobset_annotations,
            )
        )
        trainjob = {"apiVersion": v2.API_VERSION, "kind": v2.KIND, "metadata": metadata, "spec": spec_out}
        # the output shares no mutable part with the source: callers may edit either freely
        return self.result(_clone(trainjob), _clone(runtime) if runtime is not None else None)

    # -- replicas -----------------------------------------------------------------------------------

    def replicas(self, job: v1.PyTorchJob) -> tuple[str, v1.ReplicaSpec, bool, int | str | None] | None:
        """(primary replica key, its spec, whether a Master exists, numNodes) or None when unconvertible."""
        specs = job.spec.pytorch_replica_specs
        for key in specs:
            if key.lower() not in ("master", "worker"):
                self.report(
                    Severity.BLOCKER,
                    _join("spec.pytorchReplicaSpecs", key),
                    "unknown-replica-type",
                    f"replica type {key!r} is not Master or Worker; v1 rejects it and v2 has no equivalent",
                )
        master, worker = job.replica(v1.MASTER), job.replica(v1.WORKER)
        if master is None and worker is None:
            self.report(
                Severity.BLOCKER,
                "spec.pytorchReplicaSpecs",
                "no-replicas",
                "the job has neither a Master nor a Worker replica spec",
            )
            return None
        total: int | str | None = 0
        terms: list[int | str | None] = []
        for entry in (master, worker):
            if entry is None:
                continue
            key, replica = entry
            path = f"spec.pytorchReplicaSpecs.{key}"
            self.unknown(replica.unknown_fields(), path)
            if entry is worker or worker is None or replica.restart_policy != worker[1].restart_policy:
                # a Master policy equal to the Worker's is the nodes' policy: reported once, as the Worker's
                self.restart_policy(
                    replica.restart_policy, f"{path}.restartPolicy", entry is worker or worker is None
                )
            count = 1 if replica.replicas is None else replica.replicas
            terms.append(self.integer(count, f"{path}.replicas", f"{key}.replicas"))
        if any(t is None for t in terms):
            total = None
        elif all(isinstance(t, int) for t in terms):
            total = sum(t for t in terms if isinstance(t, int))
        else:
            placeholders = [t for t in terms if isinstance(t, str)]
            rest = [t for t in terms if isinstance(t, int)]
            if len(terms) == 1:
                total = placeholders[0]
            else:
                self.report(
                    Severity.BLOCKER,
                    "spec.pytorchReplicaSpecs",
                    "placeholder-arithmetic",
                    f"numNodes would be {' + '.join(str(t) for t in terms)}, which one placeholder cannot "
                    f"express; substitute {', '.join(placeholders)} first or make it a Worker-only job"
                    + (f" (other replicas: {sum(rest)})" if rest else ""),
                )
                total = None
        if master is not None and worker is not None:
            self.compare_templates(master, worker)
        primary_key, primary = worker if worker is not None else master  # type: ignore[misc]
        return primary_key, primary, master is not None, total

    def restart_policy(self, policy: str | None, path: str, primary: bool) -> None:
        """``primary``: the replica whose template the TrainJob's nodes use."""
        if policy in (None, "OnFailure"):
            return  # v1's PyTorch default; JobSet defaults pods to OnFailure as well
        if policy == "Never" and self.options.emit_runtime and primary:
            self.runtime_pod["restartPolicy"] = "Never"
            self.report(
                Severity.INFO, path, "restart-policy", "restartPolicy Never is set in the derived runtime"
            )
            return
        remedy = {
            "Never": "v2 pods restart in place on failure (OnFailure); use --emit-runtime to keep Never",
            "ExitCode": "v2 has no exit-code based retry; failed pods restart in place (OnFailure)",
            "Always": "Job pods cannot use Always; v2 pods restart on failure only (OnFailure)",
        }.get(str(policy), f"{policy!r} is not a v1 restart policy; v2 uses OnFailure")
        self.report(Severity.WARNING, path, "restart-policy", f"restartPolicy {policy}: {remedy}")

    def compare_templates(
        self, master: tuple[str, v1.ReplicaSpec], worker: tuple[str, v1.ReplicaSpec]
    ) -> None:
        (mkey, mspec), (_, wspec) = master, worker
        if mspec.restart_policy != wspec.restart_policy and (mspec.restart_policy or "OnFailure") != (
            wspec.restart_policy or "OnFailure"
        ):
            self.report(
                Severity.WARNING,
                f"spec.pytorchReplicaSpecs.{mkey}.restartPolicy",
                "replica-templates-differ",
                f"Master restartPolicy {mspec.restart_policy} differs from Worker's; all v2 nodes share one",
            )
        differences: list[str] = []
        _diff(
            _template_for_compare(mspec.template),
            _template_for_compare(wspec.template),
            "template",
            differences,
        )
        for path in differences:
            # pod labels and annotations mostly name the role; everything else changes how node 0 runs
            metadata_only = path.startswith("template.metadata")
            self.report(
                Severity.WARNING if metadata_only else Severity.BLOCKER,
                f"spec.pytorchReplicaSpecs.{mkey}.{path}",
                "replica-templates-differ",
                f"Master and Worker templates differ at {path}; all TrainJob nodes share one pod template "
                "(the Worker's was used), and a runtime cannot give node 0 its own template either. Make "
                "the templates identical, e.g. move per-role logic into the entrypoint using RANK",
            )

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
                        _join(path, key),
                        "too-many-items",
                        f"{len(value)} entries in {key}; a TrainJob allows at most {limit}. Move them into a "
                        "script, a ConfigMap (envFrom in a runtime) or a custom runtime",
                    )

    # -- pod ----------------------------------------------------------------------------------------

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
                    if value:
                        out[key] = dict(value)
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
        if self.options.emit_runtime:
            self.runtime_pod_metadata = out
            self.report(
                Severity.INFO,
                f"{path}.metadata",
                "pod-metadata-runtime",
                "pod labels and annotations are set in the derived runtime (v2.0 cannot patch them)",
            )
        else:
            self.report(
                Severity.WARNING,
                f"{path}.metadata",
                "pod-metadata",
                "TrainJob v2.0 cannot set pod labels or annotations (spec.labels reach only the JobSet and "
                "Jobs); selectors, mesh injection and monitoring keyed on them change. Use --emit-runtime",
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
            fpath = _join(path, key)
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
        flavour = f"TrainJob {self.api}"
        if self.options.emit_runtime and key not in NOT_CARRIED_BY_RUNTIME:
            if key == "initContainers" and isinstance(value, list):
                value = [self.rewrite_container(c, f"{path}[{i}]") for i, c in enumerate(value)]
            elif key == "affinity":
                value = self.v1_selectors(value, path)
            self.runtime_pod[key] = value
            self.report(Severity.INFO, path, "runtime-pod-field", f"pod {key} is set in the derived runtime")
            return
        remedy = (
            ""
            if severity is Severity.INFO
            else "; use a runtime that sets it, or convert with --emit-runtime"
        )
        self.report(severity, path, "unpatchable-pod-field", f"{flavour} cannot set pod {key}: {why}{remedy}")

    def pytorch_container(self, pod_spec: dict[str, Any], path: str) -> tuple[int, dict[str, Any]]:
        containers = pod_spec.get("containers")
        if not isinstance(containers, list):
            containers = []  # typed() reported it
        index = next(
            (
                i
                for i, c in enumerate(containers)
                if isinstance(c, dict) and c.get("name") == v1.PYTORCH_CONTAINER
            ),
            None,
        )
        if index is None:
            self.report(
                Severity.BLOCKER,
                f"{path}.containers",
                "no-pytorch-container",
                "no container is named 'pytorch' (v1 requires one); the first container was used",
            )
            index = 0
        sidecars = [c for i, c in enumerate(containers) if i != index]
        if sidecars:
            names = ", ".join(str(c.get("name")) for c in sidecars if isinstance(c, dict))
            if self.options.emit_runtime:
                self.runtime_pod["containers"] = [
                    self.rewrite_container(c, f"{path}.containers[{i}]")
                    for i, c in enumerate(containers)
                    if i != index
                ]
                self.report(
                    Severity.INFO,
                    f"{path}.containers",
                    "sidecars-runtime",
                    f"sidecars {names} run from the derived runtime",
                )
            else:
                for i, c in enumerate(containers):
                    if i != index:
                        self.report(
                            Severity.BLOCKER,
                            f"{path}.containers[{i}]",
                            "sidecar",
                            f"container {c.get('name') if isinstance(c, dict) else c!r} cannot be added by a "
                            "TrainJob (patches only modify runtime containers); use --emit-runtime",
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
            fpath = _join(path, key)
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
                elif self.options.emit_runtime:
                    self.runtime_container[key] = value
                    self.report(
                        Severity.INFO,
                        fpath,
                        "runtime-container-field",
                        "volumeMounts mount one volume more than once; they are set in the derived runtime "
                        "(a TrainJob keys mounts by volume name)",
                    )
                else:
                    self.report(
                        Severity.BLOCKER,
                        fpath,
                        "duplicate-name",
                        "volumeMounts mount one volume more than once (e.g. two subPaths); a TrainJob keys "
                        "mounts by volume name and cannot carry that. Convert with --emit-runtime",
                    )
            elif key in patchable:
                patch[key] = value
            elif key == "ports" and _only_v1_port(value):
                self.report(
                    Severity.INFO,
                    fpath,
                    "v1-port",
                    f"the v1 rendezvous port {v1.DEFAULT_PORT_NAME} is replaced by the runtime's port 29500",
                )
            else:
                severity, why = UNPATCHABLE_CONTAINER_FIELDS.get(
                    key, (Severity.BLOCKER, "the TrainJob cannot set it on the node container")
                )
                if self.options.emit_runtime:
                    self.runtime_container[key] = value
                    self.report(
                        Severity.INFO,
                        fpath,
                        "runtime-container-field",
                        f"container {key} is set in the derived runtime",
                    )
                else:
                    remedy = "" if severity is Severity.INFO else "; convert with --emit-runtime to keep it"
                    self.report(
                        severity,
                        fpath,
                        "unpatchable-container-field",
                        f"TrainJob {self.api} cannot set {key} on the trainer container: {why}{remedy}",
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

    # -- env and distributed semantics --------------------------------------------------------------

    def env(
        self, env: list[Any], path: str, has_master: bool, rewriter: HostRewriter | None
    ) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for i, entry in enumerate(env):
            epath = f"{path}[{i}]"
            if not isinstance(entry, dict) or not entry.get("name"):
                self.report(Severity.BLOCKER, epath, "invalid-value", f"env entry {entry!r} has no name")
                continue
            name = str(entry["name"])
            if name in RESERVED_ENV:
                self.report(
                    Severity.WARNING,
                    epath,
                    "reserved-env",
                    f"{name} is reserved by Trainer v2 (it injects it from numNodes/numProcPerNode), not "
                    "copied; the webhook would reject it",
                )
                continue
            if has_master and name in V1_ENV:
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
                    entry, field_path, f"{epath}.valueFrom.fieldRef.fieldPath", has_master
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
        self, entry: dict[str, Any], field_path: str, path: str, has_master: bool
    ) -> dict[str, Any]:
        if _REPLICA_INDEX_LABEL in field_path and not has_master:
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

    def nproc(self, value: Any, requested: list[str]) -> int | str | None:
        path = "spec.nprocPerNode"
        if value is None:
            return None
        text = str(value).strip().lower() if isinstance(value, str) else None
        if text in _NPROC_WORDS:
            if self.api is not TrainerAPI.V2_2:
                return text
            if text == "cpu" and requested:
                self.report(
                    Severity.WARNING,
                    path,
                    "nproc-per-node",
                    "nprocPerNode 'cpu' cannot be expressed in TrainJob v2.2+; with GPUs requested v2 starts "
                    "one process per GPU. Set an integer nprocPerNode to keep a fixed count",
                )
            else:
                self.report(
                    Severity.INFO,
                    path,
                    "nproc-per-node",
                    f"nprocPerNode {text!r} is v2's default (auto: a process per GPU, else per CPU)",
                )
            return None
        minimum = 1
        return self.integer(value, path, "nprocPerNode", minimum)

    def distributed(
        self,
        trainer: dict[str, Any],
        env: list[dict[str, Any]],
        nproc: int | str | None,
        num_nodes: int | str | None,
        has_master: bool,
        spec: v1.PyTorchJobSpec,
        cpath: str,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Keep v1's distributed semantics: wrap in torchrun or inject the v1 variables (Master jobs only:
        v1 injects MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK only when a Master exists)."""
        if not has_master:
            return env, trainer
        entry = classify(trainer.get("command"), trainer.get("args"))
        referenced = v1_env_references([entry.text, *_env_value_texts(env)])
        wrap = entry.launch is Launch.PLAIN and self.launcher is LauncherStrategy.TORCHRUN
        per_node = nproc if isinstance(nproc, int) else 1
        if wrap:
            per_node = 1
        world: int | str | None = None
        if isinstance(num_nodes, int):
            world = num_nodes * per_node
        elif isinstance(num_nodes, str) and per_node == 1:
            world = num_nodes

        if entry.launch is Launch.TORCH:
            inject = referenced
            reason = "torchrun reads v2's PET_* variables; the command refers to"
        elif entry.launch is Launch.OTHER:
            inject = list(V1_ENV)
            reason = f"{entry.launcher} may read the v1 variables; injected"
        elif wrap:
            inject = referenced
            reason = "the command refers to"
            trainer["command"] = [*TORCHRUN_WRAP, *trainer["command"]]
            trainer["numProcPerNode"] = 1
            self.report(
                Severity.INFO,
                f"{cpath}.command",
                "torchrun-wrapped",
                "the entrypoint is not started by a distributed launcher; it is wrapped in "
                "'torchrun --no-python' with numProcPerNode 1, so each node runs one process with RANK, "
                "WORLD_SIZE, MASTER_ADDR and MASTER_PORT set as in v1",
            )
            if spec.nproc_per_node is not None:
                self.report(
                    Severity.INFO,
                    "spec.nprocPerNode",
                    "nproc-per-node",
                    "v1 started one process per pod for a non-launcher entrypoint; numProcPerNode is 1",
                )
        else:
            inject = list(V1_ENV)
            if entry.launch is Launch.OPAQUE:
                self.report(
                    Severity.WARNING,
                    f"{cpath}.command",
                    "launcher-unknown",
                    "the entrypoint (image default or a script file) cannot be inspected; MASTER_ADDR, "
                    "MASTER_PORT, WORLD_SIZE and RANK are injected as v1 did. If it starts torchrun itself, "
                    "nothing else is needed; otherwise check it initialises torch.distributed from them",
                )
            reason = "the v1 variables are injected (launcher strategy 'env'):"
        if not inject:
            return env, trainer
        if world is None:
            self.report(
                Severity.BLOCKER,
                "spec.pytorchReplicaSpecs",
                "world-size",
                "WORLD_SIZE cannot be computed from a placeholder node count times nprocPerNode; substitute",
            )
            world = 0
        injected = [e for e in v1_env(self.name, world) if e["name"] in inject]
        self.report(
            Severity.INFO,
            f"{cpath}.env",
            "v1-env-injected",
            f"{reason} {', '.join(e['name'] for e in injected)} (node 0 is the v1 master; RANK is the Job "
            "completion index)",
        )
        names = {e["name"] for e in injected}
        return [*[e for e in env if e.get("name") not in names], *injected], trainer

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
            if self.options.emit_runtime and "priorityClassName" not in self.runtime_pod:
                self.runtime_pod["priorityClassName"] = policy.priority_class
                self.report(
                    Severity.INFO,
                    f"{path}.priorityClass",
                    "priority-class",
                    "the priority class is set on the derived runtime's pods",
                )
            else:
                self.report(
                    Severity.WARNING,
                    f"{path}.priorityClass",
                    "priority-class",
                    f"priorityClass {policy.priority_class} has no TrainJob field: set priorityClassName in "
                    "runtime (--emit-runtime) or use the kueue.x-k8s.io/priority-class label with Kueue",
                )

    # -- derived runtime ----------------------------------------------------------------------------

    def build_runtime(self, base: str, trainer_container: dict[str, Any], volcano: bool) -> dict[str, Any]:
        node = {**self.runtime_container}
        if trainer_container.get("image"):
            node["image"] = trainer_container["image"]
        return derived_runtime(
            name=shorten(f"{self.name}-runtime", 63),
            namespace=self.namespace,
            base_runtime=base,
            source=source_ref(self.source_metadata),
            pod_metadata=self.runtime_pod_metadata,
            pod_spec=self.runtime_pod,
            node_container=node,
            volcano=volcano,
        )


def _clone(value: Any) -> Any:
    """A deep copy of a JSON-like value (several times faster than copy.deepcopy)."""
    if isinstance(value, dict):
        return {key: _clone(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clone(item) for item in value]
    return value


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _only_v1_port(ports: Any) -> bool:
    return (
        isinstance(ports, list)
        and len(ports) == 1
        and isinstance(ports[0], dict)
        and ports[0].get("name") == v1.DEFAULT_PORT_NAME
    )


def _template_for_compare(template: dict[str, Any]) -> dict[str, Any]:
    """A pod template without what v1 itself sets per replica (creationTimestamp: null in dumps)."""
    meta = template.get("metadata")
    if isinstance(meta, dict) and "creationTimestamp" in meta:
        template = {**template, "metadata": {k: v for k, v in meta.items() if k != "creationTimestamp"}}
    return template


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    """Paths (in ``a``'s terms) where two JSON values differ, as shallow as the difference allows."""
    if a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a:
            _diff(a[key], b.get(key), _join(path, key), out)
        if any(key not in a for key in b):
            out.append(path)
        return
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{path}[{i}]", out)
        return
    out.append(path)
