"""The operator on the real control plane: CutoverPolicy Plan → Mirror → Takeover, CEL rejections, scale.

The operator runs as a subprocess with the ServiceAccount and ClusterRole from `deploy/` (token minted via
TokenRequest) and must never be refused (403). No Trainer runs here: what the Trainer, JobSet and the Training
Operator do with a taken-over job is tested with the real controllers in test_takeover_controllers.py.
"""

from __future__ import annotations

import contextlib
import copy
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import ApiError, Client, codecs
from lightkube.resources.core_v1 import ConfigMap
from lightkube.types import PatchType

from ferryman.kube.resources import CutoverPolicy, PyTorchJob, TrainingRuntime, TrainJob
from ferryman_dev.cluster import ControlPlane
from ferryman_dev.operator import OperatorProcess, install_ferryman, operator_kubeconfig
from ferryman_dev.relay import RelayThread
from ferryman_dev.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.cluster


def example_jobs(namespace: str) -> list[dict[str, Any]]:
    jobs = []
    for path in sorted((ROOT / "examples" / "pytorchjobs").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "PyTorchJob":
                document["metadata"]["namespace"] = namespace
                jobs.append(document)
    return jobs


def create_resnet_copies(kube: Client, namespace: str, count: int) -> None:
    """``count`` copies of the resnet50-finetune example, named resnet-0, resnet-1, ..."""
    base = next(j for j in example_jobs(namespace) if j["metadata"]["name"] == "resnet50-finetune")
    for index in range(count):
        job = copy.deepcopy(base)
        job["metadata"]["name"] = f"resnet-{index}"
        kube.create(codecs.from_dict(job))


@pytest.fixture(scope="module")
def ferryman_installed(cluster: ControlPlane) -> ControlPlane:
    install_ferryman(cluster)
    return cluster


@pytest.fixture
def operator(ferryman_installed: ControlPlane, tmp_path: Path) -> Iterator[OperatorProcess]:
    kubeconfig = operator_kubeconfig(ferryman_installed, tmp_path / "operator.kubeconfig")
    process = OperatorProcess(kubeconfig, tmp_path / "operator.log").start()
    try:
        yield process
    finally:
        process.stop()
        process.assert_clean()


def policy_status(kube: Client, name: str) -> dict[str, Any]:
    return dict(kube.get(CutoverPolicy, name).to_dict().get("status") or {})


def ready(kube: Client, name: str, generation: int | None = None) -> dict[str, Any] | None:
    obj = kube.get(CutoverPolicy, name).to_dict()
    status = obj.get("status") or {}
    wanted = generation or obj["metadata"]["generation"]
    ready_condition = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
    if status.get("observedGeneration") == wanted and ready_condition and ready_condition["status"] == "True":
        return status
    return None


def make_policy(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "CutoverPolicy",
        "metadata": {"name": name},
        "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}, **spec},
    }


def patch_policy(kube: Client, name: str, spec: dict[str, Any]) -> int:
    patched = kube.patch(CutoverPolicy, name, {"spec": spec}, patch_type=PatchType.MERGE)
    return int(patched.metadata.generation)


def trainjobs(kube: Client, namespace: str) -> dict[str, dict[str, Any]]:
    return {t.metadata.name: t.to_dict() for t in kube.list(TrainJob, namespace=namespace)}


def assert_served_once(kube: Client, namespace: str, jobs: int) -> None:
    """Each of the namespace's `jobs` PyTorchJobs has exactly one TrainJob."""
    served = trainjobs(kube, namespace).values()
    sources = [t["metadata"]["labels"]["ferryman.dev/source-uid"] for t in served]
    assert len(sources) == jobs and len(set(sources)) == jobs, "a TrainJob missing or duplicated"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"mode": "Takeover"}, "mode Takeover requires takeover.v1ControllerRemoved: true"),
        (
            {"mode": "Plan", "mirror": {"suspend": False}},
            "mirror settings apply to modes Mirror and Takeover",
        ),
        (
            {"selector": {"matchExpressions": [{"key": "team", "operator": "In"}]}},
            "operators In and NotIn need at least one value",
        ),
        ({"mode": "Migrate"}, 'Unsupported value: "Migrate"'),
        ({"rateLimit": {"creationsPerMinute": 0}}, "should be greater than or equal to 1"),
    ],
)
def test_bad_cutover_policies_are_rejected_with_readable_messages(
    ferryman_installed: ControlPlane, kube: Client, spec: dict[str, Any], message: str
) -> None:
    policy = {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "CutoverPolicy",
        "metadata": {"name": "bad-policy"},
        "spec": spec,
    }
    with pytest.raises(ApiError) as rejected:
        kube.create(codecs.from_dict(policy))
    assert rejected.value.status.code == 422
    assert message in str(rejected.value.status.message)


