"""Takeover end to end with the real controllers (``upstream_cluster``), the Training Operator as reference.

The same PyTorchJobs run twice: first under the real Training Operator v1.9.4, whose status is the reference
shape, then, with the Training Operator stopped and its webhooks removed (as a Takeover requires), under a
CutoverPolicy in Takeover mode: ferryman turns each into a TrainJob, Trainer into a JobSet, JobSet into Jobs
and kwok runs their pods on its GPU nodes; the status ferryman writes on the PyTorchJob must match the
reference as kwok moves the pods. The statuses met here are kept (``RECORDED``) for the ArgoCD health test
at the end of the module, which runs every check in ``deploy/argocd`` with ArgoCD's own Lua engine; so are
those of the other v1 kinds (TFJob, JAXJob, XGBoostJob, PaddleJob by the Training Operator, MPIJob v2beta1
by mpi-operator) running, succeeded, failed and suspended, and of an ExperimentMigration run to Ready.
"""

from __future__ import annotations

import contextlib
import copy
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferryman_dev.cluster import KWOK_EXIT_CODE, ControlPlane, binary
from ferryman_dev.controllers import CONTROLLERS, WEBHOOK_KINDS
from ferryman_dev.demo import write_tensorboard_logs
from ferryman_dev.operator import OperatorProcess, install_ferryman, operator_kubeconfig, run_pod_worker
from ferryman_dev.pytest_cluster import fresh_namespace
from ferryman_dev.upstream import default_runtimes, kustomize
from ferryman_dev.waiting import wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[1]
PYTORCHJOB = ("kubeflow.org/v1", "PyTorchJob")
TRAINJOB = ("trainer.kubeflow.org/v1alpha1", "TrainJob")
JOBSET = ("jobset.x-k8s.io/v1alpha2", "JobSet")
JOB = ("batch/v1", "Job")
POD = ("v1", "Pod")
POLICY = ("ferryman.dev/v1alpha1", "CutoverPolicy")
ADMISSION = "admissionregistration.k8s.io/v1"
# A runtime as torch-distributed, but failing a node's Job at its first failed pod: v1's backoffLimit 0,
# which a TrainJob cannot carry (ferryman reports it: "set them in a custom runtime").
NO_RETRIES = "torch-no-retries"

# The other v1 kinds ferryman ships a check for: (apiVersion, kind, replica specs, {replica: container}).
V1_KINDS = [
    ("kubeflow.org/v1", "TFJob", "tfReplicaSpecs", {"Worker": "tensorflow"}),
    ("kubeflow.org/v1", "JAXJob", "jaxReplicaSpecs", {"Worker": "jax"}),
    ("kubeflow.org/v1", "XGBoostJob", "xgbReplicaSpecs", {"Master": "xgboost", "Worker": "xgboost"}),
    ("kubeflow.org/v1", "PaddleJob", "paddleReplicaSpecs", {"Master": "paddle", "Worker": "paddle"}),
    ("kubeflow.org/v2beta1", "MPIJob", "mpiReplicaSpecs", {"Launcher": "mpi", "Worker": "mpi"}),
]

# Objects as the real controllers (and ferryman) left them, by (kind, what a user sees): for the ArgoCD test.
RECORDED: dict[tuple[str, str], dict[str, Any]] = {}


def gpu_job(name: str, *, exit_code: str = "never") -> dict[str, Any]:
    """A Master and one Worker with a GPU each, ended by kwok as ``exit_code`` says."""
    template = {
        "metadata": {"annotations": {KWOK_EXIT_CODE: exit_code}},
        "spec": {
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [
                {
                    "name": "pytorch",
                    "image": "ghcr.io/example/vision-train:2.4.1-cuda12.4",
                    "command": ["torchrun", "/workspace/finetune.py"],
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                }
            ],
        },
    }
    # The Master fails the v1 job at its first failure (Never); the Workers' OnFailure is the nodes' policy,
    # so the TrainJob runs on the runtime the policy names, not a derived one, and fails as its Job does.
    master = {"replicas": 1, "restartPolicy": "Never", "template": template}
    worker = {"replicas": 1, "restartPolicy": "OnFailure", "template": copy.deepcopy(template)}
    return {
        "apiVersion": PYTORCHJOB[0],
        "kind": PYTORCHJOB[1],
        "metadata": {"name": name},
        "spec": {
            "runPolicy": {"backoffLimit": 0},
            "pytorchReplicaSpecs": {"Master": master, "Worker": worker},
        },
    }


