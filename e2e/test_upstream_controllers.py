"""Converted jobs before the real controllers of both sides (``upstream_cluster``, ``mpijob_v1_cluster``).

Kubeflow Trainer, JobSet, Training Operator v1 and mpi-operator run at their pinned releases against the
test apiserver with their own admission webhooks and RBAC (``ferryman_dev.controllers``); kwok moves the pods
as the ``ferryman.dev/kwok-exit-code`` annotation says.
"""

from __future__ import annotations

import copy
import functools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferryman.api.trainer import TrainerAPI
from ferryman.convert.manifests import convert_stream
from ferryman.convert.options import ConvertOptions
from ferryman.convert.registry import convert_job
from ferryman_dev.cluster import KWOK_EXIT_CODE, ControlPlane, Rejected, wait_default_service_account
from ferryman_dev.controllers import CONTROLLERS, create_trainjob
from ferryman_dev.upstream import (
    TRAINING_OPERATOR_MODULE,
    TRAINING_OPERATOR_VERSION,
    module_dir,
    pytorchjob_examples,
)
from ferryman_dev.waiting import wait_for

pytestmark = pytest.mark.cluster

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "pytorchjobs"
TRAINJOB = ("trainer.kubeflow.org/v1alpha1", "TrainJob")
JOBSET = ("jobset.x-k8s.io/v1alpha2", "JobSet")
PYTORCHJOB = ("kubeflow.org/v1", "PyTorchJob")
POD = ("v1", "Pod")
JOB = ("batch/v1", "Job")


def sources() -> Iterator[tuple[str, str]]:
    """(label, manifest text) of examples/, the Training Operator's examples and, when set, the corpus."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        yield f"examples/{path.name}", path.read_text(encoding="utf-8")
    for path, job in pytorchjob_examples():
        yield f"upstream/{path.name}", yaml.safe_dump(job)
    corpus = os.environ.get("FERRYMAN_CORPUS")
    if corpus:
        for path in sorted((Path(corpus) / "pytorchjobs").glob("*.yaml")):
            yield f"corpus/{path.name}", path.read_text(encoding="utf-8")


def emitted(options: ConvertOptions) -> list[tuple[str, list[dict[str, Any]]]]:
    """(label, [the derived TrainingRuntime if any, the TrainJob]) of each emitted conversion."""
    conversions = []
    for label, text in sources():
        result = convert_stream(text, options)
        if result.template:  # Helm templates: placeholders, not objects
            continue
        for index, job in enumerate(result.jobs):
            conversion = job.conversion
            if conversion is None or conversion.trainjob is None:
                continue
            trainjob = copy.deepcopy(conversion.trainjob)
            trainjob["metadata"].setdefault("name", f"unnamed-{index}")  # named by a wrapper
            runtime = [copy.deepcopy(conversion.runtime)] if conversion.runtime is not None else []
            conversions.append((f"{label} job {index}", [*runtime, trainjob]))
    return conversions


def condition(obj: dict[str, Any], kind: str) -> str | None:
    """The status ("True"/"False") of condition ``kind`` of ``obj``, None when it has none."""
    for found in (obj.get("status") or {}).get("conditions") or []:
        if found["type"] == kind:
            return str(found["status"])
    return None


def new_namespace(plane: ControlPlane, stem: str) -> str:
    name = f"{stem}-{os.urandom(3).hex()}"
    plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def place(plane: ControlPlane, conversions: list[tuple[str, list[dict[str, Any]]]], stem: str) -> list[str]:
    """Give each conversion a namespace where none of its names is taken yet; the namespaces made."""
    taken: list[set[str]] = []
    namespaces: list[str] = []
    for _, objects in conversions:
        names = {objects[-1]["metadata"]["name"]}  # TrainJobs; a derived runtime's name is its content hash
        slot = next((i for i, used in enumerate(taken) if not used & names), None)
        if slot is None:
            taken.append(set())
            namespaces.append(new_namespace(plane, stem))
            slot = len(taken) - 1
        taken[slot] |= names
        for obj in objects:
            obj["metadata"]["namespace"] = namespaces[slot]
    return namespaces


def test_every_emitted_conversion_is_admitted_by_the_trainer_and_jobset_webhooks(
    upstream_cluster: ControlPlane,
) -> None:
    """Created for real (suspended, as Mirror does): the Trainer's webhooks admit each TrainJob and derived
    TrainingRuntime, and the JobSet the Trainer controller builds from them passes JobSet's webhooks."""
    conversions = emitted(ConvertOptions(trainer_api=TrainerAPI.V2_2))
    assert len(conversions) >= 10
    namespaces = place(upstream_cluster, conversions, "admit")
    refused = []
    for label, objects in conversions:
        *runtime, trainjob = objects
        trainjob["spec"]["suspend"] = True
        try:
            for obj in runtime:
                create_once(upstream_cluster, obj)
            create_trainjob(
                functools.partial(upstream_cluster.create, trainjob, trainjob["metadata"]["namespace"]),
                derived_runtime=bool(runtime),
            )
        except Rejected as rejected:
            refused.append(f"{label}: {rejected}")
    assert refused == []

    def missing_jobsets() -> list[str]:
        have = {
            (js["metadata"]["namespace"], js["metadata"]["name"])
            for namespace in namespaces
            for js in upstream_cluster.list(*JOBSET, namespace)
        }
        return [
            label
            for label, objects in conversions
            if (objects[-1]["metadata"]["namespace"], objects[-1]["metadata"]["name"]) not in have
        ]

    try:
        wait_for(lambda: not missing_jobsets(), "a JobSet for every TrainJob", timeout=90)
    except TimeoutError:
        log = upstream_cluster.process("trainer").log_tail(3000)
        pytest.fail(f"no JobSet for {missing_jobsets()}; the Trainer's log ends with:\n{log}")
    for namespace in namespaces:
        for jobset in upstream_cluster.list(*JOBSET, namespace):
            assert jobset["spec"]["suspend"] is True, jobset["metadata"]["name"]
        upstream_cluster.delete("v1", "Namespace", namespace)


