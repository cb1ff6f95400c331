"""Mirrors follow their source: a changed PyTorchJob re-converts into its suspended TrainJob; only a change
someone else made to the TrainJob is a conflict."""

import copy
import json
from typing import Any

from ferryman.api.cutoverpolicy import CutoverPolicySpec
from ferryman.api.numbers import quantity
from ferryman.api.trainer import TrainerAPI
from ferryman.controller.cutover import (
    Action,
    RuntimeCatalog,
    convert_options,
    decide,
    first_difference,
    merge_patch,
    plan_job,
)

POLICY = {
    "apiVersion": "ferryman.dev/v1alpha1",
    "kind": "CutoverPolicy",
    "metadata": {"name": "cutover", "uid": "policy-uid"},
}
RUNTIMES = RuntimeCatalog(frozenset({"torch-distributed"}))
MIRROR = CutoverPolicySpec.model_validate({"mode": "Mirror"})


def pytorchjob(image: str = "bert:1", env: dict[str, str] | None = None, **pod: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "pytorch", "image": image, "command": ["torchrun", "train.py"]}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "bert", "namespace": "team-a", "uid": "bert-uid", "resourceVersion": image},
        "spec": {"pytorchReplicaSpecs": {"Worker": {"replicas": 2, "template": {"spec": {
            "containers": [container], **pod}}}}},
    }


def decision_for(job: dict[str, Any], existing: dict[str, Any] | None) -> Any:
    plan = plan_job(job, convert_options(MIRROR, TrainerAPI.V2_2), RUNTIMES)
    return decide(plan, job, POLICY, MIRROR, existing)


def live(created: dict[str, Any]) -> dict[str, Any]:
    """The TrainJob as the API server stores it: with its defaults."""
    stored = copy.deepcopy(created)
    stored["spec"]["managedBy"] = "trainer.kubeflow.org/trainjob-controller"
    return stored


def test_an_edited_source_updates_its_suspended_mirror_without_conflict() -> None:
    mirror = live(decision_for(pytorchjob(nodeSelector={"pool": "a"}), None).desired)
    assert decision_for(pytorchjob(nodeSelector={"pool": "a"}), mirror).action is Action.KEEP, (
        "server defaults are no change"
    )
    changed = decision_for(pytorchjob(nodeSelector={"pool": "b"}), mirror)
    assert changed.action is Action.UPDATE and changed.patch is not None
    assert '"pool": "b"' in json.dumps(changed.patch["spec"]["runtimePatches"])
    assert set(changed.patch["spec"]) == {"runtimePatches"}
    assert changed.patch["metadata"]["labels"]["ferryman.dev/spec-hash"] == (
        changed.desired["metadata"]["labels"]["ferryman.dev/spec-hash"]
    )


def test_a_source_changing_what_a_trainjob_cannot_change_replaces_its_mirror() -> None:
    mirror = live(decision_for(pytorchjob(), None).desired)
    changed = decision_for(pytorchjob("bert:2", env={"LR": "0.1"}), mirror)
    assert changed.action is Action.REPLACE and changed.desired is not None
    assert "spec.trainer" in changed.reason
    assert changed.desired["spec"]["trainer"]["image"] == "bert:2"
    assert {"name": "LR", "value": "0.1"} in changed.desired["spec"]["trainer"]["env"]


def test_a_mirror_changed_by_someone_else_is_a_conflict_naming_the_field() -> None:
    mirror = live(decision_for(pytorchjob(nodeSelector={"pool": "a"}), None).desired)
    text = json.dumps(mirror["spec"]["runtimePatches"]).replace('"pool": "a"', '"pool": "z"')
    mirror["spec"]["runtimePatches"] = json.loads(text)
    conflict = decision_for(pytorchjob(nodeSelector={"pool": "a"}), mirror)
    assert conflict.action is Action.CONFLICT
    assert "changed by someone else (spec.runtimePatches[0]." in conflict.reason
    assert conflict.reason.split("(")[1].split(")")[0].endswith("nodeSelector.pool")


def test_another_managers_runtime_patch_is_not_a_conflict_and_stays_when_the_mirror_follows() -> None:
    """Kueue's TrainJob webhook adds its own runtimePatches entry to every TrainJob (seen on the real Kueue,
    e2e/test_upstream_kueue.py); each manager owns its entries: only ferryman's are compared and patched."""
    kueue = {"manager": "kueue.x-k8s.io/manager", "trainingRuntimeSpec": {"template": {"spec": {}}}}
    mirror = live(decision_for(pytorchjob(nodeSelector={"pool": "a"}), None).desired)
    mirror["spec"]["runtimePatches"].append(kueue)
    assert decision_for(pytorchjob(nodeSelector={"pool": "a"}), mirror).action is Action.KEEP
    changed = decision_for(pytorchjob(nodeSelector={"pool": "b"}), mirror)
    assert changed.action is Action.UPDATE and changed.patch is not None
    ours, theirs = changed.patch["spec"]["runtimePatches"]  # a merge patch replaces the list whole
    assert '"pool": "b"' in json.dumps(ours) and theirs == kueue


def test_a_source_needing_another_runtime_replaces_the_mirror() -> None:
    mirror = live(decision_for(pytorchjob(), None).desired)
    replaced = decision_for(pytorchjob(hostNetwork=True), mirror)  # now runs on a derived runtime
    assert replaced.action is Action.REPLACE and replaced.desired is not None
    assert replaced.desired["spec"]["runtimeRef"] != mirror["spec"]["runtimeRef"]


def test_a_running_trainjob_is_left_as_it_is() -> None:
    running = live(decision_for(pytorchjob(), None).desired)
    running["spec"]["suspend"] = False
    assert decision_for(pytorchjob("bert:2"), running).action is Action.KEEP


def test_merge_patch_and_difference() -> None:
    live_spec = {"a": {"b": 1, "c": 2}, "l": [1, 2], "gone": True}
    wanted = {"a": {"b": 1}, "l": [1, 3]}
    assert merge_patch(live_spec, wanted) == {"a": {"c": None}, "l": [1, 3], "gone": None}
    assert first_difference(live_spec, wanted, "spec") == "spec.l[1]"
    assert first_difference(live_spec, {"a": {"b": 1}}, "spec") is None


def test_quantities_written_back_in_another_form_are_no_difference() -> None:
    """Trainer's defaulting webhook re-encodes a TrainJob: `nvidia.com/gpu: 1` comes back as `"1"`; a
    suspended Takeover was then taken for a hand edit and never resumed (seen on the real controllers)."""
    limits = {"nvidia.com/gpu": 1, "cpu": 0.5, "memory": "64Gi"}
    written = {"nvidia.com/gpu": "1", "cpu": "500m", "memory": "64Gi"}
    wanted = {"trainer": {"resourcesPerNode": {"limits": limits}}}
    live_spec = {"trainer": {"resourcesPerNode": {"limits": written}}}
    assert first_difference(live_spec, wanted, "spec") is None
    written["nvidia.com/gpu"] = "2"
    found = first_difference(live_spec, wanted, "spec")
    assert found == "spec.trainer.resourcesPerNode.limits.nvidia.com/gpu"
    assert first_difference({"numNodes": "1"}, {"numNodes": 1}, "spec") == "spec.numNodes", "only quantities"


def test_quantity_amounts() -> None:
    assert [quantity(v) for v in (1, "1", "1000m", "1k", "1e3", "2Ki")] == [1, 1, 1, 1000, 1000, 2048]
    assert [quantity(v) for v in ("x", True, None, "1 Gi", "")] == [None] * 5