def test_a_policy_name_longer_than_a_label_value_is_refused(
    ferryman_installed: ControlPlane, kube: Client
) -> None:
    """The name is the ferryman.dev/policy label's value on every object the policy creates (at most 63)."""
    longest = {**make_policy("p" * 63, "default"), "spec": {}}
    kube.create(codecs.from_dict(longest))
    kube.delete(CutoverPolicy, "p" * 63)
    with pytest.raises(ApiError) as rejected:
        kube.create(codecs.from_dict({**longest, "metadata": {"name": "p" * 64}}))
    assert rejected.value.status.code == 422
    message = str(rejected.value.status.message)
    assert "metadata.name: a CutoverPolicy name is at most 63 characters" in message
    assert "ferryman.dev/policy label" in message


def test_plan_mirror_takeover_with_a_restart(operator: OperatorProcess, kube: Client, namespace: str) -> None:
    jobs = example_jobs(namespace)
    for job in jobs:
        kube.create(codecs.from_dict(job))
    name = f"cutover-{namespace}"
    kube.create(codecs.from_dict(make_policy(name, namespace, mode="Plan")))
    try:
        _plan_mirror_takeover(operator, kube, namespace, name, jobs)
    finally:
        kube.delete(CutoverPolicy, name)


def _plan_mirror_takeover(
    operator: OperatorProcess, kube: Client, namespace: str, name: str, jobs: list[dict[str, Any]]
) -> None:
    # Plan: every job converted, findings summarised, the full report in a ConfigMap, nothing created.
    status = wait_for(lambda: ready(kube, name), "the Plan to be Ready")
    assert status["jobs"] == len(jobs) and status["blocked"] == 0 and status["convertible"] == len(jobs)
    assert status["derivedRuntimes"] == 1  # the hostNetwork and sidecar example's
    assert status["trainerAPI"] == "v2.2"
    report_namespace, report_name = status["reportConfigMap"].split("/")
    report = json.loads(kube.get(ConfigMap, report_name, namespace=report_namespace).data["report.json"])
    assert sorted(j["name"] for j in report["jobs"]) == sorted(j["metadata"]["name"] for j in jobs)
    assert trainjobs(kube, namespace) == {}
    assert list(kube.list(TrainingRuntime, namespace=namespace)) == []

    # Mirror: converted TrainJobs side by side, suspended, owned by the policy, after their derived runtime.
    generation = patch_policy(kube, name, {"mode": "Mirror", "mirror": {"suspend": True}})
    status = wait_for(lambda: ready(kube, name, generation), "the Mirror to be Ready")
    mirrored = trainjobs(kube, namespace)
    assert len(mirrored) == len(jobs) == status["trainJobs"]["present"]
    (runtime,) = kube.list(TrainingRuntime, namespace=namespace)
    assert runtime.metadata.labels["ferryman.dev/policy"] == name
    users = [t for t in mirrored.values() if t["spec"]["runtimeRef"]["kind"] == "TrainingRuntime"]
    assert [t["spec"]["runtimeRef"]["name"] for t in users] == [runtime.metadata.name]
    for trainjob in mirrored.values():
        assert trainjob["spec"]["suspend"] is True
        (owner,) = trainjob["metadata"]["ownerReferences"]
        assert owner["kind"] == "CutoverPolicy" and owner["name"] == name
    # No queue admits (and unsuspends) a mirror: Kueue's label waits in an annotation until Takeover.
    queued = mirrored[_trainjob_for(mirrored, "bert-large-squad")]["metadata"]
    assert "kueue.x-k8s.io/queue-name" not in queued["labels"]
    held = json.loads(queued["annotations"]["ferryman.dev/held-labels"])
    assert held == {"kueue.x-k8s.io/queue-name": "nlp-gpu"}

    # The operator dies; meanwhile the policy moves to Takeover and a new PyTorchJob arrives.
    operator.stop(kill=True)
    generation = patch_policy(
        kube, name, {"mode": "Takeover", "mirror": None, "takeover": {"v1ControllerRemoved": True}}
    )
    late = copy.deepcopy(next(j for j in jobs if j["metadata"]["name"] == "resnet50-finetune"))
    late["metadata"]["name"] = "resnet50-late"
    kube.create(codecs.from_dict(late))
    operator.start()

    status = wait_for(lambda: ready(kube, name, generation), "the Takeover to be Ready", timeout=90)
    served = trainjobs(kube, namespace)
    assert len(served) == len(jobs) + 1 == status["trainJobs"]["present"], "TrainJobs duplicated or missing"
    queued = served[_trainjob_for(served, "bert-large-squad")]["metadata"]
    assert queued["labels"]["kueue.x-k8s.io/queue-name"] == "nlp-gpu", "Takeover restores the queue label"
    assert "ferryman.dev/held-labels" not in (queued.get("annotations") or {})
    sources = {j.metadata.name: j.to_dict() for j in kube.list(PyTorchJob, namespace=namespace)}
    for trainjob in served.values():
        (owner,) = trainjob["metadata"]["ownerReferences"]
        assert owner["kind"] == "PyTorchJob"
        run_policy = sources[owner["name"]]["spec"].get("runPolicy") or {}
        assert trainjob["spec"]["suspend"] is bool(run_policy.get("suspend")), "suspension follows the source"

    # Nothing of kopf's or ferryman's is stored on the PyTorchJobs.
    for job in kube.list(PyTorchJob, namespace=namespace):
        annotations = job.metadata.annotations or {}
        assert not [key for key in annotations if "kopf" in key or key.startswith("ferryman.dev/")]
        assert not job.metadata.finalizers


