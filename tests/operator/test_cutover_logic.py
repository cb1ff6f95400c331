"""CutoverPolicy logic without a cluster: selection, plans, TrainJob decisions, rate limit. (The v1 status a
Takeover writes: tests/operator/test_takeover_status.py, and e2e/test_takeover_controllers.py on the real
controllers.)"""

from typing import Any

import pytest

from ferryman.api.cutoverpolicy import CutoverPolicySpec
from ferryman.api.trainer import TrainerAPI
from ferryman.controller.cutover import (
    Action,
    RuntimeCatalog,
    TokenBucket,
    build_derived_runtime,
    convert_options,
    decide,
    plan_job,
    render_report,
    selects,
    summarise,
)
from ferryman.controller.discovery import served_trainer_api
from ferryman.convert.registry import convert_job

RUNTIMES = RuntimeCatalog(cluster=frozenset({"torch-distributed"}))
POLICY = {
    "apiVersion": "ferryman.dev/v1alpha1",
    "kind": "CutoverPolicy",
    "metadata": {"name": "cutover", "uid": "policy-uid"},
}


def pytorchjob(name: str = "bert", *, gpus: int = 1, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    container = {
        "name": "pytorch",
        "image": "registry.example.com/bert:1",
        "command": ["torchrun", "train.py"],
        "resources": {"limits": {"nvidia.com/gpu": gpus}},
    }
    spec = {"containers": [container], **(extra or {})}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": "team-a", "uid": f"{name}-uid", "resourceVersion": "1"},
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "template": {"spec": spec}},
                "Worker": {"replicas": 2, "template": {"spec": spec}},
            }
        },
    }


def spec(**fields: Any) -> CutoverPolicySpec:
    return CutoverPolicySpec.model_validate(fields)


def test_selection_by_namespace_and_job_labels() -> None:
    policy = spec(namespaceSelector={"matchLabels": {"cutover": "yes"}}, selector={
        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["prod"]}]
    })
    job = pytorchjob()
    assert selects(policy, job, {"cutover": "yes"})
    assert not selects(policy, job, {})
    job["metadata"]["labels"] = {"tier": "prod"}
    assert not selects(policy, job, {"cutover": "yes"})


def test_plan_flags_missing_runtime_as_blocker() -> None:
    options = convert_options(spec(), TrainerAPI.V2_2)
    plan = plan_job(pytorchjob(), options, RUNTIMES)
    assert not plan.blocked and plan.trainjob is not None
    assert plan.trainjob["metadata"]["namespace"] == "team-a"
    missing = plan_job(pytorchjob(), options, RuntimeCatalog())
    assert missing.blocked
    assert any(f.code == "runtime-missing" and "torch-distributed" in f.message for f in missing.findings)


def test_summary_counts_and_top_blockers() -> None:
    options = convert_options(spec(), TrainerAPI.V2_2)
    plans = {
        ("team-a", "ok"): plan_job(pytorchjob("ok"), options, RUNTIMES),
        ("team-a", "net"): plan_job(pytorchjob("net", extra={"hostNetwork": True}), options, RUNTIMES),
        ("team-a", "net2"): plan_job(pytorchjob("net2", extra={"hostNetwork": True}), options, RUNTIMES),
        ("team-a", "norun"): plan_job(pytorchjob("norun"), options, RuntimeCatalog()),
        ("team-a", "bad"): plan_job(pytorchjob("bad", extra={"nodeSelector": {"a": 1}}), options, RUNTIMES),
    }
    summary = summarise(plans)
    assert summary.jobs == 5 and summary.blocked == 2 and summary.convertible == 3
    assert summary.derived_runtimes == 1  # the two hostNetwork jobs share one derived runtime
    assert summary.findings.blocker >= 2
    codes = {entry.code: entry for entry in summary.top_blockers}
    assert codes["runtime-missing"].example == "team-a/norun"
    assert '"derivedRuntime": "torch-distributed-' in render_report("cutover", plans)


