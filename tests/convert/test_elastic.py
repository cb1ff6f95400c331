"""elasticPolicy: a fixed numNodes with a warning naming what is lost, keeping what torchrun can keep."""

from __future__ import annotations

from tests.convert.jobs import codes, convert, env, pytorchjob, trainer

ELASTIC = {
    "minReplicas": 1,
    "maxReplicas": 4,
    "rdzvBackend": "c10d",
    "maxRestarts": 3,
    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}],
}


def elastic_job(command: list[str], **elastic: object) -> dict[str, object]:
    return pytorchjob(
        "el", master=None, workers=3, command=command, spec={"elasticPolicy": {**ELASTIC, **elastic}}
    )


def test_torchrun_job_runs_a_fixed_size_with_rendezvous_and_node_range_kept() -> None:
    conversion = convert(elastic_job(["torchrun", "/opt/train.py"]))
    assert not conversion.blocked
    assert trainer(conversion)["numNodes"] == 3
    assert trainer(conversion)["command"] == ["torchrun", "--nnodes=1:4", "/opt/train.py"]
    variables = env(conversion)
    assert variables["PET_RDZV_BACKEND"] == "c10d"
    assert variables["PET_RDZV_ENDPOINT"] == "el-node-0-0.el:29500"  # node 0's stable host name
    assert variables["PET_MAX_RESTARTS"] == "3"
    added, finding = codes(conversion)["elastic-policy"]
    assert finding.severity == "warning" and added.path.endswith(".command[0]")
    for lost in ("minReplicas 1 and maxReplicas 4", "HorizontalPodAutoscaler", "Resource cpu"):
        assert lost in finding.message
    assert "--nnodes=1:4 on the torchrun command line" in finding.message


def test_a_pinned_node_count_or_another_launcher_was_never_elastic() -> None:
    pinned = convert(elastic_job(["sh", "-c", "torchrun --nnodes=3 /opt/train.py"]))
    assert "pins --nnodes=3: the job was never elastic" in codes(pinned)["elastic-policy"][0].message
    assert trainer(pinned)["command"] == ["sh", "-c", "torchrun --nnodes=3 /opt/train.py"]  # untouched
    accelerate = convert(elastic_job(["accelerate", "launch", "--num_machines=3", "train.py"]))
    assert "accelerate ignores torchrun's PET_*" in codes(accelerate)["elastic-policy"][0].message


def test_a_script_gets_the_node_range_after_its_one_torchrun() -> None:
    conversion = convert(elastic_job(["bash", "-c", "pip install -r r.txt && torchrun /opt/train.py"]))
    assert trainer(conversion)["command"][2] == "pip install -r r.txt && torchrun --nnodes=1:4 /opt/train.py"


def test_rendezvous_host_is_kept_and_v1_host_names_are_rewritten() -> None:
    etcd = convert(elastic_job(["torchrun", "t.py"], rdzvBackend="etcd", rdzvHost="etcd", rdzvPort=2379))
    assert env(etcd)["PET_RDZV_ENDPOINT"] == "etcd:2379"
    worker = convert(elastic_job(["torchrun", "t.py"], rdzvHost="el-worker-0", rdzvPort=23456))
    assert env(worker)["PET_RDZV_ENDPOINT"] == "el-node-0-0.el:23456"


def test_strict_elastic_keeps_the_block() -> None:
    conversion = convert(elastic_job(["torchrun", "t.py"]), strict_elastic=True)
    assert conversion.blocked and conversion.trainjob is None
    assert "--strict-elastic" in codes(conversion)["elastic-policy"][0].message