def _trainjob_for(served: dict[str, dict[str, Any]], source: str) -> str:
    return next(
        n for n, t in served.items() if t["metadata"]["annotations"]["ferryman.dev/source"].endswith(source)
    )


def kubectl_wait_ready(cluster: ControlPlane, name: str, timeout: int = 90) -> None:
    """`kubectl wait --for=condition=Ready` on a CutoverPolicy, as a user's script would."""
    subprocess.run(
        ["kubectl", f"--kubeconfig={cluster.kubeconfig}", "wait", "--for=condition=Ready",
         f"cutoverpolicy/{name}", f"--timeout={timeout}s"],
        check=True, capture_output=True, text=True,
    )


def test_takeover_with_a_blocked_job_is_degraded_and_kubectl_wait_follows_the_generation(
    namespace: str, operator: OperatorProcess, ferryman_installed: ControlPlane, kube: Client
) -> None:
    """(The namespace comes first so that it outlives the operator: events the operator still posts
    must not meet a terminating namespace.)"""
    good = next(j for j in example_jobs(namespace) if j["metadata"]["name"] == "resnet50-finetune")
    amd = copy.deepcopy(good)  # its runtime (the rule's) is not installed: blocked
    amd["metadata"]["name"] = "amd-job"
    for replica in amd["spec"]["pytorchReplicaSpecs"].values():
        replica["template"]["spec"]["containers"][0]["resources"] = {"limits": {"amd.com/gpu": 1}}
    for job in (good, amd):
        kube.create(codecs.from_dict(job))
    name = "degraded-takeover"  # label values (ferryman.dev/policy) hold at most 63 characters
    rules = {"rules": [{"resource": "amd.com/*", "runtime": "rocm-distributed"}]}
    kube.create(codecs.from_dict(make_policy(name, namespace, mode="Plan", runtimeRules=rules)))
    try:
        kubectl_wait_ready(ferryman_installed, name)
        assert policy_status(kube, name)["blocked"] == 1

        # A mode change: kubectl wait returns only once the new generation is applied, never on the Plan.
        generation = patch_policy(kube, name, {"mode": "Takeover", "takeover": {"v1ControllerRemoved": True}})
        kubectl_wait_ready(ferryman_installed, name)
        status = policy_status(kube, name)
        conditions = {c["type"]: c for c in status["conditions"]}
        assert status["observedGeneration"] == generation
        assert conditions["Ready"]["reason"] == "Serving"
        assert all(c["observedGeneration"] == generation for c in conditions.values())

        # The blocked job is run by nothing now: counted, and the Degraded condition says which and why.
        assert status["trainJobs"]["present"] == 1 and status["trainJobs"]["notServed"] == 1
        degraded = conditions["Degraded"]
        assert degraded["status"] == "True" and degraded["reason"] == "JobsNotServed"
        assert f"{namespace}/amd-job: blocked (runtime-missing)" in degraded["message"]
    finally:
        kube.delete(CutoverPolicy, name)


def conflict_events(kube: Client, namespace: str) -> list[Any]:
    from lightkube.resources.core_v1 import Event

    return [e for e in kube.list(Event, namespace=namespace) if e.reason == "TrainJobConflict"]


def reconciliations(operator: OperatorProcess) -> float:
    """CutoverPolicy reconciliations the operator process has run (its /metrics)."""
    return operator.metric("ferryman_reconcile_duration_seconds_count", kind="CutoverPolicy") or 0


