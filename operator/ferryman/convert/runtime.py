"""Runtime selection (accelerator resource -> runtime) and the derived TrainingRuntime for pod settings."""

from __future__ import annotations

import hashlib
import json
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ferryman.api.kinds import DERIVED_FROM_ANNOTATION, TRAINING_RUNTIME
from ferryman.api.trainer import RuntimeRules
from ferryman.api.trainjob import ANCESTOR_LABEL, FRAMEWORK_LABEL, TRAINER_CONTAINER, TRAINER_JOB

_DIGEST = 10  # hex digits of the content hash in a derived runtime's name
_ACCELERATOR_PREFIXES = ("nvidia.com/", "amd.com/", "aws.amazon.com/neuron", "habana.ai/", "google.com/tpu")


def is_accelerator(resource: str) -> bool:
    """Whether a resource name is an accelerator: any ``*gpu*``, ``nvidia.com/*``, Neuron, Gaudi or TPU."""
    return "gpu" in resource.lower() or resource.startswith(_ACCELERATOR_PREFIXES)


def _requested(quantity: object) -> bool:
    return str(quantity).strip() not in ("0", "", "0.0")


def accelerators(resources: dict[str, Any] | None) -> list[str]:
    """Accelerator resources requested (non-zero) in a container's ``resources``, in source order."""
    found: list[str] = []
    for section in ("limits", "requests"):
        for resource, quantity in ((resources or {}).get(section) or {}).items():
            if is_accelerator(resource) and _requested(quantity) and resource not in found:
                found.append(resource)
    return found


def select_runtime(rules: RuntimeRules, requested: list[str]) -> tuple[str, str, str | None]:
    """(runtime name, kind, matching resource) for a job requesting the ``requested`` accelerators."""
    for rule in rules.rules:
        for resource in requested:
            if fnmatchcase(resource, rule.resource):
                return rule.runtime, rule.kind, resource
    return rules.default, rules.default_kind, None


def parse_runtime_rules(text: str, source: str = "<rules>") -> RuntimeRules:
    """Rules from YAML: ``{default: torch-distributed, rules: [{resource: amd.com/*, runtime: x}]}``"""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(
            f"{source}: expected a mapping with 'rules' and 'default', got {type(data).__name__}"
        )
    try:
        return RuntimeRules.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise ValueError(f"{source}: invalid runtime rules: {problems}") from exc


def load_runtime_rules(path: str | Path) -> RuntimeRules:
    """Runtime rules from a YAML file (see :func:`parse_runtime_rules`)."""
    path = Path(path)
    return parse_runtime_rules(path.read_text(encoding="utf-8"), source=str(path))


def derived_runtime(
    *,
    namespace: str | None,
    base_runtime: str,
    pod_metadata: dict[str, Any],
    pod_spec: dict[str, Any],
    node_container: dict[str, Any],
    policy: dict[str, Any],
    ml_policy: dict[str, Any],
    framework: str,
) -> dict[str, Any]:
    """A namespaced TrainingRuntime of the shipped single-node-job shape (``torch-distributed``,
    ``jax-distributed``, ...: ``ml_policy`` and the ``framework`` label) whose pod template carries settings a
    TrainJob cannot patch: ``pod_spec`` (without containers), the trainer container ``node`` built from
    ``node_container`` (the TrainJob sets its image, command, args, env and resources), any further (sidecar)
    containers already in ``pod_spec``, and ``policy`` (``podGroupPolicy``) beside the template.

    Named from the base runtime and a hash of its content, so every job needing the same settings shares one
    runtime. Its one replicated job, ``node``, is within the 20-character limit Trainer v2.4 puts on them."""
    containers = [{"name": TRAINER_CONTAINER, **node_container}, *pod_spec.get("containers", [])]
    template: dict[str, Any] = {"spec": {**pod_spec, "containers": containers}}
    if pod_metadata:
        template["metadata"] = pod_metadata
    spec: dict[str, Any] = {
        "mlPolicy": {"numNodes": 1, **ml_policy},
        "template": {
            "spec": {
                "replicatedJobs": [
                    {
                        "name": TRAINER_JOB,
                        "template": {
                            "metadata": {"labels": {ANCESTOR_LABEL: "trainer"}},
                            "spec": {"template": template},
                        },
                    }
                ]
            }
        },
    }
    spec.update(policy)
    return named_runtime(namespace, base_runtime, spec, framework)


def named_runtime(
    namespace: str | None, base_runtime: str, spec: dict[str, Any], framework: str
) -> dict[str, Any]:
    """A namespaced TrainingRuntime of ``spec`` named ``<base_runtime>-<hash of spec>``: jobs needing the
    same runtime share one."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    metadata: dict[str, Any] = {"name": f"{base_runtime[: 62 - _DIGEST].rstrip('-')}-{digest[:_DIGEST]}"}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = {FRAMEWORK_LABEL: framework}
    metadata["annotations"] = {DERIVED_FROM_ANNOTATION: base_runtime}
    return {**TRAINING_RUNTIME.type_meta, "metadata": metadata, "spec": spec}
