"""Hypothesis strategies for schema-valid Training Operator v1 PyTorchJobs (and TrainJobs).

Importable from any test (``from tests.convert.strategies import pytorchjobs``): the generated jobs pass
the v1 CRD schema (checked in test_properties) and the v1 webhook's rules (Master
replicas 1, Worker replicas >= 1, a container named ``pytorch`` with an image, DNS-1035 names), so they can
also be submitted to a real API server serving the PyTorchJob CRD.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

Job = dict[str, Any]

dns_labels = st.from_regex(r"\A[a-z]([-a-z0-9]{0,20}[a-z0-9])?\Z")
long_names = st.from_regex(r"\A[a-z][-a-z0-9]{45,60}[a-z0-9]\Z")
job_names = st.one_of(dns_labels, long_names)
label_values = st.from_regex(r"\A([a-z0-9]([-a-z0-9.]{0,10}[a-z0-9])?)?\Z")
images = st.sampled_from(
    ["docker.io/example/train:1.0", "ghcr.io/acme/llm:v2", "registry.local:5000/team/mnist@sha256:abc"]
)

plain_commands = st.sampled_from(
    [
        ["python", "/opt/train.py", "--epochs=1"],
        ["python3", "-u", "train.py"],
        ["bash", "-c", "pip list && python /workspace/train.py --lr 0.1"],
    ]
)
launcher_commands = st.sampled_from(
    [
        ["torchrun", "--nproc_per_node=2", "train.py"],
        ["python", "-m", "torch.distributed.run", "--nnodes=2", "train.py"],
        ["/bin/bash", "-c", "cd /w && torchrun train.py"],
        ["python", "-m", "torch.distributed.launch", "train.py"],
        ["accelerate", "launch", "train.py"],
        ["deepspeed", "train.py", "--deepspeed"],
        ["composer", "-n", "8", "train.py"],
    ]
)
opaque_commands = st.sampled_from([["/bin/sh", "/workspace/run.sh"], ["/app/train"]])


@st.composite
def commands(draw: st.DrawFn, job: str) -> tuple[list[str] | None, list[str] | None]:
    command = draw(st.one_of(st.none(), plain_commands, launcher_commands, opaque_commands))
    extra = draw(
        st.lists(
            st.sampled_from(
                [
                    "--verbose",
                    f"--master={job}-master-0:23456",
                    f"--peer={job}-worker-0",
                    "--world=$(WORLD_SIZE)",
                    "--rank=$(RANK)",
                    "--data=/data",
                ]
            ),
            max_size=3,
            unique=True,
        )
    )
    return command, (extra or None)


@st.composite
def env_vars(draw: st.DrawFn, job: str) -> list[dict[str, Any]]:
    names = draw(
        st.lists(
            st.sampled_from(
                [
                    "LOGLEVEL",
                    "NCCL_DEBUG",
                    "DATA_DIR",
                    "MASTER_ADDR",
                    "WORLD_SIZE",
                    "RANK",
                    "PET_NNODES",
                    "PET_MASTER_PORT",
                    "PET_RDZV_CONF",
                    "PEER",
                    "POD_NAME",
                    "REPLICA",
                ]
            ),
            max_size=5,
            unique=True,
        )
    )
    out: list[dict[str, Any]] = []
    for name in names:
        if name == "POD_NAME":
            out.append({"name": name, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
        elif name == "REPLICA":
            path = "metadata.labels['training.kubeflow.org/replica-index']"
            out.append({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
        elif name == "PEER":
            out.append({"name": name, "value": f"{job}-worker-{draw(st.integers(0, 3))}"})
        else:
            out.append({"name": name, "value": draw(st.sampled_from(["1", "INFO", "/data", "x=y", ""]))})
    return out


resources = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"limits": st.fixed_dictionaries({"cpu": st.sampled_from(["1", "500m"]), "memory": st.just("1Gi")})}
    ),
    st.fixed_dictionaries(
        {
            "requests": st.fixed_dictionaries({"cpu": st.just("4")}),
            "limits": st.dictionaries(
                st.sampled_from(["nvidia.com/gpu", "amd.com/gpu", "aws.amazon.com/neuron", "nvidia.com/a40"]),
                st.sampled_from([1, 2, 8]),
                min_size=1,
                max_size=1,
            ),
        }
    ),
)

volumes = st.lists(st.sampled_from(["data", "shm", "cache"]), max_size=2, unique=True)
tolerations = st.lists(
    st.fixed_dictionaries(
        {"key": st.sampled_from(["nvidia.com/gpu", "dedicated"]), "operator": st.just("Exists")},
        optional={"effect": st.sampled_from(["NoSchedule", "NoExecute"])},
    ),
    min_size=1,
    max_size=2,
)
affinity = st.sampled_from(
    [
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100", "h100"]}]}
                    ]
                }
            }
        },
        {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {
                                "matchLabels": {"training.kubeflow.org/replica-type": "worker"}
                            },
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        },
    ]
)
sidecar = st.fixed_dictionaries(
    {"name": st.sampled_from(["logger", "istio-proxy"]), "image": st.just("busybox:1.36")},
    optional={"args": st.just(["sleep", "infinity"])},
)

# pod-level fields: name -> strategy (optional in every template)
POD_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "nodeSelector": st.dictionaries(st.sampled_from(["pool", "zone"]), label_values, min_size=1, max_size=2),
    "tolerations": tolerations,
    "affinity": affinity,
    "serviceAccountName": dns_labels,
    "imagePullSecrets": st.lists(
        st.builds(lambda n: {"name": n}, dns_labels), min_size=1, max_size=2, unique_by=lambda s: s["name"]
    ),
    "securityContext": st.just({"runAsUser": 1000, "fsGroup": 2000}),
    "schedulingGates": st.just([{"name": "example.com/gate"}]),
    "terminationGracePeriodSeconds": st.integers(0, 600),
    "hostNetwork": st.booleans(),
    "hostIPC": st.just(True),
    "priorityClassName": st.sampled_from(["high", "batch-low"]),
    "schedulerName": st.sampled_from(["volcano", "kai-scheduler"]),
    "dnsPolicy": st.just("ClusterFirstWithHostNet"),
    "runtimeClassName": st.just("nvidia"),
    "enableServiceLinks": st.booleans(),
    "initContainers": st.just([{"name": "fetch", "image": "busybox:1.36", "command": ["true"]}]),
    "restartPolicy": st.sampled_from(["OnFailure", "Never"]),
}
CONTAINER_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "imagePullPolicy": st.sampled_from(["Always", "IfNotPresent"]),
    "workingDir": st.just("/workspace"),
    "ports": st.sampled_from(
        [[{"name": "pytorchjob-port", "containerPort": 23456}], [{"name": "metrics", "containerPort": 9090}]]
    ),
    "securityContext": st.just({"capabilities": {"add": ["IPC_LOCK"]}}),
    "envFrom": st.just([{"configMapRef": {"name": "settings"}}]),
    "readinessProbe": st.just({"exec": {"command": ["true"]}}),
}


@st.composite
def pod_templates(draw: st.DrawFn, job: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "pytorch", "image": draw(images)}
    command, args = draw(commands(job))
    if command is not None:
        container["command"] = command
    if args is not None:
        container["args"] = args
    env = draw(env_vars(job))
    if env:
        container["env"] = env
    res = draw(resources)
    if res is not None:
        container["resources"] = res
    for key in draw(st.lists(st.sampled_from(sorted(CONTAINER_FIELDS)), max_size=2, unique=True)):
        container[key] = draw(CONTAINER_FIELDS[key])
    spec: dict[str, Any] = {}
    vols = draw(volumes)
    if vols:
        spec["volumes"] = [{"name": v, "emptyDir": {}} for v in vols]
        container["volumeMounts"] = [{"name": v, "mountPath": f"/mnt/{v}"} for v in vols]
    containers = [container]
    if draw(st.integers(0, 9)) == 0:
        containers.append(draw(sidecar))
    if draw(st.booleans()):
        containers.reverse()  # the pytorch container need not come first
    spec["containers"] = containers
    for key in draw(st.lists(st.sampled_from(sorted(POD_FIELDS)), max_size=3, unique=True)):
        spec[key] = draw(POD_FIELDS[key])
    template: dict[str, Any] = {"spec": spec}
    metadata: dict[str, Any] = {}
    if draw(st.booleans()):
        metadata["labels"] = draw(
            st.dictionaries(
                st.sampled_from(["app", "team", "sidecar.istio.io/inject"]), label_values, max_size=2
            )
        )
    if draw(st.booleans()):
        metadata["annotations"] = {"prometheus.io/scrape": "true"}
    if metadata:
        template["metadata"] = metadata
    return template


run_policies = st.fixed_dictionaries(
    {},
    optional={
        "cleanPodPolicy": st.sampled_from(["None", "All", "Running"]),
        "ttlSecondsAfterFinished": st.integers(0, 86400),
        "activeDeadlineSeconds": st.integers(1, 10**6),
        "backoffLimit": st.integers(0, 10),
        "suspend": st.booleans(),
        "managedBy": st.sampled_from(["kubeflow.org/training-operator", "kueue.x-k8s.io/multikueue"]),
        "schedulingPolicy": st.fixed_dictionaries(
            {},
            optional={
                "minAvailable": st.integers(1, 4),
                "queue": dns_labels,
                "priorityClass": st.just("high"),
                "scheduleTimeoutSeconds": st.integers(1, 600),
            },
        ),
    },
)
elastic_policies = st.fixed_dictionaries(
    {"rdzvBackend": st.sampled_from(["c10d", "etcd"])},
    optional={
        "minReplicas": st.integers(1, 2),
        "maxReplicas": st.integers(2, 8),
        "maxRestarts": st.integers(0, 9),
    },
)


@st.composite
def pytorchjobs(draw: st.DrawFn, live: bool | None = None) -> Job:
    """A schema-valid PyTorchJob; with ``live`` (default: sometimes) it carries server fields and status."""
    name = draw(job_names)
    metadata: dict[str, Any] = {"name": name}
    if draw(st.booleans()):
        metadata["namespace"] = draw(dns_labels)
    labels = draw(
        st.dictionaries(
            st.sampled_from(["app", "kueue.x-k8s.io/queue-name", "app.kubernetes.io/instance"]),
            label_values,
            max_size=2,
        )
    )
    if labels:
        metadata["labels"] = labels
    if draw(st.booleans()):
        metadata["annotations"] = draw(
            st.dictionaries(
                st.sampled_from(
                    [
                        "owner",
                        "kubectl.kubernetes.io/last-applied-configuration",
                        "argocd.argoproj.io/sync-wave",
                    ]
                ),
                st.sampled_from(["x", "{}", "1"]),
                min_size=1,
                max_size=2,
            )
        )
    job: Job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": metadata}
    if live if live is not None else draw(st.integers(0, 4)) == 0:
        metadata.update(
            uid="0b6c1d0e-1111-2222-3333-444455556666",
            resourceVersion="12345",
            generation=2,
            creationTimestamp="2026-01-01T00:00:00Z",
            managedFields=[{"manager": "kubectl", "operation": "Update"}],
        )
        job["status"] = {"conditions": [{"type": "Created", "status": "True"}]}

    has_master = draw(st.booleans())
    has_worker = not has_master or draw(st.booleans())
    shared = draw(pod_templates(name))
    same = draw(st.integers(0, 4)) > 0
    replica_specs: dict[str, Any] = {}
    if has_master:
        master: dict[str, Any] = {"template": shared}
        if draw(st.booleans()):
            master["replicas"] = 1
        replica_specs["Master"] = master
    if has_worker:
        worker: dict[str, Any] = {"template": shared if same else draw(pod_templates(name))}
        replicas = draw(st.one_of(st.none(), st.integers(1, 16)))
        if replicas is not None:
            worker["replicas"] = replicas
        replica_specs["Worker"] = worker
    for replica in replica_specs.values():
        policy = draw(st.one_of(st.none(), st.sampled_from(["OnFailure", "Never", "ExitCode", "Always"])))
        if policy is not None:
            replica["restartPolicy"] = policy
    if draw(st.integers(0, 9)) == 0:  # v1 accepts any case and normalises it
        replica_specs = {key.lower(): value for key, value in replica_specs.items()}
    spec: dict[str, Any] = {"pytorchReplicaSpecs": replica_specs}
    nproc = draw(st.one_of(st.none(), st.sampled_from(["auto", "cpu", "gpu", "1", "4"])))
    if nproc is not None:
        spec["nprocPerNode"] = nproc
    policy = draw(st.one_of(st.none(), run_policies))
    if policy is not None:
        spec["runPolicy"] = policy
    if has_worker and draw(st.integers(0, 5)) == 0:
        spec["elasticPolicy"] = draw(elastic_policies)
    job["spec"] = spec
    return job


@st.composite
def trainjobs(draw: st.DrawFn) -> Job:
    """A TrainJob (current flavour), for pass-through checks."""
    trainer: dict[str, Any] = {"numNodes": draw(st.integers(1, 8)), "image": draw(images)}
    if draw(st.booleans()):
        trainer["command"] = draw(launcher_commands)
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": draw(dns_labels)},
        "spec": {"runtimeRef": {"name": "torch-distributed"}, "trainer": trainer},
    }
