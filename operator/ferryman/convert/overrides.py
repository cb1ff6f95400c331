"""What each TrainJob flavour can patch on the runtime's pods, and the flavour's shape for those patches."""

from __future__ import annotations

from typing import Any

from ferryman.api.kinds import CONVERTER_MANAGER
from ferryman.api.trainer import TrainerAPI
from ferryman.api.trainjob import TRAINER_CONTAINER, TRAINER_JOB
from ferryman.convert.findings import Severity

_V20_POD = ("serviceAccountName", "nodeSelector", "tolerations", "volumes", "schedulingGates")
_V21_POD = (*_V20_POD, "affinity", "imagePullSecrets")
_V22_POD = (*_V21_POD, "securityContext", "terminationGracePeriodSeconds")

POD_PATCH_FIELDS: dict[TrainerAPI, frozenset[str]] = {
    TrainerAPI.V2_0: frozenset(_V20_POD),
    TrainerAPI.V2_1: frozenset(_V21_POD),
    TrainerAPI.V2_2: frozenset(_V22_POD),
}
CONTAINER_PATCH_FIELDS: dict[TrainerAPI, frozenset[str]] = {
    TrainerAPI.V2_0: frozenset({"volumeMounts"}),
    TrainerAPI.V2_1: frozenset({"volumeMounts"}),
    TrainerAPI.V2_2: frozenset({"volumeMounts", "securityContext"}),
}
# Flavours whose overrides carry pod labels and annotations (v2.0's spec.labels reach only JobSet and Jobs).
POD_METADATA_PATCH = {TrainerAPI.V2_0: False, TrainerAPI.V2_1: True, TrainerAPI.V2_2: True}

# Pod fields no flavour can patch: how much it matters when they are lost. Unlisted fields are blockers.
UNPATCHABLE_POD_FIELDS: dict[str, tuple[Severity, str]] = {
    "hostNetwork": (
        Severity.BLOCKER,
        "pods would leave the host network (NCCL/EFA/RDMA setups depend on it)",
    ),
    "hostIPC": (Severity.BLOCKER, "pods would lose the host IPC namespace"),
    "hostPID": (Severity.BLOCKER, "pods would lose the host PID namespace"),
    "priorityClassName": (
        Severity.BLOCKER,
        "pods would run without their priority class (preemption changes)",
    ),
    "schedulerName": (Severity.BLOCKER, "pods would be scheduled by the default scheduler"),
    "runtimeClassName": (Severity.BLOCKER, "pods would run with the default container runtime"),
    "dnsPolicy": (Severity.BLOCKER, "pods would resolve names with the default DNS policy"),
    "dnsConfig": (Severity.BLOCKER, "pods would lose their DNS configuration"),
    "hostAliases": (Severity.BLOCKER, "pods would lose their /etc/hosts entries"),
    "initContainers": (Severity.BLOCKER, "init containers would not run (patches cannot add containers)"),
    "securityContext": (Severity.BLOCKER, "pods would run with a different security context"),
    "affinity": (Severity.BLOCKER, "pods would be placed without their affinity rules"),
    "imagePullSecrets": (Severity.BLOCKER, "images from private registries would fail to pull"),
    "topologySpreadConstraints": (Severity.BLOCKER, "pods would be placed without spread constraints"),
    "shareProcessNamespace": (Severity.BLOCKER, "containers would no longer share a process namespace"),
    "resources": (Severity.BLOCKER, "pod-level resources would be lost"),
    "os": (Severity.BLOCKER, "the pod OS would not be declared"),
    "hostUsers": (Severity.BLOCKER, "pods would run with a different user namespace setting"),
    "nodeName": (Severity.BLOCKER, "pods would no longer be bound to their node"),
    "overhead": (Severity.WARNING, "pod overhead would be recomputed from the runtime class"),
    "enableServiceLinks": (Severity.WARNING, "service environment variables would be injected by default"),
    "automountServiceAccountToken": (
        Severity.WARNING,
        "the service account token mount would use the default",
    ),
    "terminationGracePeriodSeconds": (Severity.WARNING, "pods would get the default 30 s grace period"),
    "activeDeadlineSeconds": (Severity.WARNING, "pods would have no deadline of their own"),
    "preemptionPolicy": (Severity.WARNING, "the preemption policy would be the default"),
    "priority": (Severity.WARNING, "the priority is recomputed from the priority class"),
    "readinessGates": (Severity.WARNING, "pod readiness would ignore the extra gates"),
    "setHostnameAsFQDN": (Severity.WARNING, "the pod host name would be the short name"),
    "restartPolicy": (Severity.INFO, "v1 replaced it with the replica's restartPolicy as well"),
}
# The pod template's restartPolicy: v1 replaced it with the replica's, which decides the runtime's.
NOT_CARRIED_BY_RUNTIME = frozenset({"restartPolicy"})
# Set by JobSet itself; carrying them, even into a runtime, would break the pods' DNS names.
WARN_ONLY_UNCARRIED = {
    "hostname": (Severity.WARNING, "JobSet sets the pod host name itself"),
    "subdomain": (Severity.WARNING, "JobSet sets the pod subdomain itself"),
}

