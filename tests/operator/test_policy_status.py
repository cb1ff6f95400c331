"""What a CutoverPolicy's status says: Ready False while a new generation is applied, jobs left without a
TrainJob counted and named with why, Degraded when a Takeover leaves them run by nothing."""

from datetime import UTC, datetime
from typing import Any

from ferryman.api.base import find_condition, is_true
from ferryman.api.cutoverpolicy import CutoverMode, CutoverPolicySpec, CutoverPolicyStatus, TrainJobCounts
from ferryman.api.trainer import TrainerAPI
from ferryman.controller.cutover import (
    Action,
    Decision,
    RuntimeCatalog,
    applying_status,
    convert_options,
    plan_job,
    policy_status,
    unserved_reason,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
RUNTIMES = RuntimeCatalog(cluster=frozenset({"torch-distributed"}))


def pytorchjob(name: str, *, status: dict[str, Any] | None = None, **pod: Any) -> dict[str, Any]:
    container = {"name": "pytorch", "image": "pytorch:2", "command": ["torchrun", "train.py"]}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": "team-a", "uid": f"{name}-uid", "resourceVersion": "1"},
        "spec": {
            "pytorchReplicaSpecs": {
                "Worker": {"replicas": 2, "template": {"spec": {"containers": [container], **pod}}}
            }
        },
        **({"status": status} if status else {}),
    }


def takeover() -> CutoverPolicySpec:
    return CutoverPolicySpec.model_validate({"mode": "Takeover", "takeover": {"v1ControllerRemoved": True}})


def status_for(spec: CutoverPolicySpec, counts: TrainJobCounts, unserved: list[str]) -> CutoverPolicyStatus:
    return policy_status(
        CutoverPolicyStatus(),
        spec,
        {},
        generation=3,
        trainer_api=TrainerAPI.V2_2,
        trainer_missing=False,
        train_jobs=counts,
        unserved=unserved,
        rate_limiter=None,
        report_config_map="ferryman-system/ferryman-plan-p",
        at=NOW,
    )


def test_blocked_and_conflicting_jobs_are_named_with_why_finished_ones_are_not() -> None:
    options = convert_options(takeover(), TrainerAPI.V2_2)
    blocked = plan_job(pytorchjob("norun"), options, RuntimeCatalog())  # its runtime is not installed
    assert blocked.blocked
    reason = unserved_reason(blocked, Decision(Action.SKIP, reason="blocked"))
    assert reason == "PyTorchJob team-a/norun: blocked (runtime-missing)"
    done = {"conditions": [{"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded"}]}
    finished = plan_job(pytorchjob("old", status=done), options, RuntimeCatalog())
    assert unserved_reason(finished, Decision(Action.SKIP, reason="blocked")) is None
    ok = plan_job(pytorchjob("ok"), options, RUNTIMES)
    conflict = Decision(Action.CONFLICT, reason="the TrainJob serves another PyTorchJob")
    assert unserved_reason(ok, conflict) == "PyTorchJob team-a/ok: the TrainJob serves another PyTorchJob"
    assert unserved_reason(ok, Decision(Action.CREATE)) is None


def test_a_takeover_leaving_jobs_unserved_is_degraded_and_says_why() -> None:
    unserved = [f"team-a/job-{i}: blocked (sidecar)" for i in range(7)]
    status = status_for(takeover(), TrainJobCounts(present=3, not_served=7), unserved)
    degraded = find_condition(status.conditions, "Degraded")
    assert degraded is not None and is_true(status.conditions, "Degraded")
    assert degraded.reason == "JobsNotServed" and degraded.observed_generation == 3
    assert degraded.message.startswith("7 jobs are run by neither Training Operator v1 nor Trainer: ")
    assert "team-a/job-4: blocked (sidecar)" in degraded.message and "job-5" not in degraded.message
    assert degraded.message.endswith("and 2 more (see the report)")
    ready = find_condition(status.conditions, "Ready")
    assert ready is not None and "7 not served" in ready.message