def shape(status: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """A v1 status's conditions without their times: (type, status, reason, message)."""
    return [(c["type"], c["status"], c["reason"], c["message"]) for c in status.get("conditions") or []]


def last(plane: ControlPlane, namespace: str, name: str) -> tuple[str, dict[str, int]] | None:
    """The PyTorchJob's last True condition (its printer column) and its pod counts over all replicas."""
    status = (plane.find(*PYTORCHJOB, name, namespace) or {}).get("status") or {}
    conditions = status.get("conditions") or []
    if not conditions or conditions[-1]["status"] != "True":
        return None
    pods = {key: 0 for key in ("active", "succeeded", "failed")}
    for counts in (status.get("replicaStatuses") or {}).values():
        for key in pods:
            pods[key] += counts.get(key, 0)
    return conditions[-1]["type"], pods


def wait_last(plane: ControlPlane, namespace: str, name: str, type_: str, **pods: int) -> Any:
    """The PyTorchJob once its last condition (the printer column) is ``type_`` and it counts ``pods``
    (``active=2``: two pods active, none in the other states; no ``pods``: any counts)."""

    def reached() -> bool:
        found = last(plane, namespace, name)
        counted = pods and {key: pods.get(key, 0) for key in ("active", "succeeded", "failed")}
        return found is not None and found[0] == type_ and (not counted or found[1] == counted)

    try:
        wait_for(reached, f"{name} {type_} with pods {pods or 'any'}", 120)
    except TimeoutError as timeout:
        raise AssertionError(f"{timeout}; what serves it:\n{describe(plane, namespace, name)}") from None
    return plane.find(*PYTORCHJOB, name, namespace)


def describe(plane: ControlPlane, namespace: str, name: str) -> str:
    """Job ``name``'s objects and their statuses, each serving controller's view, for a failure message."""
    found = [(kind, plane.find(*kind, name, namespace)) for kind in (PYTORCHJOB, TRAINJOB, JOBSET)]
    found += [(kind, obj) for kind in (JOB, POD) for obj in plane.list(*kind, namespace)]
    return yaml.safe_dump(
        [
            {
                "kind": kind[1],
                "name": obj["metadata"]["name"],
                "spec": obj["spec"],
                "status": obj.get("status"),
            }
            for kind, obj in found
            if obj is not None and obj["metadata"]["name"].startswith(name)
        ]
    )


def job_pods(plane: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    """The live pods of job ``name`` (v1 names them ``<name>-master-0``, JobSet ``<name>-node-0-0-<x>``)."""
    return [
        pod
        for pod in plane.list(*POD, namespace)
        if pod["metadata"]["name"].startswith(f"{name}-") and not pod["metadata"].get("deletionTimestamp")
    ]


def running_pods(plane: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    """Job ``name``'s two pods once both run."""

    def running() -> list[dict[str, Any]]:
        pods = job_pods(plane, namespace, name)
        return pods if len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods) else []

    try:
        pods: list[dict[str, Any]] = wait_for(running, f"the two pods of {name} running", 120)
    except TimeoutError as timeout:
        raise AssertionError(f"{timeout}; what serves it:\n{describe(plane, namespace, name)}") from None
    return pods


def end_pods(plane: ControlPlane, namespace: str, name: str, code: str) -> None:
    for pod in job_pods(plane, namespace, name):
        patch = {"metadata": {"annotations": {KWOK_EXIT_CODE: code}}}
        plane.merge_patch(*POD, pod["metadata"]["name"], patch, namespace)


def lifecycle(plane: ControlPlane, namespace: str, record: bool) -> dict[str, dict[str, Any]]:
    """Run the module's PyTorchJobs in ``namespace`` by whatever serves it; their statuses as they went.

    ``bert`` is held running on GPU nodes, then its pods exit 0; ``llama``'s pods exit 1 (backoffLimit 0);
    ``gpt`` runs, is suspended (its pods go), resumed, and runs to the end. With ``record``, the
    PyTorchJobs and the TrainJobs serving them are kept in ``RECORDED`` at each state.
    """
    seen: dict[str, dict[str, Any]] = {}

    def reached(state: str, name: str, condition: str, health: str, **pods: int) -> None:
        seen[state] = wait_last(plane, namespace, name, condition, **pods)
        if record:
            RECORDED["PyTorchJob", health] = seen[state]
            RECORDED["TrainJob", health] = plane.get(*TRAINJOB, name, namespace)

    plane.create(gpu_job("bert"), namespace)
    pods = running_pods(plane, namespace, "bert")
    assert all(pod["spec"]["nodeName"].startswith("gpu-node-") for pod in pods)
    reached("running", "bert", "Running", "Progressing", active=2)
    end_pods(plane, namespace, "bert", "0")
    reached("succeeded", "bert", "Succeeded", "Healthy", succeeded=2)

    plane.create(gpu_job("llama", exit_code="1"), namespace)
    reached("failed", "llama", "Failed", "Degraded")  # v1 keeps its last counts: any

    plane.create(gpu_job("gpt"), namespace)
    running_pods(plane, namespace, "gpt")
    wait_last(plane, namespace, "gpt", "Running", active=2)
    plane.merge_patch(*PYTORCHJOB, "gpt", {"spec": {"runPolicy": {"suspend": True}}}, namespace)
    reached("suspended", "gpt", "Suspended", "Suspended", active=0)
    wait_for(lambda: not job_pods(plane, namespace, "gpt"), "the suspended job's pods to go", 60)
    plane.merge_patch(*PYTORCHJOB, "gpt", {"spec": {"runPolicy": {"suspend": False}}}, namespace)
    running_pods(plane, namespace, "gpt")
    seen["resumed"] = wait_last(plane, namespace, "gpt", "Running", active=2)
    end_pods(plane, namespace, "gpt", "0")
    seen["resumed-succeeded"] = wait_last(plane, namespace, "gpt", "Succeeded", succeeded=2)
    return seen


def v1_job(kind: tuple[str, str, str, dict[str, str]], name: str, exit_code: str, **run_policy: Any) -> Any:
    """A job of ``kind`` with one pod per replica, ended by kwok as ``exit_code`` says (MPIJob: its Launcher;
    its Workers run until the launcher ends), failing at its first failed pod."""
    api_version, kind_name, field, containers = kind
    replicas = {}
    for replica, container in containers.items():
        code = exit_code if kind_name != "MPIJob" or replica == "Launcher" else "never"
        template = {
            "metadata": {"annotations": {KWOK_EXIT_CODE: code}},
            "spec": {"containers": [{"name": container, "image": "registry.example.com/train:1"}]},
        }
        replicas[replica] = {"replicas": 1, "restartPolicy": "Never", "template": template}
    return {
        "apiVersion": api_version,
        "kind": kind_name,
        "metadata": {"name": name},
        "spec": {"runPolicy": {"backoffLimit": 0, **run_policy}, field: replicas},
    }


@pytest.fixture(scope="module")
def v1_kinds(upstream_cluster: ControlPlane) -> None:
    """One job of each other v1 kind running (then succeeded), one failing and one suspended, all at once,
    under their real controllers: each kept in ``RECORDED`` as its controller wrote it in each state."""
    plane = upstream_cluster
    with fresh_namespace(plane.client(), "v1-kinds") as namespace:
        for kind in V1_KINDS:
            stem = kind[1].lower()
            plane.create(v1_job(kind, f"{stem}-run", "never"), namespace)
            plane.create(v1_job(kind, f"{stem}-fail", "1"), namespace)
            plane.create(v1_job(kind, f"{stem}-held", "never", suspend=True), namespace)
        states = (
            ("run", "Running", "Progressing"),
            ("fail", "Failed", "Degraded"),
            ("held", "Suspended", "Suspended"),
        )
        for (api_version, kind_name, _, _), (suffix, condition, health) in (
            (kind, state) for kind in V1_KINDS for state in states
        ):
            name = f"{kind_name.lower()}-{suffix}"
            RECORDED[kind_name, health] = plane.wait_condition(
                api_version, kind_name, name, condition, namespace, timeout=120
            )
        for kind in V1_KINDS:
            end_pods(plane, namespace, f"{kind[1].lower()}-run", "0")
        for api_version, kind_name, _, _ in V1_KINDS:
            RECORDED[kind_name, "Healthy"] = plane.wait_condition(
                api_version, kind_name, f"{kind_name.lower()}-run", "Succeeded", namespace, timeout=120
            )


@pytest.fixture(scope="module")
def reference(upstream_cluster: ControlPlane) -> Iterator[dict[str, dict[str, Any]]]:
    """The module's PyTorchJobs run by the real Training Operator: the statuses a Takeover must write."""
    with fresh_namespace(upstream_cluster.client(), "takeover-reference") as namespace:
        yield lifecycle(upstream_cluster, namespace, record=False)


def no_retries_runtime() -> dict[str, Any]:
    """torch-distributed as the Trainer installs it, with each node's Job failing at its first failed pod."""
    runtime = next(r for r in default_runtimes() if r["metadata"]["name"] == "torch-distributed")
    runtime = copy.deepcopy(runtime)
    runtime["metadata"]["name"] = NO_RETRIES
    for replicated in runtime["spec"]["template"]["spec"]["replicatedJobs"]:
        replicated["template"]["spec"]["backoffLimit"] = 0
    return runtime


def training_operator_webhooks() -> list[tuple[str, str]]:
    """(kind, name) of the webhook configurations the Training Operator's release registers."""
    controller = CONTROLLERS["training-operator"]
    assert controller.webhooks is not None
    docs = kustomize(controller.module_dir() / controller.webhooks)
    return [
        (d["kind"], controller.name_prefix + d["metadata"]["name"])
        for d in docs
        if d["kind"] in WEBHOOK_KINDS
    ]


@contextlib.contextmanager
def training_operator_removed(plane: ControlPlane) -> Iterator[None]:
    """The Training Operator uninstalled as a Takeover requires (process and webhooks gone, CRDs kept), and
    put back afterwards, for the next module on the session's ``upstream_cluster``."""
    webhooks = [plane.get(ADMISSION, kind, name) for kind, name in training_operator_webhooks()]
    plane.stop_component("training-operator")
    try:
        for webhook in webhooks:
            plane.delete(ADMISSION, webhook["kind"], webhook["metadata"]["name"])
        yield
    finally:
        plane.start_component("training-operator")
        for webhook in webhooks:
            kept = {
                key: webhook["metadata"][key]
                for key in ("name", "labels", "annotations")
                if key in webhook["metadata"]
            }
            plane.apply({**webhook, "metadata": kept})


def takeover_policy(namespace: str, **spec: Any) -> dict[str, Any]:
    """A Takeover CutoverPolicy named after `namespace`, over it (the v1 controller removed)."""
    return {
        "apiVersion": POLICY[0],
        "kind": POLICY[1],
        "metadata": {"name": namespace},
        "spec": {
            "mode": "Takeover",
            "takeover": {"v1ControllerRemoved": True},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            **spec,
        },
    }


@pytest.fixture(scope="module")
def takeover(
    upstream_cluster: ControlPlane,
    reference: dict[str, dict[str, Any]],
    v1_kinds: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ControlPlane, str]]:
    """The Training Operator uninstalled (process and webhooks gone, CRDs kept), ferryman running as
    deployed, and a namespace under a Takeover CutoverPolicy; everything put back afterwards. The other v1
    kinds' statuses are recorded before, while their controller runs."""
    plane = upstream_cluster
    with training_operator_removed(plane):
        install_ferryman(plane)
        plane.apply(no_retries_runtime())
        home = tmp_path_factory.mktemp("takeover-operator")
        operator = OperatorProcess(
            operator_kubeconfig(plane, home / "kubeconfig"),
            home / "operator.log",
            extra_env={"FERRYMAN_MIGRATION_SECONDS": "1"},  # the migration run to Ready is seen at once
        )
        try:
            with fresh_namespace(plane.client(), "takeover") as namespace:
                amd = {"resource": "amd.com/*", "runtime": "rocm-distributed"}
                rules = {"default": NO_RETRIES, "rules": [amd]}
                policy = takeover_policy(namespace, runtimeRules=rules)
                RECORDED["CutoverPolicy", "Progressing"] = plane.create(policy)  # before the operator saw it
                operator.start()
                try:
                    yield plane, namespace
                finally:
                    operator.stop()
                    plane.delete(*POLICY, namespace)
            operator.assert_clean()
        finally:
            operator.stop()
            plane.delete("trainer.kubeflow.org/v1alpha1", "ClusterTrainingRuntime", NO_RETRIES)


def without_times(status: dict[str, Any]) -> dict[str, Any]:
    """What must match the reference: conditions without their times, and the replicas' counts."""
    replicas = {
        replica: {key: value for key, value in counts.items() if key in ("active", "succeeded", "failed")}
        for replica, counts in (status.get("replicaStatuses") or {}).items()
    }
    return {"conditions": shape(status), "replicaStatuses": replicas}


@pytest.fixture(scope="module")
def taken_over(takeover: tuple[ControlPlane, str]) -> dict[str, dict[str, Any]]:
    """The module's PyTorchJobs run under the Takeover: their statuses as they went (and ``RECORDED``)."""
    plane, namespace = takeover
    return lifecycle(plane, namespace, record=True)


def test_a_taken_over_pytorchjob_runs_on_trainer_with_the_status_the_training_operator_writes(
    takeover: tuple[ControlPlane, str],
    taken_over: dict[str, dict[str, Any]],
    reference: dict[str, dict[str, Any]],
) -> None:
    plane, namespace = takeover
    trainjob = plane.get(*TRAINJOB, "bert", namespace)
    (owner,) = trainjob["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("PyTorchJob", "bert")
    assert trainjob["spec"]["runtimeRef"]["name"] == NO_RETRIES
    assert plane.get(*JOBSET, "bert", namespace)["metadata"]["ownerReferences"][0]["kind"] == "TrainJob"
    assert [j for j in plane.list(*JOB, namespace) if j["metadata"]["name"].startswith("bert-")]
    mismatches = {
        state: {"takeover": without_times(seen["status"]), "v1": without_times(reference[state]["status"])}
        for state, seen in taken_over.items()
        if state != "failed" and without_times(seen["status"]) != without_times(reference[state]["status"])
    }
    assert mismatches == {}, yaml.safe_dump(mismatches, width=200)
    # v1 names the replica that failed; the TrainJob says why its JobSet failed
    failed, failed_reference = shape(taken_over["failed"]["status"]), shape(reference["failed"]["status"])
    assert failed[-1][:3] == failed_reference[-1][:3] == ("Failed", "True", "PyTorchJobFailed")
    assert failed[-1][3].startswith("PyTorchJob llama is failed")


def test_deleting_a_taken_over_pytorchjob_removes_what_ferryman_created(
    takeover: tuple[ControlPlane, str],
) -> None:
    plane, namespace = takeover
    plane.create(gpu_job("vit"), namespace)
    running_pods(plane, namespace, "vit")
    plane.delete(*PYTORCHJOB, "vit", namespace)

    def gone() -> bool:
        left = [plane.find(*kind, "vit", namespace) for kind in (TRAINJOB, JOBSET)]
        jobs = [j for j in plane.list(*JOB, namespace) if j["metadata"]["name"].startswith("vit-")]
        return left == [None, None] and not jobs and not job_pods(plane, namespace, "vit")

    wait_for(gone, "the TrainJob, JobSet, Jobs and pods of vit to be deleted", 120)


def argocd_health(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    """ArgoCD's verdict on each object: the checks of deploy/argocd's argocd-cm patch, run by ArgoCD's own
    Lua engine (``e2e/bins/argocd-lua``, argo-cd v3.2.0's util/lua)."""
    data = yaml.safe_load((ROOT / "deploy" / "argocd" / "argocd-cm-patch.yaml").read_text())["data"]
    verdicts = subprocess.run(
        [str(binary("argocd-lua"))],
        input=json.dumps({"data": data, "objects": objects}),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return list(json.loads(verdicts))


def migration(name: str, **spec: Any) -> dict[str, Any]:
    def volume(path: str, claim: str) -> dict[str, Any]:
        return {"mountPath": path, "volume": {"persistentVolumeClaim": {"claimName": claim}}}

    return {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "ExperimentMigration",
        "metadata": {"name": name},
        "spec": {
            "source": {"uri": "tensorboard:/logs/tb", "volumes": [volume("/logs", "logs")]},
            "destination": {"uri": "sqlite:////out/x.db", "volumes": [volume("/out", "out")]},
            **spec,
        },
    }


MIGRATION = ("ferryman.dev/v1alpha1", "ExperimentMigration")


def once(plane: ControlPlane, kind: tuple[str, str], name: str, namespace: str, type_: str) -> Any:
    """The object once its condition ``type_`` is True (once it has a status, for an empty ``type_``)."""

    def reached() -> dict[str, Any] | None:
        obj = plane.find(*kind, name, namespace)
        status = (obj or {}).get("status") or {}
        conditions = status.get("conditions") or []
        ok = any(c["type"] == type_ and c["status"] == "True" for c in conditions) if type_ else status
        return obj if ok else None

    found: dict[str, Any] = wait_for(reached, f"{kind[1]} {name} {type_ or 'status'}", 60)
    return found


def migrated(plane: ControlPlane, namespace: str, scratch: Path) -> Any:
    """An ExperimentMigration of TensorBoard logs into another log directory run to Ready: its worker pod,
    on a kwok node, run here as the kubelet would (``run_pod_worker``)."""
    logs = scratch / "tensorboard"
    write_tensorboard_logs(logs)

    def here(path: Path) -> list[dict[str, Any]]:  # kwok's pod runs here: an emptyDir stands for its volume
        return [{"mountPath": str(path), "volume": {"emptyDir": {}}}]

    done = migration("done")
    done["spec"]["source"] = {"uri": f"tensorboard:{logs}", "volumes": here(logs)}
    done["spec"]["destination"] = {"uri": f"tensorboard:{scratch / 'copied'}", "volumes": here(scratch)}
    plane.create(done, namespace)

    def scheduled() -> dict[str, Any] | None:
        pods = [p for p in plane.list(*POD, namespace) if p["metadata"]["name"].startswith("done-")]
        return pods[0] if pods and pods[0]["spec"].get("nodeName") else None

    pod = wait_for(scheduled, "the migration's worker pod on a node", 60)
    assert run_pod_worker(plane, pod, scratch / "worker") == 0
    return once(plane, MIGRATION, "done", namespace, "Ready")


def test_argocd_health_checks_judge_what_the_real_controllers_wrote(
    takeover: tuple[ControlPlane, str], taken_over: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Every kind ferryman ships a check for, in each state a user meets, as the controllers wrote it."""
    plane, namespace = takeover
    RECORDED["CutoverPolicy", "Healthy"] = once(plane, POLICY, namespace, "", "Ready")
    amd = gpu_job("amd")  # its rule's runtime is not installed: blocked, unserved under the Takeover
    amd["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"amd.com/gpu": 1}
    }
    amd["spec"]["pytorchReplicaSpecs"]["Worker"] = copy.deepcopy(amd["spec"]["pytorchReplicaSpecs"]["Master"])
    amd["spec"]["pytorchReplicaSpecs"]["Worker"]["restartPolicy"] = "OnFailure"
    plane.create(amd, namespace)
    RECORDED["CutoverPolicy", "Degraded"] = once(plane, POLICY, namespace, "", "Degraded")
    plane.delete(*PYTORCHJOB, "amd", namespace)

    RECORDED["ExperimentMigration", "Progressing"] = plane.create(migration("copy"), namespace)
    plane.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "clash-worker"}}, namespace
    )
    plane.create(migration("clash"), namespace)  # its workers' ServiceAccount name is taken: Stalled
    RECORDED["ExperimentMigration", "Degraded"] = once(plane, MIGRATION, "clash", namespace, "Stalled")
    plane.create(migration("paused", suspend=True), namespace)
    RECORDED["ExperimentMigration", "Suspended"] = once(plane, MIGRATION, "paused", namespace, "")
    RECORDED["ExperimentMigration", "Healthy"] = migrated(plane, namespace, tmp_path)

    judged = dict(zip(RECORDED, argocd_health(list(RECORDED.values())), strict=True))
    assert {key: verdict.get("status") or verdict for key, verdict in judged.items()} == {
        key: key[1] for key in RECORDED
    }
    shipped = yaml.safe_load((ROOT / "deploy" / "argocd" / "argocd-cm-patch.yaml").read_text())["data"]
    assert {kind for kind, _ in RECORDED} == {key.rsplit("_", 1)[1] for key in shipped}
    assert len(RECORDED) == 4 * len(shipped) - 1  # every state of each kind; a policy is never Suspended
    assert judged["PyTorchJob", "Degraded"]["message"].startswith("PyTorchJob llama is failed")