def test_a_derived_runtime_is_planned_in_the_jobs_namespace_and_needs_no_installed_runtime() -> None:
    options = convert_options(spec(), TrainerAPI.V2_2)
    plan = plan_job(pytorchjob("net", extra={"hostNetwork": True}), options, RuntimeCatalog())
    assert not plan.blocked and plan.runtime is not None and plan.trainjob is not None
    assert plan.runtime["metadata"]["namespace"] == "team-a"
    assert plan.trainjob["spec"]["runtimeRef"]["name"] == plan.runtime["metadata"]["name"]
    assert plan.runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"][
        "spec"
    ]["hostNetwork"] is True
    runtime = build_derived_runtime(plan.runtime, POLICY)
    assert runtime["metadata"]["labels"]["ferryman.dev/policy"] == "cutover"
    assert "ownerReferences" not in runtime["metadata"]  # shared by jobs of any policy


def test_plan_counts_findings_as_the_cli_does_on_the_authors_file() -> None:
    """A live object holds what the server and kubectl added; the Plan reports only what the author wrote."""
    written = pytorchjob("bert")
    del written["metadata"]["uid"], written["metadata"]["resourceVersion"]
    live = pytorchjob("bert")
    live["metadata"].update(
        creationTimestamp="2026-01-01T00:00:00Z",
        generation=1,
        managedFields=[{"manager": "kubectl"}],
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    )
    live["status"] = {"conditions": []}
    options = convert_options(spec(), TrainerAPI.V2_2)
    planned = plan_job(live, options, RUNTIMES)
    converted = convert_job(written, options)
    assert [f.code for f in planned.findings] == [f.code for f in converted.findings]


def _plan_and_job(name: str = "bert") -> tuple[Any, dict[str, Any]]:
    job = pytorchjob(name)
    return plan_job(job, convert_options(spec(), TrainerAPI.V2_2), RUNTIMES), job


def test_mirror_creates_suspended_then_keeps() -> None:
    plan, job = _plan_and_job()
    mirror = spec(mode="Mirror")
    decision = decide(plan, job, POLICY, mirror, None)
    assert decision.action is Action.CREATE and decision.desired is not None
    assert decision.desired["spec"]["suspend"] is True
    assert decision.desired["metadata"]["ownerReferences"][0]["kind"] == "CutoverPolicy"
    assert decide(plan, job, POLICY, mirror, decision.desired).action is Action.KEEP


def test_switch_to_takeover_reowns_and_resumes() -> None:
    plan, job = _plan_and_job()
    mirrored = decide(plan, job, POLICY, spec(mode="Mirror"), None).desired
    takeover = spec(mode="Takeover", takeover={"v1ControllerRemoved": True})
    decision = decide(plan, job, POLICY, takeover, mirrored)
    assert decision.action is Action.UPDATE and decision.patch is not None
    assert decision.patch["spec"] == {"suspend": False}
    assert decision.patch["metadata"]["ownerReferences"][0]["kind"] == "PyTorchJob"


