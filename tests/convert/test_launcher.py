"""Distributed semantics: launcher detection, torchrun wrapping, v1 variables, v1 host names and labels."""

from __future__ import annotations

import pytest

from ferryman.convert.launcher import HostRewriter, Launch, classify, v1_env_references
from tests.convert.jobs import codes, convert, env, node_pod, pytorchjob, trainer

RANK_REF = {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}


@pytest.mark.parametrize(
    ("command", "args", "launch", "launcher"),
    [
        (["torchrun", "--nproc_per_node=8", "train.py"], None, Launch.TORCH, "torchrun"),
        (["/usr/local/bin/torchrun"], ["train.py"], Launch.TORCH, "torchrun"),
        (["python", "-m", "torch.distributed.run", "t.py"], None, Launch.TORCH, "torchrun"),
        (["python3", "-m", "torch.distributed.launch", "t.py"], None, Launch.TORCH, "torchrun"),
        (["bash", "-c", "pip install x && torchrun t.py"], None, Launch.TORCH, "torchrun"),
        (["/bin/sh", "-ec"], ["cd /w; python -m torch.distributed.run t.py"], Launch.TORCH, "torchrun"),
        (["accelerate", "launch", "t.py"], None, Launch.OTHER, "accelerate"),
        (["python", "-m", "accelerate.commands.launch", "t.py"], None, Launch.OTHER, "accelerate"),
        (["deepspeed", "t.py"], None, Launch.OTHER, "deepspeed"),
        (["bash", "-c", "deepspeed --num_gpus 8 t.py"], None, Launch.OTHER, "deepspeed"),
        (["composer", "-n", "8", "t.py"], None, Launch.OTHER, "composer"),
        (["mpirun", "-np", "4", "python", "train.py"], None, Launch.OTHER, "mpi"),
        (["bash", "-c", "horovodrun -np 8 python t.py"], None, Launch.OTHER, "mpi"),
        (["python", "train.py"], None, Launch.PLAIN, None),
        (["env", "A=1", "python3.11", "-u", "train.py"], None, Launch.PLAIN, None),
        (["bash", "-c", "python /w/train.py --epochs 1"], None, Launch.PLAIN, None),
        (["bash", "/w/run.sh"], None, Launch.OPAQUE, None),
        (["bash", "-c", "./run.sh"], None, Launch.OPAQUE, None),
        (None, ["--epochs", "1"], Launch.OPAQUE, None),
        (["/app/trainer"], None, Launch.OPAQUE, None),
    ],
)
def test_classify(command, args, launch, launcher) -> None:
    entry = classify(command, args)
    assert (entry.launch, entry.launcher) == (launch, launcher)


def test_plain_python_is_wrapped_in_torchrun_with_one_process_per_node() -> None:
    conversion = convert(pytorchjob(command=["python3", "/opt/mnist.py", "--epochs=1"]))
    out = trainer(conversion)
    assert out["command"] == ["torchrun", "--no-python", "python3", "/opt/mnist.py", "--epochs=1"]
    assert out["numProcPerNode"] == 1
    assert "MASTER_ADDR" not in env(conversion)  # torchrun sets it for the process it starts
    assert "torchrun-wrapped" in codes(conversion)


def test_env_strategy_injects_the_v1_variables_with_v2_names() -> None:
    conversion = convert(pytorchjob(command=["python", "train.py"], workers=3), launcher="env")
    variables = env(conversion)
    assert trainer(conversion)["command"] == ["python", "train.py"]
    assert variables["MASTER_ADDR"] == "mnist-node-0-0.mnist"
    assert variables["MASTER_PORT"] == "29500"
    assert variables["WORLD_SIZE"] == "4"
    assert variables["RANK"] == RANK_REF
    assert "numProcPerNode" not in trainer(conversion)


def test_world_size_multiplies_an_integer_nproc() -> None:
    conversion = convert(pytorchjob(command=["accelerate", "launch", "t.py"], spec={"nprocPerNode": "4"}))
    assert env(conversion)["WORLD_SIZE"] == "12"


def test_launcher_jobs_get_only_the_variables_they_refer_to() -> None:
    command = ["bash", "-c", "torchrun --node_rank=$RANK --master_addr=${MASTER_ADDR} t.py"]
    conversion = convert(pytorchjob(command=command))
    assert set(env(conversion)) == {"RANK", "MASTER_ADDR", "PYTHONUNBUFFERED"}
    plain = convert(pytorchjob(command=["torchrun", "t.py"]))
    assert set(env(plain)) == {"PYTHONUNBUFFERED"}


def test_opaque_entrypoints_get_the_v1_variables_whatever_the_strategy() -> None:
    conversion = convert(pytorchjob(command=["/bin/bash", "/workspace/run.sh"]))
    assert set(env(conversion)) >= {"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK"}
    assert codes(conversion)["launcher-unknown"][0].severity == "warning"


def test_worker_only_jobs_keep_their_own_variables() -> None:
    """v1 injects MASTER_ADDR/RANK/WORLD_SIZE only when a Master exists; a Worker-only job's own stay."""
    job = pytorchjob(
        master=None, command=["python", "t.py"], container={"env": [{"name": "RANK", "value": "0"}]}
    )
    conversion = convert(job)
    assert env(conversion)["RANK"] == "0"
    assert trainer(conversion)["command"] == ["python", "t.py"]