def create_once(plane: ControlPlane, obj: dict[str, Any]) -> None:
    """Create ``obj`` unless it exists: jobs that need the same derived runtime share it."""
    try:
        plane.create(obj, obj["metadata"]["namespace"])
    except Rejected as rejected:
        if rejected.code != 409:
            raise


def valid_trainjob() -> dict[str, Any]:
    job = example_job(EXAMPLES / "plain-python-cpu.yaml", "PyTorchJob")
    trainjob = convert_job(job, ConvertOptions(trainer_api=TrainerAPI.V2_2)).trainjob
    assert trainjob is not None
    return {**trainjob, "metadata": {"name": trainjob["metadata"]["name"]}}


@pytest.mark.parametrize(
    ("what", "breakage", "message"),
    [
        (
            "a runtime that does not exist",
            {
                "runtimeRef": {
                    "apiGroup": "trainer.kubeflow.org",
                    "kind": "ClusterTrainingRuntime",
                    "name": "gone",
                }
            },
            'ClusterTrainingRuntime.trainer.kubeflow.org "gone" not found: '
            "specified clusterTrainingRuntime must be created before the TrainJob is created",
        ),
        (
            "a reserved PET_ variable",
            {"trainer": {"env": [{"name": "PET_NNODES", "value": "1:4"}]}},
            "must not have reserved envs, invalid envs configured: [PET_NNODES]",
        ),
    ],
    ids=["missing-runtime", "reserved-env"],
)
def test_the_trainer_webhook_rejects_what_it_must_with_its_message(
    upstream_cluster: ControlPlane, what: str, breakage: dict[str, Any], message: str
) -> None:
    trainjob = valid_trainjob()
    upstream_cluster.dry_run_create(trainjob)  # the unbroken job is admitted
    broken = copy.deepcopy(trainjob)
    for field, value in breakage.items():
        broken["spec"][field] = {**broken["spec"].get(field, {}), **value}
    with pytest.raises(Rejected) as rejected:
        upstream_cluster.dry_run_create(broken)
    assert (
        'admission webhook "validator.trainjob.trainer.kubeflow.org" denied the request'
        in rejected.value.message
    )
    assert message in rejected.value.message, what


