"""Master and Worker templates that differ: one superset template where that is harmless on every node, a
blocker naming the key and both values where no single template can be right."""

from __future__ import annotations

from typing import Any

from ferryman.convert.merge import NODE_RANK
from tests.convert.jobs import codes, convert, env, node_pod, pytorchjob, runtime_pod, trainer

M = "spec.pytorchReplicaSpecs.Master"


def roles(**master: Any) -> dict[str, Any]:
    """A Master+Worker job whose Master template gets ``master``'s changes (a function of the template)."""
    job = pytorchjob()
    template = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    for change in master.values():
        change(template)
    return job


def container(template: dict[str, Any]) -> dict[str, Any]:
    return template["spec"]["containers"][0]


def test_master_only_labels_env_and_capability_are_merged_with_a_warning_per_key() -> None:
    job = roles(
        labels=lambda t: t.setdefault("metadata", {}).update(annotations={"prometheus.io/scrape": "true"}),
        env=lambda t: container(t).update(env=[{"name": "PUSHGATEWAY_URL", "value": "http://pg:9091"}]),
        caps=lambda t: container(t).update(securityContext={"capabilities": {"add": ["IPC_LOCK"]}}),
    )
    conversion = convert(job)
    assert not conversion.blocked
    pod = node_pod(conversion)
    assert pod["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    assert env(conversion)["PUSHGATEWAY_URL"] == "http://pg:9091"
    assert pod["spec"]["containers"][0]["securityContext"] == {"capabilities": {"add": ["IPC_LOCK"]}}
    merged = {f.path: f for f in codes(conversion)["replica-templates-merged"]}
    assert set(merged) == {
        f"{M}.template.metadata.annotations",
        f"{M}.template.spec.containers[0].env",
        f"{M}.template.spec.containers[0].securityContext.capabilities.add",
    }
    assert "prometheus.io/scrape" in merged[f"{M}.template.metadata.annotations"].message
    assert "PUSHGATEWAY_URL" in merged[f"{M}.template.spec.containers[0].env"].message
    assert all(f.severity == "warning" for f in merged.values())


def test_rank_literals_become_the_nodes_own_rank() -> None:
    job = pytorchjob(command=["torchrun", "--nnodes=2", "--node_rank=1", "t.py"], workers=1)
    master = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    container(master)["command"] = ["torchrun", "--nnodes=2", "--node_rank=0", "t.py"]
    container(master)["env"] = [{"name": "NODE_RANK", "value": "0"}]
    worker = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    container(worker)["env"] = [{"name": "NODE_RANK", "value": "1"}]
    conversion = convert(job)
    assert not conversion.blocked
    assert trainer(conversion)["command"] == ["torchrun", "--nnodes=2", f"--node_rank={NODE_RANK}", "t.py"]
    rank = env(conversion)["NODE_RANK"]
    assert rank["fieldRef"]["fieldPath"] == "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def test_larger_affinity_and_shared_volumes_apply_to_every_node() -> None:
    pinned = {"key": "kubernetes.io/hostname", "operator": "In", "values": ["gpu-1"]}
    wide = {**pinned, "values": ["gpu-1", "gpu-2"]}

    def affinity(expression: dict[str, Any]) -> dict[str, Any]:
        required = {"nodeSelectorTerms": [{"matchExpressions": [expression]}]}
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}

    job = pytorchjob(pod={"affinity": affinity(wide)})
    master = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    master["spec"]["affinity"] = affinity(pinned)
    master["spec"]["volumes"] = [{"name": "code", "configMap": {"name": "train-code"}}]
    container(master)["volumeMounts"] = [{"name": "code", "mountPath": "/code"}]
    conversion = convert(job)
    assert not conversion.blocked
    pod = node_pod(conversion)["spec"]
    assert pod["affinity"] == affinity(wide)
    assert pod["volumes"] == [{"name": "code", "configMap": {"name": "train-code"}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "code", "mountPath": "/code"}]


def test_a_master_only_claim_converts_only_when_every_node_may_mount_it() -> None:
    def claim(template: dict[str, Any]) -> None:
        template["spec"]["volumes"] = [{"name": "out", "persistentVolumeClaim": {"claimName": "results"}}]
        container(template)["volumeMounts"] = [{"name": "out", "mountPath": "/out"}]

    job = roles(claim=claim)
    unknown = convert(job)
    assert unknown.blocked and "access mode is unknown" in codes(unknown)["role-volume"][0].message
    rwo = convert(job, claims={("team-a", "results"): ("ReadWriteOnce",)})
    assert rwo.blocked and "ReadWriteOnce" in codes(rwo)["role-volume"][0].message
    rwx = convert(job, claims={("team-a", "results"): ("ReadWriteMany",)})
    assert not rwx.blocked and node_pod(rwx)["spec"]["volumes"][0]["name"] == "out"


def test_role_specific_rank_or_master_addr_and_other_values_block_naming_both() -> None:
    job = roles(env=lambda t: container(t).update(env=[{"name": "MASTER_ADDR", "value": "0.0.0.0"}]))
    conversion = convert(job)
    (finding,) = codes(conversion)["replica-templates-differ"]
    assert finding.severity == "blocker" and "MASTER_ADDR is set per role" in finding.message
    image = convert(roles(image=lambda t: container(t).update(image="other:1")))
    (finding,) = codes(image)["replica-templates-differ"]
    assert finding.path == f"{M}.template.spec.containers[0].image"
    assert "other:1" in finding.message and "docker.io/example/mnist:1.0" in finding.message


def test_master_only_exec_hook_runs_on_node_0_only_from_the_derived_runtime() -> None:
    hook = {"postStart": {"exec": {"command": ["/bin/notify", "started"]}}}
    conversion = convert(roles(hook=lambda t: container(t).update(lifecycle=hook)))
    assert not conversion.blocked
    command = runtime_pod(conversion)["containers"][0]["lifecycle"]["postStart"]["exec"]["command"]
    assert command[:2] == ["sh", "-c"] and "JOB_COMPLETION_INDEX" in command[2]
    assert command[3:] == ["/bin/notify", "started"]
    http = {"preStop": {"httpGet": {"path": "/stop", "port": 8080}}}
    assert convert(roles(hook=lambda t: container(t).update(lifecycle=http))).blocked
