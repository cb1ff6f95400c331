"""A converted job really runs: a PyTorchJob whose two ranks meet (a socket rendezvous at the rank-0 address
and port from their environment, agreeing on world size and ranks) succeeds under the real Training Operator
on the real node, and so does the TrainJob ferryman converts it to (launcher strategy ``env``) under the real
Trainer and JobSet controllers. Both run the `make image` image's Python in containers (torch is not
in it)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from lightkube import Client

from ferryman.api.trainer import LauncherStrategy, TrainerAPI
from ferryman.convert.options import ConvertOptions
from ferryman.convert.registry import convert_job
from ferryman_dev.realnode import RealNode
from ferryman_dev.waiting import wait_for

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(600)]

TERMINAL = {"Succeeded", "Failed"}

# Rank 0 listens on MASTER_PORT; every other rank connects to MASTER_ADDR (retrying while rank 0 starts)
# and sends its rank; rank 0 answers each with the world it saw once all WORLD_SIZE - 1 have arrived. A rank
# waits for that answer without a timeout: one that gave up would restart (OnFailure) after rank 0 has gone
# and retry its connection for minutes, leaving its pod running after its job succeeded.
RENDEZVOUS = """
import os, socket, sys, time
address, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
if rank == 0:
    server = socket.create_server(("", port))
    peers = {}
    while len(peers) < world - 1:
        connection, _ = server.accept()
        peers[int(connection.recv(16).decode())] = connection
    assert sorted(peers) == list(range(1, world)), sorted(peers)
    for connection in peers.values():
        connection.sendall(f"world {world}".encode())
        connection.close()
    print(f"rank 0 of {world}: ranks {sorted(peers)} joined")
else:
    for _ in range(300):
        try:
            connection = socket.create_connection((address, port), timeout=5)
            break
        except OSError:
            time.sleep(1)
    else:
        sys.exit(f"rank {rank}: no rank 0 at {address}:{port}")
    connection.settimeout(None)  # rank 0 answers once the last rank has arrived, however late
    connection.sendall(str(rank).encode())
    answer = connection.recv(64).decode()
    assert answer == f"world {world}", answer
    print(f"rank {rank} of {world}: {answer}")
"""


def pytorchjob(image: str) -> dict[str, Any]:
    container = {
        "name": "pytorch",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["python3", "-c", RENDEZVOUS],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
    }
    template = {"spec": {"containers": [container]}}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "rendezvous"},
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": copy.deepcopy(template)},
                "Worker": {"replicas": 2, "restartPolicy": "OnFailure", "template": copy.deepcopy(template)},
            }
        },
    }


def exited(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods once every one has a terminal phase; empty until then."""
    return pods if pods and all(p["status"].get("phase") in TERMINAL for p in pods) else []


def pod_states(pods: list[dict[str, Any]]) -> str:
    """One line per pod: its phase and each container's state, restarts and last termination."""
    lines = []
    for pod in pods:
        containers = [
            f"{c['name']} {list(c.get('state', {}))} restarts={c.get('restartCount', 0)}"
            f" last={c.get('lastState', {}).get('terminated', {}).get('reason')}"
            for c in pod["status"].get("containerStatuses", [])
        ]
        lines.append(f"{pod['metadata']['name']}: {pod['status'].get('phase')} {'; '.join(containers)}")
    return "\n".join(lines)


def status(obj: dict[str, Any], type_: str) -> str | None:
    return next(
        (c["status"] for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None
    )


def test_a_rendezvous_job_and_its_conversion_both_succeed_on_the_real_node(
    real_node: RealNode, realnode_kube: Client, realnode_namespace: str, ferryman_image: str
) -> None:
    plane, namespace = real_node.plane, realnode_namespace
    plane.merge_patch(  # the runtimes' pod templates are not PodSecurity restricted
        "v1",
        "Namespace",
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}},
    )
    job = pytorchjob(ferryman_image)
    conversion = convert_job(
        copy.deepcopy({**job, "metadata": {"name": "rendezvous", "namespace": namespace}}),
        ConvertOptions(trainer_api=TrainerAPI.V2_2, launcher=LauncherStrategy.ENV),
    )
    assert conversion.trainjob is not None, conversion
    trainjob = {**conversion.trainjob, "metadata": {"name": conversion.trainjob["metadata"]["name"]}}
    if conversion.runtime is not None:
        plane.create(conversion.runtime, namespace)
    plane.create(job, namespace)
    plane.create(trainjob, namespace)

    done = plane.wait_condition(
        "kubeflow.org/v1", "PyTorchJob", "rendezvous", "Succeeded", namespace, timeout=300
    )
    assert status(done, "Failed") != "True"
    name = trainjob["metadata"]["name"]
    done = plane.wait_condition(
        "trainer.kubeflow.org/v1alpha1", "TrainJob", name, "Complete", namespace, timeout=300
    )
    assert status(done, "Failed") != "True"
    # a job's status can turn Succeeded (its Master done) before the kubelet has reported every pod's exit
    pods = wait_for(
        lambda: exited(plane.list("v1", "Pod", namespace)),
        "every pod to exit",
        timeout=120,
        details=lambda: pod_states(plane.list("v1", "Pod", namespace)),
    )
    for pod in pods:
        assert pod["status"]["phase"] == "Succeeded", pod["metadata"]["name"]
        log = "".join(realnode_kube.log(pod["metadata"]["name"], namespace=namespace))
        assert " of 3" in log, (pod["metadata"]["name"], log)
