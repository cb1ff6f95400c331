"""Every row of the PyTorchJob -> TrainJob mapping (notes §6), in each TrainJob flavour."""

from __future__ import annotations

import pytest

from ferryman.api.trainer import TrainerAPI
from ferryman.api.trainjob import parse_trainjob
from ferryman.convert.options import ConvertOptions
from ferryman.convert.registry import ConversionError, convert_job
from tests.convert.jobs import codes, convert, env, node_pod, pytorchjob, runtime_pod, trainer
from tests.convert.trainjob_schema import schema_errors

ALL_APIS = list(TrainerAPI)


def valid(conversion, api: TrainerAPI = TrainerAPI.V2_2) -> None:
    assert conversion.trainjob is not None
    assert schema_errors(conversion.trainjob, api) == []
    parse_trainjob(conversion.trainjob, api)
    if conversion.runtime is not None:
        assert schema_errors(conversion.runtime, api) == []


@pytest.mark.parametrize(
    ("master", "workers", "nodes"),
    [
        (1, 2, 3),
        (1, "default", 2),
        ("default", "default", 2),
        (1, None, 1),
        (None, 4, 4),
        (None, "default", 1),
    ],
)
def test_num_nodes_sums_replicas_defaulting_to_one(master, workers, nodes) -> None:
    conversion = convert(pytorchjob(master=master, workers=workers))
    assert trainer(conversion)["numNodes"] == nodes
    valid(conversion)


def test_pytorch_container_maps_to_trainer_fields() -> None:
    resources = {"limits": {"nvidia.com/gpu": 2, "memory": "8Gi"}, "requests": {"cpu": "4"}}
    job = pytorchjob(
        command=["torchrun", "train.py"],
        container={
            "args": ["--epochs", "3"],
            "env": [{"name": "LOGLEVEL", "value": "DEBUG"}],
            "resources": resources,
        },
        pod={"containers": None},  # replaced below
    )
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"] = [
        {"name": "logger", "image": "busybox"},
        {
            "name": "pytorch",
            "image": "docker.io/example/mnist:1.0",
            "command": ["torchrun", "train.py"],
            "args": ["--epochs", "3"],
            "env": [{"name": "LOGLEVEL", "value": "DEBUG"}],
            "resources": resources,
        },
    ]
    job["spec"]["pytorchReplicaSpecs"].pop("Master")
    conversion = convert(job)
    out = trainer(conversion)
    assert out["image"] == "docker.io/example/mnist:1.0"  # the container named pytorch, not containers[0]
    assert out["command"] == ["torchrun", "train.py"]
    assert out["args"] == ["--epochs", "3"]
    assert out["resourcesPerNode"] == resources
    assert env(conversion)["LOGLEVEL"] == "DEBUG"
    assert env(conversion)["PYTHONUNBUFFERED"] == "1"  # v1 injected it into every container
    assert conversion.runtime is not None
    assert [c["name"] for c in runtime_pod(conversion)["containers"]] == ["node", "logger"]


@pytest.mark.parametrize(
    ("api", "nproc", "expected"),
    [
        (TrainerAPI.V2_2, "4", 4),
        (TrainerAPI.V2_2, 2, 2),
        (TrainerAPI.V2_2, "auto", None),
        (TrainerAPI.V2_2, "gpu", None),
        (TrainerAPI.V2_2, "cpu", None),
        (TrainerAPI.V2_1, "gpu", "gpu"),
        (TrainerAPI.V2_1, "4", 4),
        (TrainerAPI.V2_0, "cpu", "cpu"),
        (TrainerAPI.V2_0, "auto", "auto"),
    ],
)
def test_nproc_per_node_per_flavour(api, nproc, expected) -> None:
    conversion = convert(pytorchjob(spec={"nprocPerNode": nproc}), trainer_api=api)
    assert trainer(conversion).get("numProcPerNode") == expected
    valid(conversion, api)