def test_a_takeover_suspends_and_resumes_its_trainjob_with_the_pytorchjob_even_while_running() -> None:
    plan, job = _plan_and_job()
    takeover = spec(mode="Takeover", takeover={"v1ControllerRemoved": True})
    running = decide(plan, job, POLICY, takeover, None).desired
    assert running is not None and running["spec"]["suspend"] is False
    job["spec"]["runPolicy"] = {"suspend": True}
    suspend = decide(plan, job, POLICY, takeover, running)
    assert suspend.action is Action.UPDATE and suspend.patch == {
        "metadata": {"labels": {"ferryman.dev/mode": "takeover"}},
        "spec": {"suspend": True},
    }
    job["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "team"}
    queued_plan = plan_job(job, convert_options(spec(), TrainerAPI.V2_2), RUNTIMES)
    queued = decide(queued_plan, {**job, "spec": {**job["spec"], "runPolicy": {}}}, POLICY, takeover, None)
    assert queued.desired is not None
    # queued too: Kueue's Workload for the PyTorchJob admits the TrainJob it controls as part of it (no
    # Workload of its own, seen on the real Kueue), so a PyTorchJob Kueue evicts suspends its TrainJob with it
    decision = decide(queued_plan, job, POLICY, takeover, queued.desired)
    assert decision.action is Action.UPDATE and decision.patch is not None
    assert decision.patch["spec"] == {"suspend": True}


def test_a_trainjob_without_ownerreference_and_label_is_never_adopted() -> None:
    """Issue #14, item 8: a TrainJob holding the wanted name is ferryman's only when it is owned (by the
    policy or the PyTorchJob) and labelled with the source's uid; anything else is a conflict, left alone."""
    plan, job = _plan_and_job()
    desired = decide(plan, job, POLICY, spec(mode="Mirror"), None).desired
    assert desired is not None
    metadata = desired["metadata"]
    handmade = {**desired, "metadata": {"name": metadata["name"], "namespace": "team-a"}}
    forged_labels = {**desired, "metadata": {**metadata, "ownerReferences": []}}
    foreign_owner = {
        **desired,
        "metadata": {**metadata, "ownerReferences": [{**metadata["ownerReferences"][0], "uid": "someone"}]},
    }
    for existing in (handmade, forged_labels, foreign_owner):
        decision = decide(plan, job, POLICY, spec(mode="Mirror"), existing)
        assert decision.action is Action.CONFLICT and decision.patch is None
    assert "never adopts" in decide(plan, job, POLICY, spec(mode="Mirror"), handmade).reason
    assert decide(plan, job, POLICY, spec(mode="Mirror"), desired).action is Action.KEEP


def test_takeover_leaves_jobs_started_by_v1_alone() -> None:
    plan_source = pytorchjob()
    plan_source["status"] = {"conditions": [{"type": "Created", "status": "True"}]}
    plan = plan_job(plan_source, convert_options(spec(), TrainerAPI.V2_2), RUNTIMES)
    takeover = spec(mode="Takeover", takeover={"v1ControllerRemoved": True})
    assert decide(plan, plan_source, POLICY, takeover, None).action is Action.SKIP
    plan_source["status"]["conditions"].append({"type": "Succeeded", "status": "True"})
    finished = plan_job(plan_source, convert_options(spec(), TrainerAPI.V2_2), RUNTIMES)
    assert decide(finished, plan_source, POLICY, spec(mode="Mirror"), None).action is Action.SKIP


def test_token_bucket_limits_bursts_and_refills() -> None:
    bucket = TokenBucket(rate=1.0, burst=3)
    assert bucket.take(10, now=0.0) == 3
    assert bucket.take(10, now=0.5) == 0
    assert bucket.wait() == pytest.approx(0.5)
    assert bucket.take(10, now=2.0) == 2


def test_served_flavour_from_crd_schema() -> None:
    def crd(field: str) -> dict[str, Any]:
        spec_schema = {"properties": {field: {"type": "array"}}}
        return {"spec": {"versions": [{"name": "v1alpha1", "served": True, "schema": {
            "openAPIV3Schema": {"properties": {"spec": spec_schema}}}}]}}

    assert served_trainer_api(crd("runtimePatches")) is TrainerAPI.V2_2
    assert served_trainer_api(crd("podTemplateOverrides")) is TrainerAPI.V2_1
    assert served_trainer_api(crd("podSpecOverrides")) is TrainerAPI.V2_0
    assert served_trainer_api(crd("other")) is None


def test_a_malformed_job_becomes_a_blocker_not_a_crash() -> None:
    job = pytorchjob()
    job["spec"]["pytorchReplicaSpecs"] = "not a mapping"
    plan = plan_job(job, convert_options(spec(), TrainerAPI.V2_2), RUNTIMES)
    assert plan.blocked and plan.findings


def test_a_master_only_claim_converts_when_the_cluster_says_it_is_read_write_many() -> None:
    job = pytorchjob("out")
    master = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"] = {
        **job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"],
        "volumes": [{"name": "out", "persistentVolumeClaim": {"claimName": "results"}}],
    }
    master["containers"] = [{**master["containers"][0], "volumeMounts": [{"name": "out", "mountPath": "/o"}]}]
    unknown = plan_job(job, convert_options(spec(), TrainerAPI.V2_2), RUNTIMES)
    assert unknown.blocked and "role-volume" in {f.code for f in unknown.findings}
    shared = convert_options(spec(), TrainerAPI.V2_2, {("team-a", "results"): ("ReadWriteMany",)})
    assert not plan_job(job, shared, RUNTIMES).blocked