def test_a_mirror_follows_its_source_and_only_a_hand_edit_is_one_conflict(
    namespace: str, operator: OperatorProcess, ferryman_installed: ControlPlane, kube: Client
) -> None:
    job = next(j for j in example_jobs(namespace) if j["metadata"]["name"] == "bert-large-squad")
    kube.create(codecs.from_dict(job))
    name = "follow-source"
    kube.create(codecs.from_dict(make_policy(name, namespace, mode="Mirror", mirror={"suspend": True})))
    try:
        kubectl_wait_ready(ferryman_installed, name)
        (mirror_name,) = trainjobs(kube, namespace)

        # The PyTorchJob's image and env change: the suspended mirror follows (created anew: a TrainJob's
        # trainer cannot change), and nothing is a conflict.
        source = kube.get(PyTorchJob, "bert-large-squad", namespace=namespace).to_dict()
        for replica in source["spec"]["pytorchReplicaSpecs"].values():
            container = replica["template"]["spec"]["containers"][0]
            container["image"] = "registry.example.com/resnet:2"
            container["env"] = [*(container.get("env") or []), {"name": "LEARNING_RATE", "value": "0.01"}]
        kube.replace(codecs.from_dict(source))

        def followed() -> dict[str, Any] | None:
            mirror = trainjobs(kube, namespace).get(mirror_name)  # absent while it is created anew
            trainer = mirror["spec"]["trainer"] if mirror else {}
            env = {e["name"]: e.get("value") for e in trainer.get("env") or []}
            image = trainer.get("image") == "registry.example.com/resnet:2"
            return trainer if image and env.get("LEARNING_RATE") == "0.01" else None

        wait_for(followed, "the mirror to follow its PyTorchJob")
        assert policy_status(kube, name)["trainJobs"]["conflicts"] == 0
        assert conflict_events(kube, namespace) == []

        # Someone edits the TrainJob itself: a conflict, told by one event however many resyncs pass.
        patches = trainjobs(kube, namespace)[mirror_name]["spec"]["runtimePatches"]
        edited = json.loads(json.dumps(patches).replace("NVIDIA-A100-SXM4-80GB", "NVIDIA-H100"))
        kube.patch(
            TrainJob, mirror_name, {"spec": {"runtimePatches": edited}},
            namespace=namespace, patch_type=PatchType.MERGE,
        )
        wait_for(lambda: policy_status(kube, name)["trainJobs"]["conflicts"] == 1 or None, "the conflict")
        assert trainjobs(kube, namespace)[mirror_name]["spec"]["runtimePatches"] == edited, "left alone"
        wait_for(lambda: conflict_events(kube, namespace) or None, "the conflict event")
        passes = reconciliations(operator)
        wait_for(lambda: reconciliations(operator) >= passes + 5, "five more reconciliations")
        (event,) = conflict_events(kube, namespace)
        assert "changed by someone else (spec.runtimePatches[0]" in event.message
    finally:
        kube.delete(CutoverPolicy, name)


def test_readiness_is_its_own_probe_and_follows_the_indexes(operator: OperatorProcess) -> None:
    wait_for(lambda: operator.readiness() == 200, "the operator to report ready once its indexes are full")
    assert operator.healthy()
    operator.stop(kill=True)
    assert operator.readiness() is None
    operator.start()
    # Not ready before the restarted operator has listed everything again, ready after.
    states = [wait_for(operator.readiness, "the readiness endpoint to answer")]
    states.append(wait_for(lambda: operator.readiness() == 200 or None, "ready again") and 200)
    assert states[-1] == 200 and set(states) <= {503, 200}


def test_leader_failover_mid_mirror_resumes_without_duplicates(
    namespace: str, ferryman_installed: ControlPlane, kube: Client, tmp_path: Path
) -> None:
    """Two replicas on one Lease: the standby waits (ready, so that rollouts proceed), takes over when the
    leader is killed."""
    kubeconfig = operator_kubeconfig(ferryman_installed, tmp_path / "operator.kubeconfig")
    lease = {"FERRYMAN_LEASE": f"lease-{namespace}"[:63]}
    leader = OperatorProcess(kubeconfig, tmp_path / "leader.log", extra_env=lease).start()
    standby = OperatorProcess(kubeconfig, tmp_path / "standby.log", extra_env=lease)
    name = "failover"
    try:
        wait_for(lambda: leader.readiness() == 200, "the first replica to lead", timeout=60)
        standby.start()
        wait_for(lambda: "waiting for Lease" in standby.output(), "the second replica to wait", timeout=60)
        assert standby.readiness() == 200, "a standby is ready: a rolling update must not wait for it to lead"
        create_resnet_copies(kube, namespace, 12)
        policy = make_policy(name, namespace, mode="Mirror", rateLimit={"creationsPerMinute": 60, "burst": 3})
        kube.create(codecs.from_dict(policy))
        wait_for(lambda: len(trainjobs(kube, namespace)) >= 3 or None, "the Mirror under way")

        leader.stop(kill=True)  # mid-Mirror
        killed, before = time.monotonic(), len(trainjobs(kube, namespace))
        assert before < 12, "the Mirror ended before the leader was killed"
        wait_for(lambda: "leading: Lease" in standby.output(), "the standby to take over", timeout=60)
        wait_for(lambda: standby.readiness() == 200, "the new leader's indexes", timeout=60)
        wait_for(lambda: len(trainjobs(kube, namespace)) > before, "the new leader's first creation", 60, 0.1)
        resumed = time.monotonic() - killed
        wait_for(lambda: ready(kube, name), "the Mirror to complete under the new leader", timeout=90)
        assert resumed < 30, f"the Mirror resumed {resumed:.0f}s after the leader was killed"
        assert_served_once(kube, namespace, 12)
    finally:
        with contextlib.suppress(ApiError):
            kube.delete(CutoverPolicy, name)
        for process in (standby, leader):
            process.stop()
            process.assert_clean()


