"""The real-node tier: the image `make image` builds runs in pods on a real kubelet node under PodSecurity
``restricted``, and Service and headless-Service names resolve through CoreDNS."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from lightkube import codecs
from lightkube.resources.core_v1 import Node, Pod

from ferryman_dev.cluster import repo_root
from ferryman_dev.image import image_config
from ferryman_dev.realnode import NODE_NAME, RealNode
from ferryman_dev.waiting import wait_for

# the first test waits for the session fixtures: the image (a build takes 5-10 minutes) and its import
pytestmark = [pytest.mark.realnode, pytest.mark.timeout(1800)]

RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}


def dockerfile_settings(path: Path) -> dict[str, Any]:
    """What the Dockerfile sets on its final image: Env (its own ENV keys), WorkingDir, User, Entrypoint."""
    env: dict[str, str] = {}
    settings: dict[str, Any] = {}
    for line in path.read_text().splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(rest))
        elif instruction == "WORKDIR":
            settings["WorkingDir"] = rest
        elif instruction == "USER":
            settings["User"] = rest
        elif instruction == "ENTRYPOINT":
            settings["Entrypoint"] = json.loads(rest)
    return {**settings, "Env": env}


def test_image_matches_the_dockerfile(ferryman_image_archive: Path) -> None:
    config = image_config(ferryman_image_archive)["config"]
    expected = dockerfile_settings(repo_root() / "Dockerfile")
    image_env = dict(pair.split("=", 1) for pair in config["Env"])
    assert {key: image_env.get(key) for key in expected["Env"]} == expected["Env"]
    assert config["User"] == expected["User"] == "65532:65532"
    assert config["Entrypoint"] == expected["Entrypoint"] == ["ferryman"]
    assert config["WorkingDir"] == expected["WorkingDir"]


def test_the_node_is_a_real_kubelet(real_node: RealNode, realnode_kube: Any) -> None:
    info = realnode_kube.get(Node, NODE_NAME).status.nodeInfo
    assert info.kubeletVersion == "v1.36.3"
    assert info.containerRuntimeVersion.startswith("containerd://1.")


def pod(name: str, image: str, *, labels: dict[str, str] | None = None, **container: Any) -> Pod:
    """A pod of ``image`` that PodSecurity ``restricted`` admits, with an emptyDir ``/tmp``."""
    return codecs.from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [
                    {
                        "name": "main",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "securityContext": RESTRICTED,
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        **container,
                    }
                ],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        }
    )


def finished(kube: Any, name: str, namespace: str, timeout: float = 180) -> str:
    """Wait until pod ``name`` has ended; its log (the pod must have Succeeded)."""
    phase = wait_for(
        lambda: (p := kube.get(Pod, name, namespace=namespace).status.phase) in ("Succeeded", "Failed") and p,
        f"pod {namespace}/{name} to end",
        timeout,
    )
    log = "".join(kube.log(name, namespace=namespace))
    assert phase == "Succeeded", f"pod {name} {phase}; log:\n{log}"
    return log


def test_image_runs_under_restricted(
    realnode_kube: Any, realnode_namespace: str, ferryman_image: str
) -> None:
    realnode_kube.create(pod("version", ferryman_image, args=["--version"]), namespace=realnode_namespace)
    log = finished(realnode_kube, "version", realnode_namespace)
    assert log.strip() == "ferryman, version 0.1.0"
    # the image's user has a name (kopf, in the operator, looks it up by uid)
    whoami = pod(
        "whoami", ferryman_image, command=["python3", "-c", "import getpass; print(getpass.getuser())"]
    )
    realnode_kube.create(whoami, namespace=realnode_namespace)
    assert finished(realnode_kube, "whoami", realnode_namespace).strip() == "ferryman"


RESOLVE_AND_FETCH = """
import socket, urllib.request
print("web", socket.gethostbyname("web"))
print("web-headless", socket.gethostbyname("web-headless.{namespace}.svc.cluster.local"))
print("body", urllib.request.urlopen("http://web/hello.txt", timeout=10).read().decode().strip())
"""


def test_service_names_resolve_through_coredns(
    realnode_kube: Any, realnode_namespace: str, ferryman_image: str
) -> None:
    ns = realnode_namespace
    server = pod(
        "web",
        ferryman_image,
        labels={"app": "web"},
        command=["sh", "-c", "echo hello > /tmp/hello.txt && exec python3 -m http.server 8080 -d /tmp"],
        ports=[{"containerPort": 8080}],
        readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    )
    realnode_kube.create(server, namespace=ns)
    for name, cluster_ip in (("web", {}), ("web-headless", {"clusterIP": "None"})):
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}], **cluster_ip},
        }
        realnode_kube.create(codecs.from_dict(service), namespace=ns)
    wait_for(
        lambda: any(
            c.type == "Ready" and c.status == "True"
            for c in realnode_kube.get(Pod, "web", namespace=ns).status.conditions or []
        ),
        "the web pod Ready",
        120,
    )
    client = pod("client", ferryman_image, command=["python3", "-c", RESOLVE_AND_FETCH.format(namespace=ns)])
    realnode_kube.create(client, namespace=ns)
    lines = dict(line.split(" ", 1) for line in finished(realnode_kube, "client", ns).splitlines())
    pod_ip = realnode_kube.get(Pod, "web", namespace=ns).status.podIP
    assert lines["web-headless"] == pod_ip  # a headless name is the pod's own address
    assert lines["web"] != pod_ip and lines["web"].startswith(
        "10.0.0."
    )  # the ClusterIP, served by kube-proxy
    assert lines["body"] == "hello"