def test_a_suspended_conversion_stays_suspended_and_runs_to_completion_once_resumed(
    upstream_cluster: ControlPlane, upstream_namespace: str
) -> None:
    trainjob = valid_trainjob()
    name = trainjob["metadata"]["name"]
    trainjob["spec"]["suspend"] = True
    upstream_cluster.create(trainjob, upstream_namespace)
    jobset = wait_for(
        lambda: upstream_cluster.find(*JOBSET, name, upstream_namespace), "the JobSet", 60
    )
    assert jobset["spec"]["suspend"] is True
    suspended = upstream_cluster.wait_condition(*TRAINJOB, name, "Suspended", upstream_namespace, timeout=60)
    time.sleep(3)  # long enough for a controller that would wrongly start pods to have started them
    assert upstream_cluster.list(*POD, upstream_namespace) == []
    assert condition(suspended, "Complete") is None

    upstream_cluster.merge_patch(*TRAINJOB, name, {"spec": {"suspend": False}}, upstream_namespace)
    done = upstream_cluster.wait_condition(*TRAINJOB, name, "Complete", upstream_namespace, timeout=180)
    assert condition(done, "Failed") != "True"
    assert condition(upstream_cluster.get(*JOBSET, name, upstream_namespace), "Completed") == "True"
    jobs = upstream_cluster.list(*JOB, upstream_namespace)
    assert jobs and all(job["status"].get("succeeded") for job in jobs)
    pods = upstream_cluster.list(*POD, upstream_namespace)
    assert len(pods) == trainjob["spec"]["trainer"]["numNodes"]
    assert all(pod["status"]["phase"] == "Succeeded" and pod["spec"]["nodeName"] for pod in pods)


def example_job(path: Path, kind: str) -> dict[str, Any]:
    """The ``kind`` document of the manifest at ``path``, named but not placed in a namespace."""
    job = next(doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc["kind"] == kind)
    job["metadata"] = {"name": job["metadata"]["name"]}
    return dict(job)


def exit_with(template: dict[str, Any], code: str) -> None:
    """Have kwok end the pods of this pod template with exit code ``code``."""
    template.setdefault("metadata", {}).setdefault("annotations", {})[KWOK_EXIT_CODE] = code


def test_the_training_operator_webhook_wants_a_masters_replicas_spelled_out(
    upstream_cluster: ControlPlane,
) -> None:
    """v1.9.4's PyTorchJob webhook refuses a Master without ``replicas: 1``, though the CRD defaults it."""
    job = example_job(EXAMPLES / "plain-python-cpu.yaml", "PyTorchJob")
    assert "replicas" not in job["spec"]["pytorchReplicaSpecs"]["Master"]
    with pytest.raises(Rejected) as rejected:
        upstream_cluster.dry_run_create(job)
    assert "spec.pytorchReplicaSpecs[Master].replicas: Forbidden: must be 1" in rejected.value.message