def test_an_existing_trainjob_is_never_adopted(
    operator: OperatorProcess, kube: Client, namespace: str
) -> None:
    """Issue #14, item 8: a TrainJob someone made under the mirror's name (here the very conversion, by
    hand) lacks ferryman's ownerReference and label, so it is a conflict: never labelled, owned, changed or
    deleted with the policy."""
    from ferryman.convert.registry import convert_job

    job = next(j for j in example_jobs(namespace) if j["metadata"]["name"] == "resnet50-finetune")
    kube.create(codecs.from_dict(job))
    handmade = convert_job(job).trainjob
    assert handmade is not None
    handmade["metadata"] = {"name": handmade["metadata"]["name"], "namespace": namespace}
    handmade["spec"]["suspend"] = True
    before = kube.create(codecs.from_dict(handmade)).to_dict()["metadata"]
    name = f"foreign-{namespace}"
    kube.create(codecs.from_dict(make_policy(name, namespace, mode="Mirror", mirror={"suspend": True})))
    try:
        counts = wait_for(
            lambda: (c := policy_status(kube, name).get("trainJobs")) and c.get("conflicts") == 1 and c,
            "the conflict to be counted",
        )
        assert counts["present"] == 0 and "adopted" not in counts
        wait_for(lambda: conflict_events(kube, namespace), "the TrainJobConflict event")
        (event,) = conflict_events(kube, namespace)
        assert "never adopts" in event.message
        (trainjob,) = trainjobs(kube, namespace).values()
        after = trainjob["metadata"]
        assert not after.get("ownerReferences") and after["generation"] == before["generation"]
        assert after.get("labels") == before.get("labels")
        assert after.get("annotations") == before.get("annotations")
    finally:
        kube.delete(CutoverPolicy, name)
    wait_for(lambda: not any(p.metadata.name == name for p in kube.list(CutoverPolicy)), "the policy to go")
    assert list(trainjobs(kube, namespace)) == [handmade["metadata"]["name"]]


def created_by_events(kube: Client, policy: str) -> int:
    """TrainJobs a policy's TrainJobsCreated events say it created."""
    from lightkube.resources.core_v1 import Event

    events = kube.list(Event, namespace="*", fields={"involvedObject.name": policy})
    return sum(int(e.message.split()[1]) for e in events if e.reason == "TrainJobsCreated")


def test_creation_is_rate_limited(operator: OperatorProcess, kube: Client, namespace: str) -> None:
    create_resnet_copies(kube, namespace, 6)
    name = f"rate-{namespace}"
    policy = make_policy(name, namespace, mode="Mirror", rateLimit={"creationsPerMinute": 60, "burst": 2})
    kube.create(codecs.from_dict(policy))
    try:
        limited = wait_for(
            lambda: next(
                (
                    c
                    for c in policy_status(kube, name).get("conditions", [])
                    if c["type"] == "Ready" and c["reason"] == "RateLimited"
                ),
                None,
            ),
            "the policy to report the rate limit",
        )
        assert "wait for the rate limit" in limited["message"]
        assert len(trainjobs(kube, namespace)) < 6
        wait_for(lambda: ready(kube, name), "all TrainJobs created", timeout=60)
        assert len(trainjobs(kube, namespace)) == 6
        # /metrics tells the same: six creations, six mirrored jobs, passes that waited, their latency
        assert operator.metric("ferryman_trainjob_creations_total", policy=name) == 6
        assert operator.metric("ferryman_cutover_jobs", policy=name, state="mirrored") == 6
        assert operator.metric("ferryman_cutover_jobs", policy=name, state="pending") == 0
        assert (operator.metric("ferryman_rate_limit_waits_total", policy=name) or 0) >= 1
        assert operator.metric("ferryman_trainjob_conflicts_total", policy=name) == 0
        passes = operator.metric("ferryman_reconcile_duration_seconds_count", kind="CutoverPolicy")
        assert passes is not None and passes >= 2
        # one TrainJobsCreated event per pass on the policy, none per TrainJob: together they count all six
        wait_for(lambda: created_by_events(kube, name) == 6, "the TrainJobsCreated events to count six")
        # waiting for tokens is a retry, logged as a warning (kopf says ERROR for any kopf.TemporaryError)
        lines = operator.output().splitlines()
        waits = [line for line in lines if "wait for the creation rate limit" in line]
        assert waits and all("[WARNING ]" in line for line in waits), waits
    finally:
        kube.delete(CutoverPolicy, name)
    wait_for(
        lambda: operator.metric("ferryman_cutover_jobs", policy=name, state="selected") is None,
        "the deleted policy's series to go",
    )


