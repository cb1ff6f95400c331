"""kwok ends the test cluster's pods as their ``ferryman.dev/kwok-exit-code`` annotation says."""

from __future__ import annotations

from typing import Any

import pytest

from ferryman_dev.cluster import KWOK_EXIT_CODE, ControlPlane
from ferryman_dev.waiting import wait_for

pytestmark = pytest.mark.cluster


def pod(name: str, exit_code: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {KWOK_EXIT_CODE: exit_code}},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"type": "kwok"},
            "containers": [
                {"name": "main", "image": "registry.example.com/app:1"},
                {"name": "side", "image": "x:1"},
            ],
        },
    }


def phase(cluster: ControlPlane, namespace: str, name: str, want: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        got = cluster.get("v1", "Pod", name, namespace)
        return got if got.get("status", {}).get("phase") == want else None

    found: dict[str, Any] = wait_for(reached, f"pod {name} {want}", timeout=60)
    return found


def exit_codes(obj: dict[str, Any]) -> list[int]:
    return [status["state"]["terminated"]["exitCode"] for status in obj["status"]["containerStatuses"]]


def test_pods_end_with_the_exit_code_their_annotation_names(cluster: ControlPlane, namespace: str) -> None:
    for name, code in (("zero", "0"), ("three", "3"), ("held", "never")):
        cluster.create(pod(name, code), namespace)
    assert exit_codes(phase(cluster, namespace, "zero", "Succeeded")) == [0, 0]
    failed = phase(cluster, namespace, "three", "Failed")
    assert exit_codes(failed) == [3, 3]
    assert {s["state"]["terminated"]["reason"] for s in failed["status"]["containerStatuses"]} == {"Error"}

    held = phase(cluster, namespace, "held", "Running")
    assert held["spec"]["nodeName"]
    cluster.merge_patch("v1", "Pod", "held", {"metadata": {"annotations": {KWOK_EXIT_CODE: "0"}}}, namespace)
    assert exit_codes(phase(cluster, namespace, "held", "Succeeded")) == [0, 0]
