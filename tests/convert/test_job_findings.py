"""Every finding the converter can raise: its severity, its field path, and that it names a remedy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import ferryman.convert.core as core_module
import ferryman.convert.merge as merge_module
import ferryman.convert.metadata as metadata_module
import ferryman.convert.names as names_module
import ferryman.convert.pytorchjob as pytorchjob_module
import ferryman.convert.registry as registry_module
from ferryman.convert.findings import Severity
from tests.convert.jobs import codes, convert, pytorchjob

W = "spec.pytorchReplicaSpecs.Worker"
WC = f"{W}.template.spec.containers[0]"
B, WARN, INFO = Severity.BLOCKER, Severity.WARNING, Severity.INFO


def with_worker_template(job: dict[str, Any], **pod: Any) -> dict[str, Any]:
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"].update(pod)
    return job


CASES: list[tuple[str, dict[str, Any], dict[str, Any], str, Severity, str]] = [
    # (id, pytorchjob() kwargs, options, code, severity, path)
    ("unknown field", {"spec": {"cleanPodPolicy": "All"}}, {}, "unknown-field", WARN, "spec.cleanPodPolicy"),
    ("replicas invalid", {"workers": -1}, {}, "invalid-value", B, f"{W}.replicas"),
    (
        "placeholder template",
        {"master": None, "workers": "$N"},
        {"template": True},
        "placeholder-carried",
        INFO,
        f"{W}.replicas",
    ),
    (
        "placeholder no template",
        {"master": None, "workers": "$N"},
        {},
        "placeholder-in-number",
        B,
        f"{W}.replicas",
    ),
    (
        "placeholder sum",
        {"workers": "${N}"},
        {"template": True},
        "placeholder-arithmetic",
        B,
        "spec.pytorchReplicaSpecs",
    ),
    ("schema invalid", {"spec": {"nprocPerNode": {"x": 1}}}, {}, "invalid-field", B, "spec.nprocPerNode.int"),
    (
        "duplicate secret",
        {"pod": {"imagePullSecrets": [{"name": "a"}, {"name": "a"}]}},
        {},
        "duplicate-entry",
        INFO,
        f"{W}.template.spec.imagePullSecrets[1]",
    ),
    (
        "duplicate volume",
        {"pod": {"volumes": [{"name": "a", "emptyDir": {}}, {"name": "a", "hostPath": {"path": "/x"}}]}},
        {},
        "duplicate-name",
        B,
        f"{W}.template.spec.volumes[1]",
    ),
    (
        "volume mounted twice",
        {
            "container": {
                "volumeMounts": [
                    {"name": "c", "mountPath": "/a", "subPath": "a"},
                    {"name": "c", "mountPath": "/b", "subPath": "b"},
                ]
            }
        },
        {"derived_runtime": False},
        "duplicate-name",
        B,
        f"{WC}.volumeMounts",
    ),
    (
        "volume mounted twice runtime",
        {
            "container": {
                "volumeMounts": [
                    {"name": "c", "mountPath": "/a", "subPath": "a"},
                    {"name": "c", "mountPath": "/b", "subPath": "b"},
                ]
            }
        },
        {},
        "derived-runtime",
        INFO,
        f"{WC}.volumeMounts",
    ),
    (
        "too many",
        {"container": {"env": [{"name": f"V{i}", "value": "1"} for i in range(130)]}},
        {},
        "too-many-items",
        B,
        f"{WC}.env",
    ),
    (
        "generate name",
        {"name": "", "metadata": {"generateName": "mnist-"}},
        {},
        "generate-name",
        WARN,
        "metadata.generateName",
    ),
    ("typed container", {"container": {"args": ["--epochs", 1]}}, {}, "invalid-field", B, f"{WC}.args[1]"),
    (
        "typed pod",
        {"pod": {"nodeSelector": {"pool": 1}}},
        {},
        "invalid-field",
        B,
        f"{W}.template.spec.nodeSelector.pool",
    ),
    (
        "elastic",
        {"spec": {"elasticPolicy": {"minReplicas": 1, "maxReplicas": 4}}},
        {},
        "elastic-policy",
        WARN,
        "spec.elasticPolicy",
    ),
    (
        "strict elastic",
        {"spec": {"elasticPolicy": {"minReplicas": 1, "maxReplicas": 4}}},
        {"strict_elastic": True},
        "elastic-policy",
        B,
        "spec.elasticPolicy",
    ),
    ("unknown replica", {"spec": {}}, {}, "unknown-replica-type", B, "spec.pytorchReplicaSpecs.Launcher"),
    (
        "restart never",
        {"replica": {"restartPolicy": "Never"}},
        {"derived_runtime": False},
        "restart-policy",
        WARN,
        "spec.pytorchReplicaSpecs.Worker.restartPolicy",
    ),
    (
        "restart never runtime",
        {"replica": {"restartPolicy": "Never"}},
        {},
        "derived-runtime",
        INFO,
        "spec.pytorchReplicaSpecs.Worker.restartPolicy",
    ),
    (
        "restart exit code",
        {"replica": {"restartPolicy": "ExitCode"}},
        {},
        "restart-policy",
        WARN,
        "spec.pytorchReplicaSpecs.Worker.restartPolicy",
    ),
    (
        "pod metadata name",
        {"pod_metadata": {"name": "x"}},
        {},
        "pod-metadata-ignored",
        INFO,
        f"{W}.template.metadata.name",
    ),
    (
        "kueue admission pod metadata",
        {"pod_metadata": {"annotations": {"kueue.x-k8s.io/workload": "pytorchjob-x-1a2b3"}}},
        {},
        "queue-admission-metadata",
        INFO,
        f"{W}.template.metadata.annotations",
    ),
    (
        "v1 pod label",
        {"pod_metadata": {"labels": {"training.kubeflow.org/job-role": "x"}}},
        {},
        "v1-label",
        WARN,
        f"{W}.template.metadata",
    ),
    (
        "v20 pod metadata",
        {"pod_metadata": {"labels": {"app": "x"}}},
        {"trainer_api": "v2.0", "derived_runtime": False},
        "pod-metadata",
        WARN,
        f"{W}.template.metadata",
    ),
    (
        "v20 pod metadata runtime",
        {"pod_metadata": {"labels": {"app": "x"}}},
        {"trainer_api": "v2.0"},
        "derived-runtime",
        INFO,
        f"{W}.template.metadata",
    ),
    ("hostname", {"pod": {"hostname": "x"}}, {}, "pod-field", WARN, f"{W}.template.spec.hostname"),
    (
        "host network",
        {"pod": {"hostNetwork": True}},
        {"derived_runtime": False},
        "unpatchable-pod-field",
        B,
        f"{W}.template.spec.hostNetwork",
    ),
    (
        "host network runtime",
        {"pod": {"hostNetwork": True}},
        {},
        "derived-runtime",
        INFO,
        f"{W}.template.spec.hostNetwork",
    ),
    (
        "unknown pod field",
        {"pod": {"futureField": 1}},
        {"derived_runtime": False},
        "unpatchable-pod-field",
        B,
        f"{W}.template.spec.futureField",
    ),
    (
        "no pytorch container",
        {"container": {"name": "main"}},
        {},
        "no-pytorch-container",
        B,
        f"{W}.template.spec.containers",
    ),
    ("sidecar", {"pod": {}}, {"derived_runtime": False}, "sidecar", B, f"{W}.template.spec.containers[1]"),
    (
        "sidecar runtime",
        {"pod": {}},
        {},
        "derived-runtime",
        INFO,
        f"{W}.template.spec.containers[1]",
    ),
    (
        "sidecar env",
        {"pod": {}},
        {},
        "sidecar-v1-env",
        WARN,
        f"{W}.template.spec.containers[1].env",
    ),
    (
        "v1 port",
        {"container": {"ports": [{"name": "pytorchjob-port", "containerPort": 23456}]}},
        {},
        "v1-port",
        INFO,
        f"{WC}.ports",
    ),
    (
        "working dir",
        {"container": {"workingDir": "/w"}},
        {"derived_runtime": False},
        "unpatchable-container-field",
        B,
        f"{WC}.workingDir",
    ),
    (
        "working dir runtime",
        {"container": {"workingDir": "/w"}},
        {},
        "derived-runtime",
        INFO,
        f"{WC}.workingDir",
    ),
    (
        "reserved env",
        {"container": {"env": [{"name": "PET_NNODES", "value": "2"}]}},
        {},
        "reserved-env",
        WARN,
        f"{WC}.env[0]",
    ),
    (
        "v1 env",
        {"container": {"env": [{"name": "RANK", "value": "0"}]}},
        {},
        "v1-env-overridden",
        WARN,
        f"{WC}.env[0]",
    ),
    (
        "duplicate env",
        {"container": {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}},
        {},
        "env-duplicate",
        WARN,
        f"{WC}.env[1]",
    ),
    (
        "job-name fieldRef",
        {
            "container": {
                "env": [
                    {
                        "name": "J",
                        "valueFrom": {
                            "fieldRef": {"fieldPath": "metadata.labels['training.kubeflow.org/job-name']"}
                        },
                    }
                ]
            }
        },
        {},
        "v1-reference-rewritten",
        INFO,
        f"{WC}.env[0].valueFrom.fieldRef.fieldPath",
    ),
    (
        "replica-index fieldRef",
        {
            "container": {
                "env": [
                    {
                        "name": "J",
                        "valueFrom": {
                            "fieldRef": {
                                "fieldPath": "metadata.labels['training.kubeflow.org/replica-index']"
                            }
                        },
                    }
                ]
            }
        },
        {},
        "v1-reference",
        B,
        f"{WC}.env[0].valueFrom.fieldRef.fieldPath",
    ),
    (
        "host rewritten",
        {"container": {"args": ["--master=mnist-master-0:23456"]}},
        {},
        "v1-hostname-rewritten",
        INFO,
        f"{WC}.args[0]",
    ),
    (
        "host unsafe",
        {"container": {"args": ["--peer=mnist-worker-$(I)"]}},
        {},
        "v1-hostname",
        B,
        f"{WC}.args[0]",
    ),
    ("nproc auto", {"spec": {"nprocPerNode": "auto"}}, {}, "nproc-per-node", INFO, "spec.nprocPerNode"),
    (
        "nproc cpu gpu",
        {"spec": {"nprocPerNode": "cpu"}, "container": {"resources": {"limits": {"amd.com/gpu": 1}}}},
        {},
        "nproc-per-node",
        WARN,
        "spec.nprocPerNode",
    ),
    ("torchrun wrap", {"command": ["python", "train.py"]}, {}, "torchrun-wrapped", INFO, f"{WC}.command"),
    ("opaque", {"command": ["/app/run"]}, {}, "launcher-unknown", WARN, f"{WC}.command"),
    ("opaque workers", {"master": None, "command": ["/a"]}, {}, "launcher-unknown", WARN, f"{WC}.command"),
    (
        "null quantity",
        {"container": {"resources": {"limits": {"nvidia.com/gpu": None, "cpu": "2"}}}},
        {},
        "null-quantity",
        WARN,
        f"{WC}.resources.limits.nvidia.com/gpu",
    ),
    (
        "hostname rank worker-only",
        {"master": None, "command": ["sh", "-c", "torchrun --node_rank=${HOSTNAME##*-} t.py"]},
        {},
        "v1-hostname-rank",
        INFO,
        f"{WC}.command[2]",
    ),
    (
        "hostname rank with master",
        {"command": ["sh", "-c", "torchrun --node_rank=$(hostname | cut -d- -f3) t.py"]},
        {},
        "v1-hostname-rank",
        B,
        f"{WC}.command[2]",
    ),
    (
        "env strategy",
        {"command": ["python", "train.py"]},
        {"launcher": "env"},
        "v1-env-injected",
        INFO,
        f"{WC}.env",
    ),
    (
        "world size",
        {"workers": "$N", "command": ["python", "t.py"], "spec": {"nprocPerNode": "2"}},
        {"template": True, "launcher": "env"},
        "world-size",
        B,
        "spec.pytorchReplicaSpecs",
    ),
    (
        "deadline v21",
        {"spec": {"runPolicy": {"activeDeadlineSeconds": 60}}},
        {"trainer_api": "v2.1"},
        "active-deadline",
        WARN,
        "spec.runPolicy.activeDeadlineSeconds",
    ),
    (
        "managed by other",
        {"spec": {"runPolicy": {"managedBy": "example.com/other"}}},
        {},
        "managed-by",
        B,
        "spec.runPolicy.managedBy",
    ),
    (
        "clean pod policy",
        {"spec": {"runPolicy": {"cleanPodPolicy": "All"}}},
        {},
        "clean-pod-policy",
        WARN,
        "spec.runPolicy.cleanPodPolicy",
    ),
    (
        "clean pod policy none",
        {"spec": {"runPolicy": {"cleanPodPolicy": "None"}}},
        {},
        "clean-pod-policy",
        INFO,
        "spec.runPolicy.cleanPodPolicy",
    ),
    (
        "ttl",
        {"spec": {"runPolicy": {"ttlSecondsAfterFinished": 60}}},
        {},
        "ttl-after-finished",
        WARN,
        "spec.runPolicy.ttlSecondsAfterFinished",
    ),
    (
        "backoff",
        {"spec": {"runPolicy": {"backoffLimit": 3}}},
        {},
        "backoff-limit",
        WARN,
        "spec.runPolicy.backoffLimit",
    ),
    ("backoff unlimited", {}, {}, "backoff-limit", INFO, "spec.runPolicy.backoffLimit"),
    (
        "volcano queue",
        {"spec": {"runPolicy": {"schedulingPolicy": {"queue": "q"}}}},
        {},
        "volcano-queue",
        INFO,
        "spec.runPolicy.schedulingPolicy.queue",
    ),
    (
        "volcano runtime",
        {"spec": {"runPolicy": {"schedulingPolicy": {"queue": "q"}}}},
        {"derived_runtime": False},
        "volcano-runtime",
        WARN,
        "spec.runPolicy.schedulingPolicy.queue",
    ),
    (
        "gang",
        {"spec": {"runPolicy": {"schedulingPolicy": {"minAvailable": 2}}}},
        {},
        "gang-scheduling",
        WARN,
        "spec.runPolicy.schedulingPolicy.minAvailable",
    ),
    (
        "priority class",
        {"spec": {"runPolicy": {"schedulingPolicy": {"priorityClass": "high"}}}},
        {"derived_runtime": False},
        "priority-class",
        WARN,
        "spec.runPolicy.schedulingPolicy.priorityClass",
    ),
    (
        "runtime rule",
        {"container": {"resources": {"limits": {"amd.com/gpu": 1}}}},
        {"runtime_rules": {"rules": [{"resource": "amd.com/*", "runtime": "torch-rocm"}]}},
        "runtime-selected",
        INFO,
        f"{WC}.resources",
    ),
    ("name changed", {"name": "Mnist.Job"}, {}, "name-changed", WARN, "metadata.name"),
    ("name placeholder", {"name": "${JOB_NAME}"}, {}, "name-placeholder", INFO, "metadata.name"),
    ("metadata dropped", {"metadata": {"uid": "x"}}, {}, "metadata-dropped", INFO, "metadata.uid"),
    ("api version", {}, {}, "api-version", WARN, "apiVersion"),
    ("status", {}, {}, "status-dropped", INFO, "status"),
    ("no name", {}, {}, "name-missing", B, "metadata.name"),
    ("no replicas", {"master": None, "workers": None}, {}, "no-replicas", B, "spec.pytorchReplicaSpecs"),
]


def build(case_id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    job = pytorchjob(**kwargs)
    replicas = job["spec"]["pytorchReplicaSpecs"]
    if case_id == "unknown replica":
        replicas["Launcher"] = {"replicas": 1, "template": replicas["Worker"]["template"]}
    if case_id.startswith("sidecar"):
        for replica in replicas.values():
            replica["template"]["spec"]["containers"].append({"name": "logger", "image": "busybox"})
    if case_id == "api version":
        job["apiVersion"] = "kubeflow.org/v1beta2"
    if case_id == "status":
        job["status"] = {"conditions": []}
    if case_id == "no name":
        del job["metadata"]["name"]
    return job


def _options(options: dict[str, Any]) -> dict[str, Any]:
    from ferryman.api.trainer import RuntimeRules

    if "runtime_rules" in options:
        options = {**options, "runtime_rules": RuntimeRules.model_validate(options["runtime_rules"])}
    return options


@pytest.mark.parametrize(
    ("case_id", "kwargs", "options", "code", "severity", "path"), CASES, ids=[c[0] for c in CASES]
)
def test_finding(case_id, kwargs, options, code, severity, path) -> None:
    conversion = convert(build(case_id, kwargs), **_options(options))
    found = codes(conversion).get(code, [])
    assert any(f.severity is severity and f.path == path for f in found), conversion.findings
    for finding in found:
        assert len(finding.message) > 20
    if severity is Severity.BLOCKER:
        assert conversion.trainjob is None  # not emitted unless forced
        forced = convert(build(case_id, kwargs), force=True, **_options(options))
        assert forced.blocked


def test_every_finding_code_is_tested() -> None:
    modules = (core_module, pytorchjob_module, merge_module, registry_module, metadata_module, names_module)
    sources = [Path(m.__file__).read_text() for m in modules]
    emitted = set()
    for source in sources:
        emitted |= set(re.findall(r'"([a-z][a-z0-9]*(?:-[a-z0-9]+)+)"', source))  # the code literals
    merges = {"replica-templates-differ", "replica-templates-merged", "role-volume"}  # in test_merge.py
    tested = {case[3] for case in CASES} | merges | {"already-trainjob"}
    assert len(emitted) > 40
    assert emitted - tested == set()


def test_differing_templates_are_a_blocker_naming_the_path() -> None:
    job = pytorchjob()
    job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["image"] = "other:1"
    conversion = convert(job)
    (finding,) = codes(conversion)["replica-templates-differ"]
    assert finding.severity is Severity.BLOCKER
    assert finding.path == "spec.pytorchReplicaSpecs.Master.template.spec.containers[0].image"