def test_user_set_v1_variables_are_replaced_when_v1_overrode_them() -> None:
    job = pytorchjob(
        command=["python", "t.py"],
        container={
            "env": [{"name": "MASTER_ADDR", "value": "0.0.0.0"}, {"name": "WORLD_SIZE", "value": "1"}]
        },
    )
    conversion = convert(job, launcher="env")
    assert env(conversion)["MASTER_ADDR"] == "mnist-node-0-0.mnist"
    assert len(codes(conversion)["v1-env-overridden"]) == 2


def test_reserved_pet_names_are_never_copied() -> None:
    names = ["PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"]
    job = pytorchjob(container={"env": [{"name": n, "value": "1"} for n in [*names, "PET_RDZV_CONF"]]})
    conversion = convert(job)
    assert set(env(conversion)) == {"PET_RDZV_CONF", "PYTHONUNBUFFERED"}
    assert len(codes(conversion)["reserved-env"]) == 5


def test_host_rewriter() -> None:
    rewriter = HostRewriter("job", "job", has_master=True)
    assert rewriter.rewrite("job-master-0:23456") == ("job-node-0-0.job:23456", True, False)
    assert rewriter.rewrite("tcp://job-worker-2.ns.svc:1")[0] == "tcp://job-node-0-3.job.ns.svc:1"
    assert rewriter.rewrite("myjob-master-0")[1] is False  # another job's name
    assert rewriter.rewrite("job-master-0x")[1] is False
    assert rewriter.rewrite("job-worker-${I}") == ("job-worker-${I}", False, True)
    assert HostRewriter("job", "j2", has_master=False).rewrite("job-worker-2")[0] == "j2-node-0-2.j2"


def test_host_names_in_env_and_args_are_rewritten_to_the_new_name() -> None:
    name = "x" * 60
    job = pytorchjob(
        name=name,
        container={
            "args": [f"--master={name}-master-0"],
            "env": [{"name": "PEER", "value": f"{name}-worker-1"}],
        },
    )
    conversion = convert(job)
    new = conversion.trainjob["metadata"]["name"]
    assert trainer(conversion)["args"] == [f"--master={new}-node-0-0.{new}"]
    assert env(conversion)["PEER"] == f"{new}-node-0-2.{new}"


def test_replica_index_label_is_rewritten_only_when_it_is_the_node_index() -> None:
    ref = {"fieldRef": {"fieldPath": "metadata.labels['training.kubeflow.org/replica-index']"}}
    worker_only = convert(pytorchjob(master=None, container={"env": [{"name": "I", "valueFrom": ref}]}))
    assert env(worker_only)["I"] == RANK_REF
    with_master = convert(pytorchjob(container={"env": [{"name": "I", "valueFrom": ref}]}))
    assert with_master.blocked and "v1-reference" in codes(with_master)


def test_v1_env_references() -> None:
    assert v1_env_references(["--rank $(RANK) --ws ${WORLD_SIZE}", "LOCAL_RANK NODE_RANK"]) == [
        "WORLD_SIZE",
        "RANK",
    ]
    assert v1_env_references(["PET_MASTER_ADDR"]) == []


def test_host_names_in_runtime_carried_containers_are_rewritten() -> None:
    wait = {
        "name": "wait",
        "image": "busybox",
        "command": ["sh", "-c", "until nslookup mnist-master-0; do sleep 1; done"],
    }
    job = pytorchjob(pod={"initContainers": [wait]})
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        replica["template"]["spec"]["containers"].append(
            {"name": "probe", "image": "busybox", "env": [{"name": "PEER", "value": "mnist-worker-0"}]}
        )
    conversion = convert(job, derived_runtime=True)
    pod = conversion.runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"][
        "spec"
    ]
    assert pod["initContainers"][0]["command"][2] == "until nslookup mnist-node-0-0.mnist; do sleep 1; done"
    assert pod["containers"][1]["env"] == [{"name": "PEER", "value": "mnist-node-0-1.mnist"}]
    assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["initContainers"] == [wait]


def test_affinity_on_the_v1_job_name_label_selects_the_jobset() -> None:
    term = {
        "labelSelector": {
            "matchLabels": {"training.kubeflow.org/job-name": "mnist"},
            "matchExpressions": [
                {"key": "training.kubeflow.org/job-name", "operator": "In", "values": ["mnist", "other"]}
            ],
        },
        "topologyKey": "kubernetes.io/hostname",
    }
    job = pytorchjob(
        pod={"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}}
    )
    conversion = convert(job)
    (rewritten,) = node_pod(conversion)["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert rewritten["labelSelector"] == {
        "matchLabels": {"jobset.sigs.k8s.io/jobset-name": "mnist"},
        "matchExpressions": [
            {"key": "jobset.sigs.k8s.io/jobset-name", "operator": "In", "values": ["mnist", "other"]}
        ],
    }
    assert "v1-reference-rewritten" in codes(conversion) and not conversion.blocked

    term["labelSelector"] = {"matchLabels": {"training.kubeflow.org/replica-type": "worker"}}
    other = convert(
        pytorchjob(
            pod={"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}}
        )
    )
    assert codes(other)["v1-label"][0].path.endswith("template.spec.affinity")