POD = {
    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
    "nodeSelector": {"pool": "gpu"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
    "serviceAccountName": "trainer",
    "imagePullSecrets": [{"name": "regcred"}],
    "securityContext": {"runAsUser": 1000, "fsGroup": 2000},
    "schedulingGates": [{"name": "example.com/gate"}],
    "terminationGracePeriodSeconds": 120,
}
MOUNTS = [{"name": "data", "mountPath": "/data"}]
POD_METADATA = {"labels": {"app": "mnist"}, "annotations": {"prometheus.io/scrape": "true"}}


def test_pod_settings_v22_runtime_patches() -> None:
    job = pytorchjob(pod=POD, pod_metadata=POD_METADATA, container={"volumeMounts": MOUNTS})
    conversion = convert(job)
    patch = conversion.trainjob["spec"]["runtimePatches"][0]
    assert patch["manager"] == "ferryman.dev/converter"
    pod = node_pod(conversion)
    assert pod["metadata"] == POD_METADATA
    assert pod["spec"] == {**POD, "containers": [{"name": "node", "volumeMounts": MOUNTS}]}
    assert not conversion.blocked
    valid(conversion)


def test_pod_settings_v21_pod_template_overrides() -> None:
    job = pytorchjob(pod=POD, pod_metadata=POD_METADATA, container={"volumeMounts": MOUNTS})
    conversion = convert(job, trainer_api=TrainerAPI.V2_1, derived_runtime=False, force=True)
    (override,) = conversion.trainjob["spec"]["podTemplateOverrides"]
    assert override["targetJobs"] == [{"name": "node"}]
    assert override["metadata"] == POD_METADATA
    expected = {k: v for k, v in POD.items() if k not in ("securityContext", "terminationGracePeriodSeconds")}
    assert override["spec"] == {**expected, "containers": [{"name": "node", "volumeMounts": MOUNTS}]}
    found = codes(conversion)["unpatchable-pod-field"]
    assert {f.path.rsplit(".", 1)[-1] for f in found} == {"securityContext", "terminationGracePeriodSeconds"}
    valid(conversion, TrainerAPI.V2_1)


def test_pod_settings_v20_pod_spec_overrides() -> None:
    job = pytorchjob(pod=POD, pod_metadata=POD_METADATA, container={"volumeMounts": MOUNTS})
    conversion = convert(job, trainer_api=TrainerAPI.V2_0, derived_runtime=False, force=True)
    (override,) = conversion.trainjob["spec"]["podSpecOverrides"]
    assert override["targetJobs"] == [{"name": "node"}]
    for key in ("volumes", "nodeSelector", "tolerations", "serviceAccountName", "schedulingGates"):
        assert override[key] == POD[key]
    assert override["containers"] == [{"name": "node", "volumeMounts": MOUNTS}]
    lost = {f.path.rsplit(".", 1)[-1] for f in codes(conversion)["unpatchable-pod-field"]}
    assert lost == {"affinity", "imagePullSecrets", "securityContext", "terminationGracePeriodSeconds"}
    assert "pod-metadata" in codes(conversion)
    valid(conversion, TrainerAPI.V2_0)


def test_container_security_context_is_patchable_only_from_v22() -> None:
    job = pytorchjob(container={"securityContext": {"capabilities": {"add": ["IPC_LOCK"]}}})
    conversion = convert(job)
    assert node_pod(conversion)["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] == [
        "IPC_LOCK"
    ]
    old = convert(job, trainer_api=TrainerAPI.V2_1, derived_runtime=False)
    assert old.blocked and "unpatchable-container-field" in codes(old)
    derived = convert(job, trainer_api=TrainerAPI.V2_1)
    (node,) = runtime_pod(derived)["containers"]
    assert node["securityContext"] == {"capabilities": {"add": ["IPC_LOCK"]}}


def test_run_policy() -> None:
    policy = {"suspend": True, "activeDeadlineSeconds": 3600, "managedBy": "kueue.x-k8s.io/multikueue"}
    conversion = convert(pytorchjob(spec={"runPolicy": policy}))
    spec = conversion.trainjob["spec"]
    assert (spec["suspend"], spec["activeDeadlineSeconds"], spec["managedBy"]) == (
        True,
        3600,
        "kueue.x-k8s.io/multikueue",
    )
    valid(conversion)
    v21 = convert(pytorchjob(spec={"runPolicy": policy}), trainer_api=TrainerAPI.V2_1)
    assert "activeDeadlineSeconds" not in v21.trainjob["spec"]
    assert "active-deadline" in codes(v21)
    valid(v21, TrainerAPI.V2_1)


def test_v1_manager_maps_to_the_default() -> None:
    conversion = convert(pytorchjob(spec={"runPolicy": {"managedBy": "kubeflow.org/training-operator"}}))
    assert "managedBy" not in conversion.trainjob["spec"]
    assert codes(conversion)["managed-by"][0].severity == "info"


def test_kueue_queue_label_is_kept() -> None:
    labels = {"kueue.x-k8s.io/queue-name": "team-a", "kueue.x-k8s.io/priority-class": "high"}
    conversion = convert(pytorchjob(metadata={"labels": labels}))
    assert conversion.trainjob["metadata"]["labels"] == labels


def test_what_kueue_writes_into_an_admitted_jobs_pods_is_not_carried() -> None:
    """A PyTorchJob Kueue admitted has its Workload's name and queues in its pod templates (seen on the real
    Kueue, e2e/test_upstream_kueue.py); its conversion keeps only the user's own pod labels."""
    admitted = {
        "labels": {"app": "bert", "kueue.x-k8s.io/podset": "worker", "kueue.x-k8s.io/local-queue-name": "a"},
        "annotations": {"kueue.x-k8s.io/workload": "pytorchjob-bert-1a2b3"},
    }
    conversion = convert(pytorchjob(pod_metadata=admitted))
    assert node_pod(conversion)["metadata"] == {"labels": {"app": "bert"}}
    assert len(codes(conversion)["queue-admission-metadata"]) == 3
    assert conversion.trainjob == convert(pytorchjob(pod_metadata={"labels": {"app": "bert"}})).trainjob


def test_volcano_queue_is_not_supported_by_v20() -> None:
    conversion = convert(
        pytorchjob(spec={"runPolicy": {"schedulingPolicy": {"queue": "research"}}}), trainer_api="v2.0"
    )
    assert "annotations" not in conversion.trainjob["spec"]
    assert codes(conversion)["volcano-queue"][0].severity == "warning"


@pytest.mark.parametrize("api", [TrainerAPI.V2_1, TrainerAPI.V2_2])
def test_volcano_queue_annotation(api) -> None:
    job = pytorchjob(spec={"runPolicy": {"schedulingPolicy": {"queue": "research"}}})
    conversion = convert(job, trainer_api=api, derived_runtime=False)
    spec = conversion.trainjob["spec"]
    if api is TrainerAPI.V2_2:
        annotations = spec["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["metadata"]["annotations"]
    else:
        annotations = spec["annotations"]
    assert annotations == {"scheduling.volcano.sh/queue-name": "research"}
    assert "volcano-runtime" in codes(conversion)
    valid(conversion, api)
    emitted = convert(job, trainer_api=api, derived_runtime=True)
    assert emitted.runtime["spec"]["podGroupPolicy"] == {"volcano": {}}
    valid(emitted, api)


def test_metadata_hygiene() -> None:
    metadata = {
        "uid": "u",
        "resourceVersion": "1",
        "generation": 3,
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [{"manager": "kubectl"}],
        "ownerReferences": [
            {"kind": "Workflow", "name": "w", "uid": "x", "apiVersion": "argoproj.io/v1alpha1"}
        ],
        "labels": {"app": "mnist", "app.kubernetes.io/instance": "argo-app"},
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "argocd.argoproj.io/sync-wave": "1",
            "kopf.zalando.org/last-handled-configuration": "{}",
            "owner": "alice",
        },
    }
    job = pytorchjob(metadata=metadata)
    job["status"] = {"conditions": []}
    conversion = convert(job)
    assert conversion.trainjob["metadata"] == {
        "name": "mnist",
        "namespace": "team-a",
        "labels": {"app": "mnist"},
        "annotations": {"owner": "alice", "ferryman.dev/source": "team-a/mnist"},
    }
    assert "status" not in conversion.trainjob
    dropped = {f.path for f in codes(conversion)["metadata-dropped"]}
    assert "metadata.uid" in dropped and "metadata.annotations.argocd.argoproj.io/sync-wave" in dropped


def test_long_name_is_shortened_and_reported() -> None:
    name = "a-very-long-pytorchjob-name-that-is-fine-for-v1-but-not-for-v2"
    conversion = convert(pytorchjob(name=name))
    new = conversion.trainjob["metadata"]["name"]
    assert len(new) <= 48 and new != name
    assert codes(conversion)["name-changed"][0].path == "metadata.name"
    assert env(conversion).get("MASTER_ADDR") is None  # torchrun: no v1 variables needed
    assert conversion.trainjob["metadata"]["annotations"]["ferryman.dev/source"] == f"team-a/{name}"


def test_runtime_ref_defaults_to_torch_distributed() -> None:
    conversion = convert(pytorchjob())
    assert conversion.trainjob["spec"]["runtimeRef"] == {
        "name": "torch-distributed",
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
    }


def test_trainjob_passes_through() -> None:
    trainjob = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "x"},
        "spec": {"runtimeRef": {"name": "torch-distributed"}},
    }
    conversion = convert_job(trainjob, ConvertOptions())
    assert conversion.trainjob is trainjob and not conversion.blocked


@pytest.mark.parametrize(
    "obj",
    [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}},
        {"apiVersion": "kubeflow.org/v1", "kind": "MXJob", "metadata": {"name": "mx"}},
        ["not", "a", "mapping"],
    ],
)
def test_not_a_pytorchjob_is_a_clear_error(obj) -> None:
    with pytest.raises(ConversionError, match=r"PyTorchJob|mapping"):
        convert_job(obj, ConvertOptions())


def test_null_quantities_are_dropped_and_host_name_ranks_read_the_completion_index() -> None:
    job = pytorchjob(
        master=None,
        command=["sh", "-c", "torchrun --node_rank=$(hostname | awk -F- '{print $NF}') t.py"],
        container={
            "resources": {"limits": {"nvidia.com/gpu": None, "memory": "8G"}, "requests": {"y": None}}
        },
    )
    conversion = convert(job)
    assert trainer(conversion)["resourcesPerNode"] == {"limits": {"memory": "8G"}}
    assert trainer(conversion)["command"][2] == "torchrun --node_rank=${JOB_COMPLETION_INDEX} t.py"
    valid(conversion)