# Container fields a TrainJob cannot set on the node container; a derived runtime can.
UNPATCHABLE_CONTAINER_FIELDS: dict[str, tuple[Severity, str]] = {
    "workingDir": (Severity.BLOCKER, "the entrypoint would run in the image's working directory"),
    "envFrom": (Severity.BLOCKER, "variables from ConfigMaps or Secrets would be missing"),
    "volumeDevices": (Severity.BLOCKER, "raw block devices would not be attached"),
    "securityContext": (Severity.BLOCKER, "the container would run with a different security context"),
    "lifecycle": (Severity.WARNING, "lifecycle hooks would not run"),
    "livenessProbe": (Severity.WARNING, "the liveness probe would not run"),
    "readinessProbe": (Severity.WARNING, "the readiness probe would not run"),
    "startupProbe": (Severity.WARNING, "the startup probe would not run"),
    "ports": (Severity.WARNING, "the container ports would not be declared"),
    "resizePolicy": (Severity.WARNING, "the resize policy would be the default"),
    "restartPolicy": (Severity.WARNING, "the container restart policy would be the default"),
    "imagePullPolicy": (Severity.INFO, "the image pull policy would be Kubernetes' default for the tag"),
    "terminationMessagePath": (Severity.INFO, "the termination message path would be the default"),
    "terminationMessagePolicy": (Severity.INFO, "the termination message policy would be the default"),
    "stdin": (Severity.INFO, "stdin would not be allocated"),
    "stdinOnce": (Severity.INFO, "stdinOnce would be the default"),
    "tty": (Severity.INFO, "no TTY would be allocated"),
}


def pod_overrides(
    trainer_api: TrainerAPI,
    *,
    pod_metadata: dict[str, Any],
    pod_spec: dict[str, Any],
    container: dict[str, Any],
    jobset_annotations: dict[str, str],
) -> dict[str, Any]:
    """TrainJob spec fields that apply ``pod_spec``/``pod_metadata``/``container`` (a patch of the ``node``
    container) to the trainer job's pods and ``jobset_annotations`` to the JobSet, in the flavour's shape."""
    spec = dict(pod_spec)
    if container:
        spec["containers"] = [{"name": TRAINER_CONTAINER, **container}]
    out: dict[str, Any] = {}
    if trainer_api is TrainerAPI.V2_2:
        template: dict[str, Any] = {}
        if jobset_annotations:
            template["metadata"] = {"annotations": jobset_annotations}
        if spec or pod_metadata:
            pod: dict[str, Any] = {}
            if pod_metadata:
                pod["metadata"] = pod_metadata
            if spec:
                pod["spec"] = spec
            job = {"name": TRAINER_JOB, "template": {"spec": {"template": pod}}}
            template["spec"] = {"replicatedJobs": [job]}
        if template:
            out["runtimePatches"] = [
                {"manager": CONVERTER_MANAGER, "trainingRuntimeSpec": {"template": template}}
            ]
        return out
    if jobset_annotations:
        out["annotations"] = jobset_annotations
    target = [{"name": TRAINER_JOB}]
    if trainer_api is TrainerAPI.V2_1:
        if spec or pod_metadata:
            override: dict[str, Any] = {"targetJobs": target}
            if pod_metadata:
                override["metadata"] = pod_metadata
            if spec:
                override["spec"] = spec
            out["podTemplateOverrides"] = [override]
    elif spec:
        out["podSpecOverrides"] = [{"targetJobs": target, **spec}]
    return out