def test_connections_cut_mid_mirror_are_retried_quietly(
    ferryman_installed: ControlPlane, kube: Client, namespace: str, tmp_path: Path
) -> None:
    """The operator's connections to the apiserver (kopf's watches, the informers', creations awaiting their
    answer, slowed by the relay so that a cut meets them) are cut several times while a Mirror creates: what
    failed is retried, each with one line and no traceback, and the Mirror completes with every TrainJob
    once."""
    create_resnet_copies(kube, namespace, 20)
    name = f"cut-{namespace}"
    relay = RelayThread(ferryman_installed.apiserver_port, latency=0.1)
    with relay as server:
        kubeconfig = operator_kubeconfig(ferryman_installed, tmp_path / "operator.kubeconfig", server)
        operator = OperatorProcess(kubeconfig, tmp_path / "operator.log").start()
        try:
            wait_for(lambda: operator.readiness() == 200, "the operator to be ready", timeout=60)
            rate = {"creationsPerMinute": 120, "burst": 2}
            kube.create(codecs.from_dict(make_policy(name, namespace, mode="Mirror", rateLimit=rate)))
            wait_for(lambda: len(trainjobs(kube, namespace)) >= 2 or None, "the Mirror under way", 60, 0.1)
            for _ in range(4):
                relay.drop()
                time.sleep(0.3)
                relay.restore()
                time.sleep(2.5)
            assert relay.aborted > 4, "the cuts met no open connection"
            wait_for(lambda: ready(kube, name), "the Mirror to complete", timeout=120)
            assert_served_once(kube, namespace, 20)
        finally:
            with contextlib.suppress(ApiError):
                kube.delete(CutoverPolicy, name)
            operator.stop()
    operator.assert_clean()


def test_a_stop_mid_pass_ends_the_pass_before_the_client_closes(
    operator: OperatorProcess, kube: Client, namespace: str
) -> None:
    """SIGTERM while a pass creates (at 10 a second, one pass creates for 15 s): kopf leaves the timer
    running, the operator's cleanup cancels it before closing its client (the operator fixture then finds no
    traceback)."""
    create_resnet_copies(kube, namespace, 150)
    name = f"stop-{namespace}"
    rate = {"creationsPerMinute": 600, "burst": 10}
    kube.create(codecs.from_dict(make_policy(name, namespace, mode="Mirror", rateLimit=rate)))
    try:
        wait_for(lambda: len(trainjobs(kube, namespace)) >= 20 or None, "the Mirror under way", 60, 0.1)
        operator.stop()
        assert len(trainjobs(kube, namespace)) < 150, "the Mirror ended before the stop"
        assert "Leaving it orphaned" in operator.output()  # kopf's word: the pass was under way
    finally:
        kube.delete(CutoverPolicy, name)


def test_a_restart_after_lowering_the_rate_grants_no_fresh_burst(
    namespace: str, operator: OperatorProcess, kube: Client
) -> None:
    create_resnet_copies(kube, namespace, 12)
    name = "restart-rate"
    policy = make_policy(name, namespace, mode="Mirror", rateLimit={"creationsPerMinute": 60, "burst": 5})
    kube.create(codecs.from_dict(policy))
    try:
        wait_for(lambda: policy_status(kube, name).get("rateLimiter"), "the bucket saved in the status")
        # Mid-Mirror the operator dies; meanwhile the rate is lowered to one creation every 20 s.
        operator.stop(kill=True)
        generation = patch_policy(kube, name, {"rateLimit": {"creationsPerMinute": 3, "burst": 5}})
        before = len(trainjobs(kube, namespace))
        assert before < 12
        operator.start()

        def limited() -> dict[str, Any] | None:
            status = policy_status(kube, name)
            reconciled = status.get("observedGeneration") == generation
            return status if reconciled and status["trainJobs"]["pending"] else None

        wait_for(limited, "the restarted operator's first reconciliation", timeout=90)
        wait_for(lambda: reconciliations(operator) >= 3, "three reconciliations after the restart")
        # A fresh bucket would create `burst` (5) at once; the saved one only what 3/min refilled.
        assert len(trainjobs(kube, namespace)) - before <= 2
    finally:
        kube.delete(CutoverPolicy, name)


def test_a_rate_lowered_mid_mirror_holds_from_the_next_batch(
    namespace: str, operator: OperatorProcess, kube: Client
) -> None:
    """A pass follows the live policy: lowering the rate while it creates 100 TrainJobs (burst 100) stops it
    once the creations under way end, with no burst above the new limit."""
    create_resnet_copies(kube, namespace, 100)
    name = "live-rate"
    policy = make_policy(name, namespace, mode="Mirror", rateLimit={"creationsPerMinute": 6000, "burst": 100})
    kube.create(codecs.from_dict(policy))
    try:
        for event, _ in kube.watch(TrainJob, namespace=namespace):
            if event == "ADDED":
                break
        generation = patch_policy(kube, name, {"rateLimit": {"creationsPerMinute": 1, "burst": 1}})
        before = len(trainjobs(kube, namespace))

        def reconciled() -> dict[str, Any] | None:
            status = policy_status(kube, name)
            return status if status.get("observedGeneration") == generation else None

        status = wait_for(reconciled, "a pass under the lowered rate", timeout=60)
        after = len(trainjobs(kube, namespace))
        # the creations under way (at most batches.IN_FLIGHT, 10) end, then the new bucket grants its burst
        assert after - before <= 10 + 1, (before, after)
        assert status["trainJobs"]["pending"] == 100 - after
    finally:
        kube.delete(CutoverPolicy, name)


