"""ferryman verify's comparison, on hand-made pods (the cluster test, e2e/test_verify.py, runs real ones)."""

from typing import Any

from ferryman.convert.findings import Finding, Severity
from ferryman_dev.verify.compare import Difference, Side, compare, contract, reachable_hosts
from ferryman_dev.verify.run import explain


def pod(name: str, labels: dict[str, str], env: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    container = {"name": spec.pop("container", "pytorch"), "image": "img", "command": ["python", "t.py"],
                 "env": env}
    metadata = {"name": name, "namespace": "ns", "labels": labels}
    return {"metadata": metadata, "spec": {"containers": [container], **spec}}


def service(name: str, selector: dict[str, str], headless: bool = True) -> dict[str, Any]:
    spec = {"selector": selector, **({"clusterIP": "None"} if headless else {})}
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": spec}


def test_a_host_name_reaches_a_rank_through_a_service_or_a_hostname_under_its_subdomain() -> None:
    v1 = {0: pod("j-master-0", {"r": "m0"}, []), 1: pod("j-worker-0", {"r": "w0"}, [])}
    hosts = reachable_hosts(v1, [service("j-master-0", {"r": "m0"}), service("j-worker-0", {"r": "w0"})])
    assert hosts["j-master-0"] == 0 and hosts["j-worker-0.ns.svc.cluster.local"] == 1
    v2 = {i: pod(f"p{i}", {"js": "j"}, [], hostname=f"j-node-0-{i}", subdomain="j") for i in (0, 1)}
    hosts = reachable_hosts(v2, [service("j", {"js": "j"})])
    assert hosts["j-node-0-1.j"] == 1
    assert "j" not in hosts  # the governing Service's own name reaches every pod, not one rank


def test_the_contract_is_what_the_processes_see() -> None:
    direct = {"MASTER_ADDR": "<rank 0>", "MASTER_PORT": "23456", "WORLD_SIZE": "3", "RANK": "2"}
    assert contract(direct, ["python", "t.py"], torchrun=False) == {
        "world_size": "3", "node_rank": "2", "local_processes": "1", "master": "<rank 0>", "port": "23456",
    }
    pet = {"PET_NNODES": "3", "PET_NPROC_PER_NODE": "1", "PET_NODE_RANK": "2", "PET_MASTER_ADDR": "<rank 0>",
           "PET_MASTER_PORT": "29500"}
    assert contract(pet, ["torchrun", "--no-python", "python", "t.py"], torchrun=True) == {
        "world_size": "3", "node_rank": "2", "local_processes": "1", "master": "<rank 0>", "port": "29500",
    }
    elastic = contract({**pet, "PET_RDZV_BACKEND": "c10d", "PET_RDZV_ENDPOINT": "<rank 0>:29400"},
                       ["torchrun", "--nnodes=1:3", "t.py"], torchrun=True)
    assert elastic["node_rank"] == "assigned by the c10d rendezvous" and elastic["world_size"] == "1:3 x 1"


def test_ports_only_have_to_agree_within_a_side_and_a_missing_master_is_a_difference() -> None:
    def side(port: str, master: str | None, main: str) -> Side:
        pods = {}
        for rank in (0, 1):
            env = [{"name": "WORLD_SIZE", "value": "2"}, {"name": "RANK", "value": str(rank)},
                   {"name": "MASTER_PORT", "value": port}]
            if master:
                env.append({"name": "MASTER_ADDR", "value": master})
            pods[rank] = pod(f"{main}-{rank}", {"rank": str(rank)}, env, container=main)
        return Side(pods, [service("leader", {"rank": "0"}, headless=False)], main)

    assert compare(side("23456", "leader", "pytorch"), side("29500", "leader.ns", "node")) == []
    differences = compare(side("23456", "leader", "pytorch"), side("29500", None, "node"))
    assert [(d.rank, d.path, d.v1, d.v2) for d in differences] == [
        (0, "contract.master", "<rank 0>", None), (1, "contract.master", "<rank 0>", None),
    ]


def test_only_a_finding_announcing_a_change_of_that_field_explains_a_difference() -> None:
    worker = "spec.pytorchReplicaSpecs.Worker.template.spec.containers[0]"
    carried = Finding(severity=Severity.INFO, path=f"{worker}.env", code="v1-env-injected", message="m" * 30)
    changed = Finding(severity=Severity.WARNING, path=f"{worker}.env", code="replica-templates-merged",
                      message="m" * 30)
    indexes, roles = {"containers:main": 0}, ["Master", "Worker"]
    env = Difference(1, "spec.containers[main].env.FOO", "a", "b")
    assert explain(env, [carried], "", indexes, roles) is None
    assert explain(env, [carried, changed], "", indexes, roles) is changed
    master = Difference(1, "contract.master", "<rank 0>", None)
    assert explain(master, [carried, changed], "", indexes, roles) is None


def test_a_missing_rank_or_a_refused_conversion_is_not_explained_by_a_field_finding() -> None:
    merged = Finding(severity=Severity.WARNING, path="spec.pytorchReplicaSpecs.Master.template.spec",
                     code="replica-templates-merged", message="m" * 30)
    elastic = Finding(severity=Severity.WARNING, path="spec.elasticPolicy", code="elastic-policy",
                      message="m" * 30)
    indexes, roles = {"containers:main": 0}, ["Master", "Worker"]
    missing = Difference(2, "pod", "j-worker-1", None)
    assert explain(missing, [merged], "", indexes, roles) is None
    assert explain(missing, [merged, elastic], "", indexes, roles) is elastic
    refused = Difference(None, "admission", "admitted", "rejected: ...")
    assert explain(refused, [merged, elastic], "", indexes, roles) is None
