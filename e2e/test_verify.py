"""`ferryman verify` against the real controllers of both sides (the session's ``upstream_cluster``).

Each test runs every job it verifies at once in that control plane (verify's namespaces, nodes and
PriorityClasses are removed afterwards), so the module adds no control plane of its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferryman.api.trainer import LauncherStrategy
from ferryman.convert.options import ConvertOptions
from ferryman_dev.cluster import ControlPlane
from ferryman_dev.upstream import TRAINING_OPERATOR_MODULE, TRAINING_OPERATOR_VERSION, module_dir
from ferryman_dev.verify import render_json, render_text, verify_paths

pytestmark = pytest.mark.cluster

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "pytorchjobs"


def test_the_examples_and_the_upstream_pytorchjobs_have_no_unexplained_difference(
    upstream_cluster: ControlPlane,
) -> None:
    upstream = module_dir(TRAINING_OPERATOR_MODULE, TRAINING_OPERATOR_VERSION) / "examples" / "pytorch"
    report = verify_paths([str(EXAMPLES), str(upstream)], ConvertOptions(), plane=upstream_cluster)
    text = render_text(report)
    summary = report.summary()
    assert summary["unexplained"] == 0, text
    assert report.exit_code == 0
    compared = [job for job in report.jobs if job.status in ("equivalent", "explained")]
    assert len(compared) >= 12, text
    assert all(job.ranks >= 1 for job in compared)
    # the sidecar of the hostNetwork example no longer sees v1's variables, and the report says so
    sidecar = next(job for job in report.jobs if job.name == "gpt-rdma-hostnet")
    assert {d["explainedBy"]["code"] for d in sidecar.differences if "log-shipper" in d["path"]} == {
        "sidecar-v1-env"
    }
    # the example whose Master leaves replicas to the CRD default is refused by v1.9.4's webhook itself
    (rejected,) = [job for job in report.jobs if job.status == "v1_rejected"]
    assert rejected.name == "mnist-ddp-cpu"
    assert "spec.pytorchReplicaSpecs[Master].replicas: Forbidden: must be 1" in rejected.reason
    document = json.loads(render_json(report))
    assert document["summary"] == summary
    assert set(summary) >= {"jobs", "equivalent", "explained", "unexplained", "not_converted"}
    assert len(document["jobs"]) == summary["jobs"]


@pytest.mark.skipif(not os.environ.get("FERRYMAN_CORPUS"), reason="corpus tier: set FERRYMAN_CORPUS")
def test_the_public_corpus_has_no_unexplained_difference(upstream_cluster: ControlPlane) -> None:
    corpus = Path(os.environ["FERRYMAN_CORPUS"]) / "pytorchjobs"
    report = verify_paths([str(corpus)], ConvertOptions(), plane=upstream_cluster)
    assert report.summary()["unexplained"] == 0, render_text(report)
    assert report.summary()["explained"] + report.summary()["equivalent"] >= 15


def _plain_python_job(name: str) -> dict[str, Any]:
    """A Master + 2 Workers job started with plain `python`, reading MASTER_ADDR/RANK/WORLD_SIZE."""
    template = {
        "spec": {
            "containers": [
                {"name": "pytorch", "image": "registry.example.com/ddp:1", "command": ["python", "/train.py"]}
            ]
        }
    }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template},
                "Worker": {"replicas": 2, "restartPolicy": "OnFailure", "template": template},
            },
            "runPolicy": {"backoffLimit": 6},
        },
    }


def test_a_seeded_wrong_conversion_is_caught(upstream_cluster: ControlPlane, tmp_path: Path) -> None:
    """With --launcher env ferryman injects MASTER_ADDR with the v2 host name of node 0; dropping it, or
    pointing it at node 1, is an unexplained difference of the distributed contract."""
    names = ("seeded-right", "seeded-dropped", "seeded-wrong-host")
    (tmp_path / "jobs.yaml").write_text(yaml.safe_dump_all([_plain_python_job(n) for n in names]))

    def tamper(trainjob: dict[str, Any]) -> None:
        name = trainjob["metadata"]["name"]
        env = trainjob["spec"]["trainer"]["env"]
        master = next(e for e in env if e["name"] == "MASTER_ADDR")
        if name == "seeded-dropped":
            env.remove(master)
        elif name == "seeded-wrong-host":
            master["value"] = f"{name}-node-0-1.{name}"

    report = verify_paths(
        [str(tmp_path)], ConvertOptions(launcher=LauncherStrategy.ENV), plane=upstream_cluster, tamper=tamper
    )
    by_name = {job.name: job for job in report.jobs}
    assert by_name["seeded-right"].status == "equivalent", render_text(report)
    assert report.exit_code == 1
    for name, seen in (("seeded-dropped", None), ("seeded-wrong-host", "<rank 1>")):
        job = by_name[name]
        assert job.status == "unexplained"
        masters = [d for d in job.differences if d["path"] == "contract.master"]
        assert [(d["rank"], d["v1"], d["v2"], d["explainedBy"]) for d in masters] == [
            (rank, "<rank 0>", seen, None) for rank in range(3)
        ]