def test_a_namespace_being_deleted_is_passed_over_quietly(operator: OperatorProcess, kube: Client) -> None:
    """A job left in a namespace that is being deleted (held there by a finalizer) is planned, but the
    apiserver creates nothing new in that namespace (NamespaceTerminating): the pass goes on without it, no
    traceback (the operator fixture checks its log)."""
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import Namespace

    namespace = f"t-terminating-{secrets.token_hex(3)}"
    kube.create(Namespace(metadata=ObjectMeta(name=namespace)))
    job = next(j for j in example_jobs(namespace) if j["metadata"]["name"] == "resnet50-finetune")
    job["metadata"]["finalizers"] = ["ferryman.dev/test-hold"]
    kube.create(codecs.from_dict(job))
    kube.delete(Namespace, namespace)
    name = "terminating"
    kube.create(codecs.from_dict(make_policy(name, namespace, mode="Mirror")))
    try:
        wait_for(lambda: ready(kube, name), "a pass over the namespace being deleted")
        assert trainjobs(kube, namespace) == {}
    finally:
        kube.delete(CutoverPolicy, name)
        no_hold = {"metadata": {"finalizers": None}}
        kube.patch(PyTorchJob, "resnet50-finetune", no_hold, namespace=namespace, patch_type=PatchType.MERGE)


def ferryman_plan(plane: ControlPlane, name: str, output: str) -> str:
    command = [sys.executable, "-m", "ferryman", "plan", name, "--kubeconfig", str(plane.kubeconfig)]
    return subprocess.run([*command, "-o", output], check=True, capture_output=True, text=True).stdout


def test_plan_preview_is_what_mirror_and_takeover_do(
    ferryman_installed: ControlPlane, operator: OperatorProcess, kube: Client, namespace: str
) -> None:
    """`ferryman plan` on a policy in Plan lists exactly the TrainJobs and runtime Mirror then creates; on the
    mirrored policy, Mirror has nothing left to do and Takeover patches each mirror (owner, queue label back)
    and writes each PyTorchJob's status."""
    jobs = example_jobs(namespace)
    for job in jobs:
        kube.create(codecs.from_dict(job))
    name = "preview"
    kube.create(codecs.from_dict(make_policy(name, namespace, mode="Plan")))
    try:
        wait_for(lambda: ready(kube, name), "the Plan to be Ready")
        text = ferryman_plan(ferryman_installed, name, "text")
        assert f"# --- Mirror: {len(jobs)} create TrainJob, 1 create TrainingRuntime\n" in text
        preview = json.loads(ferryman_plan(ferryman_installed, name, "json"))["modes"]
        created = [c["object"] for c in preview["Mirror"] if c["action"] == "create"]
        assert trainjobs(kube, namespace) == {}, "the preview writes nothing"

        generation = patch_policy(kube, name, {"mode": "Mirror", "mirror": {"suspend": True}})
        wait_for(lambda: ready(kube, name, generation), "the Mirror to be Ready")
        mirrored = trainjobs(kube, namespace)
        previewed = {o["metadata"]["name"]: o for o in created if o["kind"] == "TrainJob"}
        assert previewed.keys() == mirrored.keys()
        for trainjob_name, trainjob in mirrored.items():  # same conversion, labels, owner and suspension
            wanted = previewed[trainjob_name]["metadata"]
            assert wanted["labels"].items() <= trainjob["metadata"]["labels"].items()
            assert wanted["ownerReferences"] == trainjob["metadata"]["ownerReferences"]
            assert previewed[trainjob_name]["spec"]["suspend"] is trainjob["spec"]["suspend"] is True
        [runtime] = kube.list(TrainingRuntime, namespace=namespace)
        assert [o["metadata"]["name"] for o in created if o["kind"] == "TrainingRuntime"] == [
            runtime.metadata.name
        ]

        after = json.loads(ferryman_plan(ferryman_installed, name, "json"))["modes"]
        assert after["Mirror"] == []
        patches = {c["target"]["name"]: c["patch"] for c in after["Takeover"] if c["action"] == "patch"}
        assert patches.keys() == mirrored.keys()
        queued = patches[_trainjob_for(mirrored, "bert-large-squad")]["metadata"]
        assert queued["labels"]["kueue.x-k8s.io/queue-name"] == "nlp-gpu"
        assert queued["ownerReferences"][0]["kind"] == "PyTorchJob"
        statuses = [c for c in after["Takeover"] if c["action"] == "status"]
        assert sorted(c["target"]["name"] for c in statuses) == sorted(j["metadata"]["name"] for j in jobs)
        assert all(c["status"]["conditions"] for c in statuses)
    finally:
        kube.delete(CutoverPolicy, name)


