"""Runtime selection by accelerator resource, the rules file, and the derived TrainingRuntime."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.api.trainer import RuntimeRules, TrainerAPI
from ferryman.convert.names import is_rfc1035_label
from ferryman.convert.runtime import (
    accelerators,
    is_accelerator,
    load_runtime_rules,
    parse_runtime_rules,
    select_runtime,
)
from tests.convert.jobs import codes, convert, pytorchjob, runtime_pod
from tests.convert.trainjob_schema import schema_errors


@pytest.mark.parametrize(
    ("resource", "accelerator"),
    [
        ("nvidia.com/gpu", True),
        ("nvidia.com/a40", True),
        ("nvidia.com/mig-1g.10gb", True),
        ("amd.com/gpu", True),
        ("gpu.intel.com/i915", True),
        ("aws.amazon.com/neuron", True),
        ("aws.amazon.com/neuroncore", True),
        ("habana.ai/gaudi", True),
        ("cpu", False),
        ("memory", False),
        ("vpc.amazonaws.com/efa", False),
        ("ephemeral-storage", False),
    ],
)
def test_accelerator_detection(resource: str, accelerator: bool) -> None:
    assert is_accelerator(resource) is accelerator


def test_zero_quantities_are_not_requests() -> None:
    resources = {"limits": {"nvidia.com/gpu": 0, "amd.com/gpu": "2"}, "requests": {"nvidia.com/a40": 1}}
    assert accelerators(resources) == ["amd.com/gpu", "nvidia.com/a40"]
    assert accelerators(None) == []


RULES = """\
default: torch-distributed
rules:
  - resource: amd.com/*
    runtime: torch-distributed-rocm
  - resource: aws.amazon.com/neuron*
    runtime: torch-neuron
    kind: TrainingRuntime
"""


def test_rules_pick_the_first_matching_runtime(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    rules = load_runtime_rules(path)
    assert select_runtime(rules, ["amd.com/gpu"]) == (
        "torch-distributed-rocm",
        "ClusterTrainingRuntime",
        "amd.com/gpu",
    )
    assert select_runtime(rules, ["aws.amazon.com/neuroncore"])[:2] == ("torch-neuron", "TrainingRuntime")
    assert select_runtime(rules, ["nvidia.com/gpu"]) == ("torch-distributed", "ClusterTrainingRuntime", None)
    assert select_runtime(rules, []) == ("torch-distributed", "ClusterTrainingRuntime", None)


def test_converter_uses_the_rules() -> None:
    job = pytorchjob(container={"resources": {"limits": {"amd.com/gpu": 4}}})
    conversion = convert(job, runtime_rules=parse_runtime_rules(RULES))
    assert conversion.trainjob["spec"]["runtimeRef"]["name"] == "torch-distributed-rocm"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("rules: [{resource: amd.com/gpu}]", "rules.0.runtime"),
        ("- a\n- b", "expected a mapping"),
        ("rules: [", "not valid YAML"),
    ],
)
def test_bad_rules_name_the_file_and_field(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error) as raised:
        parse_runtime_rules(text, source="rules.yaml")
    assert "rules.yaml" in str(raised.value)


def test_default_rules() -> None:
    assert select_runtime(RuntimeRules(), ["nvidia.com/gpu"])[0] == "torch-distributed"


@pytest.mark.parametrize("api", list(TrainerAPI))
def test_derived_runtime_carries_unpatchable_pod_settings(api: TrainerAPI) -> None:
    pod = {
        "hostNetwork": True,
        "hostIPC": True,
        "priorityClassName": "high",
        "schedulerName": "kai-scheduler",
        "initContainers": [{"name": "fetch", "image": "busybox", "command": ["true"]}],
    }
    job = pytorchjob(
        pod=pod, container={"workingDir": "/workspace", "envFrom": [{"configMapRef": {"name": "cfg"}}]}
    )
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        replica["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    blocked = convert(job, trainer_api=api, derived_runtime=False)
    assert blocked.blocked and blocked.trainjob is None
    assert all("--no-derived-runtime" in f.message for f in blocked.findings if f.severity == "blocker")
    conversion = convert(job, trainer_api=api)
    assert not conversion.blocked
    runtime = conversion.runtime
    assert runtime["kind"] == "TrainingRuntime"
    assert runtime["metadata"]["namespace"] == "team-a"
    assert conversion.trainjob["spec"]["runtimeRef"] == {
        "name": runtime["metadata"]["name"],
        "apiGroup": "trainer.kubeflow.org",
        "kind": "TrainingRuntime",
    }
    (rjob,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert rjob["name"] == "node"
    assert rjob["template"]["metadata"]["labels"] == {
        "trainer.kubeflow.org/trainjob-ancestor-step": "trainer"
    }
    pod_spec = rjob["template"]["spec"]["template"]["spec"]
    for key, value in pod.items():
        assert pod_spec[key] == value
    node, sidecar = pod_spec["containers"]
    assert node["name"] == "node" and node["workingDir"] == "/workspace" and node["envFrom"]
    assert sidecar["name"] == "sidecar"
    assert schema_errors(runtime, api) == []
    assert schema_errors(conversion.trainjob, api) == []


def test_no_runtime_when_nothing_needs_one() -> None:
    conversion = convert(pytorchjob())
    assert conversion.runtime is None
    assert conversion.trainjob["spec"]["runtimeRef"]["name"] == "torch-distributed"


def test_no_runtime_for_settings_whose_loss_is_only_informational() -> None:
    conversion = convert(pytorchjob(container={"imagePullPolicy": "Always"}))
    assert conversion.runtime is None
    (finding,) = codes(conversion)["unpatchable-container-field"]
    assert finding.severity == "info"
    with_runtime = convert(pytorchjob(container={"imagePullPolicy": "Always", "workingDir": "/w"}))
    assert runtime_pod(with_runtime)["containers"][0]["imagePullPolicy"] == "Always"  # carried along


def test_derived_runtimes_are_shared_by_content_and_named_within_limits() -> None:
    pod = {"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}
    first = convert(pytorchjob("a", pod=pod)).runtime
    second = convert(pytorchjob("b", pod=pod, container={"image": "other:2"})).runtime
    third = convert(pytorchjob("c", pod={**pod, "schedulerName": "kai"})).runtime
    assert first == second  # no job name, image or source in it: one runtime serves every such job
    assert third["metadata"]["name"] != first["metadata"]["name"]
    rules = RuntimeRules(default="a-very-long-cluster-training-runtime-name-from-a-vendor-distribution")
    long = convert(pytorchjob(pod=pod), runtime_rules=rules).runtime
    for runtime in (first, third, long):
        assert is_rfc1035_label(runtime["metadata"]["name"])
        base = runtime["metadata"]["annotations"]["ferryman.dev/derived-from"]
        assert base in (rules.default, "torch-distributed")
        for rjob in runtime["spec"]["template"]["spec"]["replicatedJobs"]:
            assert len(rjob["name"]) <= 20  # Trainer v2.4 rejects longer replicated job names