def test_mirror_and_plan_are_never_degraded() -> None:
    mirror = CutoverPolicySpec.model_validate({"mode": "Mirror"})
    status = status_for(mirror, TrainJobCounts(not_served=1), ["team-a/a: blocked (sidecar)"])
    degraded = find_condition(status.conditions, "Degraded")
    assert degraded is not None and not is_true(status.conditions, "Degraded")
    assert degraded.reason == "NotMirrored" and "v1 still runs them" in degraded.message
    plan = status_for(CutoverPolicySpec(), TrainJobCounts(), [])
    assert not is_true(plan.conditions, "Degraded")
    all_served = status_for(takeover(), TrainJobCounts(present=2), [])
    assert find_condition(all_served.conditions, "Degraded").reason == "AllServed"  # type: ignore[union-attr]


def test_a_new_generation_is_not_ready_until_applied() -> None:
    reconciled = status_for(takeover(), TrainJobCounts(present=2), [])
    assert is_true(reconciled.conditions, "Ready")
    applying = applying_status(reconciled, 4, CutoverMode.MIRROR, NOW)
    assert applying is not None
    ready = find_condition(applying.conditions, "Ready")
    assert ready is not None and not is_true(applying.conditions, "Ready")
    assert (ready.reason, ready.observed_generation) == ("Applying", 4)
    assert "mode Mirror" in ready.message
    assert applying.observed_generation == 3, "the status as a whole still describes generation 3"
    assert is_true(applying.conditions, "Progressing")
    # already reconciled (or being reconciled) for that generation: nothing to write
    assert applying_status(reconciled, 3, CutoverMode.TAKEOVER, NOW) is None
    assert applying_status(applying, 4, CutoverMode.MIRROR, NOW) is None


def tfjob(name: str, replicas: dict[str, int]) -> dict[str, Any]:
    container = {"name": "tensorflow", "image": "tf:2", "command": ["python", "train.py"]}
    template = {"spec": {"containers": [container]}}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": name, "namespace": "team-a", "uid": f"{name}-uid", "resourceVersion": "1"},
        "spec": {"tfReplicaSpecs": {t: {"replicas": n, "template": template} for t, n in replicas.items()}},
    }


def test_the_plan_is_counted_per_kind_and_kinds_not_installed_are_named() -> None:
    spec = CutoverPolicySpec.model_validate({"kinds": ["PyTorchJob", "TFJob", "XGBoostJob"]})
    options = convert_options(spec, TrainerAPI.V2_2)
    jobs = [pytorchjob("bert"), tfjob("mnist", {"Worker": 2}), tfjob("ps", {"PS": 1, "Worker": 2})]
    plans = {(j["kind"], "team-a", j["metadata"]["name"]): plan_job(j, options, RUNTIMES) for j in jobs}
    served = {"PyTorchJob": "kubeflow.org/v1", "TFJob": "kubeflow.org/v1", "MPIJob": "kubeflow.org/v2beta1"}
    status = policy_status(
        CutoverPolicyStatus(),
        spec,
        plans,
        served_kinds=served,
        generation=1,
        trainer_api=TrainerAPI.V2_2,
        trainer_missing=False,
        train_jobs=TrainJobCounts(),
        unserved=[],
        rate_limiter=None,
        report_config_map=None,
        at=NOW,
    )
    assert (status.jobs, status.convertible, status.blocked) == (3, 2, 1)
    by_kind = {k.kind: k for k in status.kinds}
    assert list(by_kind) == ["PyTorchJob", "TFJob", "XGBoostJob"], "the selected kinds, in the spec's order"
    assert (by_kind["PyTorchJob"].jobs, by_kind["PyTorchJob"].blocked) == (1, 0)
    tf = by_kind["TFJob"]
    assert (tf.api_version, tf.jobs, tf.convertible, tf.blocked) == ("kubeflow.org/v1", 2, 1, 1)
    assert tf.top_blockers and all(b.example == "team-a/ps" for b in tf.top_blockers)
    assert (by_kind["XGBoostJob"].api_version, by_kind["XGBoostJob"].jobs) == (None, 0)
    ready = find_condition(status.conditions, "Ready")
    assert ready is not None and "not installed, so not watched: XGBoostJob" in ready.message