def test_plan_over_a_thousand_jobs(operator: OperatorProcess, kube: Client, namespace: str) -> None:
    base = next(j for j in example_jobs(namespace) if j["metadata"]["name"] == "llama-8b-pretrain")
    items = []
    for index in range(1000):
        job = copy.deepcopy(base)
        job["metadata"]["name"] = f"llama-{index:04d}"
        items.append(job)
    for job in items:
        kube.create(codecs.from_dict(job))
    name = f"scale-{namespace}"
    kube.create(codecs.from_dict(make_policy(name, namespace, mode="Plan")))
    try:
        # The plan is re-read from the operator's watch indexes every resync: it is Ready as soon as it
        # covers what the operator has seen, and covers all 1,000 jobs once their watch events arrived.
        def planned_all() -> dict[str, Any] | None:
            status = ready(kube, name)
            return status if status and status["jobs"] == 1000 else None

        status = wait_for(planned_all, "the Plan over 1,000 jobs", timeout=180)
        assert status["convertible"] == 1000
    finally:
        kube.delete(CutoverPolicy, name)


def test_operator_pod_passes_pod_security_restricted(ferryman_installed: ControlPlane, kube: Client) -> None:
    """The base's namespace enforces `restricted`; a Pod from the Deployment's template is admitted."""
    from lightkube.resources.core_v1 import Namespace

    from ferryman_dev.operator import OPERATOR_NAMESPACE, rendered_base

    labels = kube.get(Namespace, OPERATOR_NAMESPACE).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    deployment = next(d for d in rendered_base() if d["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator-admission", "namespace": OPERATOR_NAMESPACE, **template["metadata"]},
        "spec": template["spec"],
    }
    kube.create(codecs.from_dict(pod), dry_run=True)
    privileged = copy.deepcopy(pod)
    privileged["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    with pytest.raises(ApiError, match="allowPrivilegeEscalation"):
        kube.create(codecs.from_dict(privileged), dry_run=True)


def test_served_flavour_is_discovered(flavour_cluster: Any, tmp_path: Path) -> None:
    """On a cluster serving Trainer v2.1 CRDs the operator emits v2.1 TrainJobs, which it admits."""
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import Namespace

    from ferryman.api.trainer import TrainerAPI

    plane = flavour_cluster(TrainerAPI.V2_1)
    install_ferryman(plane)
    kube = plane.client()
    namespace = "flavour-v2-1"
    kube.create(Namespace(metadata=ObjectMeta(name=namespace)))
    for job in example_jobs(namespace):
        kube.create(codecs.from_dict(job))
    operator = OperatorProcess(operator_kubeconfig(plane, tmp_path / "kubeconfig"), tmp_path / "operator.log")
    operator.start()
    try:
        kube.create(
            codecs.from_dict(make_policy("flavour", namespace, mode="Mirror", mirror={"suspend": True}))
        )
        status = wait_for(lambda: ready(kube, "flavour"), "the Mirror on the v2.1 cluster")
        assert status["trainerAPI"] == "v2.1"
        created = trainjobs(kube, namespace)
        assert len(created) == status["convertible"] == status["trainJobs"]["present"]
        assert any("podTemplateOverrides" in t["spec"] for t in created.values())
        assert not any("runtimePatches" in t["spec"] for t in created.values())
        kube.delete(CutoverPolicy, "flavour")
    finally:
        operator.stop()
        operator.assert_clean()


def test_a_foreign_configmap_under_the_report_name_is_left_alone(
    operator: OperatorProcess, kube: Client, namespace: str
) -> None:
    """Issue #14, item 8: a ConfigMap someone put under a policy's report name in the operator's namespace is
    not overwritten: the status names no report, and one ReportNameTaken Warning event says why."""
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import ConfigMap, Event

    name = "report-clash"  # a label value too: at most 63 characters
    foreign = ConfigMap(
        metadata=ObjectMeta(name=f"ferryman-plan-{name}", namespace="ferryman-system"), data={"mine": "keep"}
    )
    before = kube.create(foreign).metadata.resourceVersion
    kube.create(codecs.from_dict(make_policy(name, namespace, mode="Plan")))
    try:
        status = wait_for(lambda: ready(kube, name), "the Plan to be Ready")
        assert status.get("reportConfigMap") is None

        def warnings() -> list[Any]:
            return [
                e
                for e in kube.list(Event, namespace="*")
                if e.involvedObject.name == name and e.reason == "ReportNameTaken"
            ]

        (event,) = wait_for(warnings, "the ReportNameTaken event")
        assert f"ferryman-system/ferryman-plan-{name}" in event.message
        live = kube.get(ConfigMap, f"ferryman-plan-{name}", namespace="ferryman-system")
        assert live.metadata.resourceVersion == before and not live.metadata.ownerReferences
    finally:
        kube.delete(CutoverPolicy, name)
        kube.delete(ConfigMap, f"ferryman-plan-{name}", namespace="ferryman-system")