def test_a_pytorchjob_run_by_the_real_training_operator_succeeds_on_kwok_nodes(
    upstream_cluster: ControlPlane, upstream_namespace: str
) -> None:
    """Created, then Running while kwok holds the pods, then Succeeded once they exit 0."""
    job = example_job(EXAMPLES / "plain-python-cpu.yaml", "PyTorchJob")
    job["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = 1
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        exit_with(replica["template"], "never")
    upstream_cluster.create(job, upstream_namespace)
    name = job["metadata"]["name"]
    running = upstream_cluster.wait_condition(*PYTORCHJOB, name, "Running", upstream_namespace, timeout=180)
    assert [c["type"] for c in running["status"]["conditions"]] == ["Created", "Running"]
    pods = upstream_cluster.list(*POD, upstream_namespace, "training.kubeflow.org/job-name=" + name)
    assert len(pods) == 3 and all(pod["spec"]["nodeName"] for pod in pods)
    for pod in pods:
        exit_zero = {"metadata": {"annotations": {KWOK_EXIT_CODE: "0"}}}
        upstream_cluster.merge_patch(*POD, pod["metadata"]["name"], exit_zero, upstream_namespace)
    done = upstream_cluster.wait_condition(*PYTORCHJOB, name, "Succeeded", upstream_namespace, timeout=180)
    assert condition(done, "Running") == "False"

    def counted() -> bool:  # the Master's success ends the job; the Workers' counts may follow a sync later
        statuses = upstream_cluster.get(*PYTORCHJOB, name, upstream_namespace)["status"]["replicaStatuses"]
        return (statuses["Master"].get("succeeded"), statuses["Worker"].get("succeeded")) == (1, 2)

    wait_for(counted, "Master and Worker counted succeeded", timeout=60)


def test_an_mpijob_v2beta1_run_by_mpi_operator_succeeds(
    upstream_cluster: ControlPlane, upstream_namespace: str
) -> None:
    """mpi-operator's launcher is a Job, whose pod kwok ends with exit 0; the workers run until then."""
    job = example_job(CONTROLLERS["mpi-operator"].module_dir() / "examples/v2beta1/pi/pi.yaml", "MPIJob")
    upstream_cluster.create(job, upstream_namespace)
    done = upstream_cluster.wait_condition(
        "kubeflow.org/v2beta1",
        "MPIJob",
        job["metadata"]["name"],
        "Succeeded",
        upstream_namespace,
        timeout=180,
    )
    assert done["status"]["replicaStatuses"]["Launcher"]["succeeded"] == 1


def test_an_mpijob_v1_run_by_the_training_operator_succeeds(mpijob_v1_cluster: ControlPlane) -> None:
    """MPIJob v1 has its own control plane: its CRD and mpi-operator's v2beta1 one share a name."""
    examples = module_dir(TRAINING_OPERATOR_MODULE, TRAINING_OPERATOR_VERSION) / "examples" / "mpi"
    job = example_job(examples / "tensorflow-mnist.yaml", "MPIJob")
    exit_with(job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"], "0")
    mpijob_v1_cluster.create(job)
    done = mpijob_v1_cluster.wait_condition("kubeflow.org/v1", "MPIJob", job["metadata"]["name"], "Succeeded")
    assert done["status"]["replicaStatuses"]["Launcher"]["succeeded"] == 1


def test_a_controller_stopped_alone_fails_its_webhooks_and_serves_them_again_once_started(
    upstream_cluster: ControlPlane,
) -> None:
    """What fault tests build on: one controller goes down and comes back; the rest of the cluster stays."""
    trainjob = valid_trainjob()
    upstream_cluster.stop_component("trainer")
    try:
        with pytest.raises(Rejected) as rejected:
            upstream_cluster.dry_run_create(trainjob)
        assert 'failed calling webhook "defaulter.trainjob.trainer.kubeflow.org"' in rejected.value.message
    finally:
        upstream_cluster.start_component("trainer")
    assert upstream_cluster.dry_run_create(trainjob)["kind"] == "TrainJob"


KUEUE = "kueue.x-k8s.io/v1beta2"


def local_queue(plane: ControlPlane, namespace: str) -> str:
    """A LocalQueue in ``namespace`` feeding a ClusterQueue with CPU and memory quota; its name."""
    plane.apply({"apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": "default"}})
    plane.apply(
        {
            "apiVersion": KUEUE,
            "kind": "ClusterQueue",
            "metadata": {"name": f"cq-{namespace}"},
            "spec": {
                "namespaceSelector": {},
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu", "memory"],
                        "flavors": [
                            {
                                "name": "default",
                                "resources": [
                                    {"name": "cpu", "nominalQuota": "32"},
                                    {"name": "memory", "nominalQuota": "256Gi"},
                                ],
                            }
                        ],
                    }
                ],
            },
        }
    )
    plane.apply(
        {
            "apiVersion": KUEUE,
            "kind": "LocalQueue",
            "metadata": {"name": "team", "namespace": namespace},
            "spec": {"clusterQueue": f"cq-{namespace}"},
        },
        namespace,
    )
    return "team"


def test_kueue_admits_a_queued_converted_trainjob_which_then_runs(kueue_cluster: ControlPlane) -> None:
    namespace = new_namespace(kueue_cluster, "kueue")
    wait_default_service_account(kueue_cluster.client(), namespace)
    queue = local_queue(kueue_cluster, namespace)
    trainjob = valid_trainjob()
    trainjob["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": queue}
    created = kueue_cluster.create(trainjob, namespace)
    assert created["spec"]["suspend"] is True  # Kueue's webhook holds it until its Workload is admitted
    name = trainjob["metadata"]["name"]
    kueue_cluster.wait_condition(*TRAINJOB, name, "Complete", namespace, timeout=180)
    (workload,) = kueue_cluster.list(KUEUE, "Workload", namespace)
    assert condition(workload, "Admitted") == "True"
    assert workload["spec"]["queueName"] == queue
