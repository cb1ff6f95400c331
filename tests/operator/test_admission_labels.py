"""No double runs: a suspended mirror carries no queueing system's admission label (Kueue would admit and
unsuspend it beside the v1 job); the labels wait in an annotation and come back at Takeover."""

import json
from typing import Any

from ferryman.api.cutoverpolicy import CutoverPolicySpec
from ferryman.api.kinds import ADMISSION_LABELS, HELD_LABELS_ANNOTATION
from ferryman.api.trainer import TrainerAPI
from ferryman.controller.cutover import Action, RuntimeCatalog, convert_options, decide, plan_job
from ferryman.kube.builders import build_trainjob

POLICY = {
    "apiVersion": "ferryman.dev/v1alpha1",
    "kind": "CutoverPolicy",
    "metadata": {"name": "cutover", "uid": "policy-uid"},
}
RUNTIMES = RuntimeCatalog(frozenset({"torch-distributed"}))
QUEUES = {key: f"queue-{index}" for index, key in enumerate(ADMISSION_LABELS)}  # Kueue, KAI, Volcano...


def pytorchjob() -> dict[str, Any]:
    container = {"name": "pytorch", "image": "bert:1", "command": ["torchrun", "train.py"]}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {
            "name": "bert",
            "namespace": "team-a",
            "uid": "bert-uid",
            "resourceVersion": "1",
            "labels": {**QUEUES, "team": "nlp"},
        },
        "spec": {"pytorchReplicaSpecs": {"Worker": {"replicas": 2, "template": {"spec": {
            "containers": [container]}}}}},
    }


def mode(name: str, **extra: Any) -> CutoverPolicySpec:
    takeover = {"takeover": {"v1ControllerRemoved": True}} if name == "Takeover" else {}
    return CutoverPolicySpec.model_validate({"mode": name, **takeover, **extra})


def desired(spec: CutoverPolicySpec) -> tuple[Any, dict[str, Any]]:
    job = pytorchjob()
    plan = plan_job(job, convert_options(spec, TrainerAPI.V2_2), RUNTIMES)
    decision = decide(plan, job, POLICY, spec, None)
    assert decision.action is Action.CREATE and decision.desired is not None
    return plan, decision.desired


def test_a_suspended_mirror_holds_its_admission_labels_in_an_annotation() -> None:
    _, trainjob = desired(mode("Mirror"))
    labels, annotations = trainjob["metadata"]["labels"], trainjob["metadata"]["annotations"]
    assert not set(labels) & set(ADMISSION_LABELS)
    assert labels["team"] == "nlp"
    assert json.loads(annotations[HELD_LABELS_ANNOTATION]) == QUEUES


def test_a_running_mirror_and_a_takeover_keep_them_as_labels() -> None:
    for spec in (mode("Mirror", mirror={"suspend": False}), mode("Takeover")):
        _, trainjob = desired(spec)
        assert QUEUES.items() <= trainjob["metadata"]["labels"].items()
        assert HELD_LABELS_ANNOTATION not in trainjob["metadata"]["annotations"]


def test_takeover_restores_the_labels_of_an_existing_mirror() -> None:
    _, mirror = desired(mode("Mirror"))
    job = pytorchjob()
    spec = mode("Takeover")
    plan = plan_job(job, convert_options(spec, TrainerAPI.V2_2), RUNTIMES)
    decision = decide(plan, job, POLICY, spec, mirror)
    assert decision.action is Action.UPDATE and decision.patch is not None
    metadata = decision.patch["metadata"]
    assert metadata["labels"] == {"ferryman.dev/mode": "takeover", **QUEUES}
    assert metadata["annotations"] == {HELD_LABELS_ANNOTATION: None}
    # resumed with its running PyTorchJob, but only after the labels are back: Kueue refuses a queue label
    # added to a TrainJob that is not suspended (seen on the real Kueue, e2e/test_upstream_kueue.py)
    assert decision.patch["spec"] == {"suspend": True} and decision.then == {"spec": {"suspend": False}}
    served = {**mirror, "metadata": {**mirror["metadata"], "labels": {**mirror["metadata"]["labels"],
              **metadata["labels"]}, "annotations": {}}, "spec": {**mirror["spec"], "suspend": False}}
    assert decide(plan, job, POLICY, spec, served).action is Action.KEEP


def test_builder_alone_moves_only_admission_labels() -> None:
    converted = {"metadata": {"name": "x", "labels": {**QUEUES, "a": "b"}}, "spec": {}}
    trainjob = build_trainjob(converted, source=pytorchjob(), policy=POLICY, takeover=False, suspend=True)
    assert trainjob["metadata"]["labels"]["a"] == "b"
    assert "kueue.x-k8s.io/queue-name" not in trainjob["metadata"]["labels"]
