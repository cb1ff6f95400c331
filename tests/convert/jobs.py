"""A small builder of PyTorchJob manifests for hand-written conversion tests."""

from __future__ import annotations

import copy
from typing import Any

from ferryman.convert.findings import Finding
from ferryman.convert.options import Conversion, ConvertOptions
from ferryman.convert.registry import convert_job


def pytorchjob(
    name: str = "mnist",
    *,
    namespace: str | None = "team-a",
    master: int | str | None = 1,
    workers: int | str | None = 2,
    command: list[str] | None = None,
    container: dict[str, Any] | None = None,
    pod: dict[str, Any] | None = None,
    pod_metadata: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    replica: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A PyTorchJob with a Master (``master`` replicas, None: no Master) and Workers (None: no Worker) sharing
    one pod template; ``container``/``pod``/``replica`` add fields to the pytorch container, pod spec and
    each replica spec. ``"default"`` as a replica count omits ``replicas``."""
    main = {"name": "pytorch", "image": "docker.io/example/mnist:1.0"}
    main["command"] = command if command is not None else ["torchrun", "/opt/mnist.py"]
    main.update(container or {})
    template: dict[str, Any] = {"spec": {"containers": [main], **(pod or {})}}
    if pod_metadata:
        template["metadata"] = pod_metadata
    replicas: dict[str, Any] = {}
    for key, count in (("Master", master), ("Worker", workers)):
        if count is None:
            continue
        entry: dict[str, Any] = {"template": copy.deepcopy(template), **copy.deepcopy(replica or {})}
        if count != "default":
            entry["replicas"] = count
        replicas[key] = entry
    meta: dict[str, Any] = {"name": name, **(metadata or {})}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": meta,
        "spec": {"pytorchReplicaSpecs": replicas, **(spec or {})},
    }


def convert(job: dict[str, Any], **options: Any) -> Conversion:
    return convert_job(job, ConvertOptions(**options))


def codes(conversion: Conversion) -> dict[str, list[Finding]]:
    """Findings by code."""
    out: dict[str, list[Finding]] = {}
    for finding in conversion.findings:
        out.setdefault(finding.code, []).append(finding)
    return out


def trainer(conversion: Conversion) -> dict[str, Any]:
    assert conversion.trainjob is not None, [f.message for f in conversion.findings]
    return conversion.trainjob["spec"]["trainer"]


def env(conversion: Conversion) -> dict[str, Any]:
    """trainer.env by name (value, or valueFrom)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in trainer(conversion).get("env", [])}


def node_pod(conversion: Conversion) -> dict[str, Any]:
    """The v2.2 runtime patch's pod template for the node job."""
    assert conversion.trainjob is not None
    (patch,) = conversion.trainjob["spec"]["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node"
    return job["template"]["spec"]["template"]


def runtime_pod(conversion: Conversion) -> dict[str, Any]:
    """The derived runtime's pod spec for the node job."""
    assert conversion.runtime is not None, [f.message for f in conversion.findings]
    (job,) = conversion.runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node"
    return job["template"]["spec"]["template"]["spec"]
