"""ExperimentMigration on the real control plane, between real MLflow servers.

The operator (RBAC from deploy/, never refused) builds the Indexed Job; kube-scheduler places its pods on
kwok's fake GPU nodes in a namespace enforcing PodSecurity `restricted`. kwok runs no containers, so each
pod's worker runs here in-process with the pod's own command line, environment (Secret keys resolved) and
ServiceAccount token, migrates between two MLflow servers and reports through the apiserver.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError, Client, codecs
from lightkube.models.batch_v1 import JobSpec
from lightkube.models.core_v1 import Container, PodSpec, PodTemplateSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ConfigMap, Event, Namespace, Pod, Secret, ServiceAccount
from lightkube.types import PatchType

from ferryman.kube.resources import ExperimentMigration
from ferryman_dev.cluster import ControlPlane
from ferryman_dev.mlflow import MlflowServer
from ferryman_dev.operator import OperatorProcess, install_ferryman, run_pod_worker, running_operator
from ferryman_dev.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.mlflow]
PASSWORD = "n0t-in-any-status-Zq81"
RUNS, STEPS = 6, 150


@pytest.fixture
def operator(cluster: ControlPlane, tmp_path: Path) -> Iterator[OperatorProcess]:
    with running_operator(cluster, tmp_path, FERRYMAN_MIGRATION_SECONDS="1") as process:
        yield process
    assert PASSWORD not in process.output()


def populate(server: MlflowServer, experiment: str) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(server.url)
    experiment_id = client.create_experiment(experiment)
    for index in range(RUNS):
        run = client.create_run(experiment_id, run_name=f"run-{index}", tags={"team": "vision"})
        client.log_param(run.info.run_id, "lr", str(0.1 / (index + 1)))
        metrics = [Metric("loss", 1.0 / (step + 1), 1_700_000_000_000 + step, step) for step in range(STEPS)]
        client.log_batch(run.info.run_id, metrics=metrics)
        client.set_terminated(run.info.run_id)


def scheduled_shards(kube: Client, namespace: str, job: str, count: int) -> dict[str, Pod] | None:
    """Completion index → a pod of that shard bound to a node, once every shard has one."""
    shards = {}
    for pod in kube.list(Pod, namespace=namespace, labels={"job-name": job}):
        index = (pod.metadata.annotations or {}).get("batch.kubernetes.io/job-completion-index")
        if index is not None and pod.spec.nodeName:
            shards[index] = pod
    return shards if len(shards) == count else None


def test_migration_pods_on_gpu_nodes_report_through_the_apiserver(
    operator: OperatorProcess,
    cluster: ControlPlane,
    kube: Client,
    namespace: str,
    mlflow_server_factory: Callable[..., MlflowServer],
    tmp_path: Path,
) -> None:
    source = mlflow_server_factory("em-source")
    destination = mlflow_server_factory("em-destination", basic_auth_password=PASSWORD)
    populate(source, "vision-baselines")
    kube.patch(
        Namespace,
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
        patch_type=PatchType.MERGE,
    )
    kube.create(
        Secret(
            metadata=ObjectMeta(name="mlflow-destination", namespace=namespace),
            stringData={"username": destination.credentials.get("username", "admin"), "password": PASSWORD},
        )
    )
    migration = {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "ExperimentMigration",
        "metadata": {"name": "vision-to-mlflow", "namespace": namespace},
        "spec": {
            "source": {"uri": source.url},
            "destination": {
                "uri": destination.url,
                "credentials": {
                    "secretName": "mlflow-destination",
                    "usernameKey": "username",
                    "passwordKey": "password",
                },
            },
            "selection": {"experiments": ["vision-baselines"]},
            "parallelism": 2,
        },
    }
    kube.create(codecs.from_dict(migration))

    job = wait_for(lambda: next(iter(kube.list(Job, namespace=namespace)), None), "the migration Job")
    assert job.spec.completionMode == "Indexed" and job.spec.parallelism == 2
    shards = wait_for(
        lambda: scheduled_shards(kube, namespace, job.metadata.name, 2), "one scheduled pod per shard"
    )
    pods = list(shards.values())
    assert all(p.spec.nodeName.startswith("gpu-node-") for p in pods), [p.spec.nodeName for p in pods]
    env_values = json.dumps([p.to_dict()["spec"]["containers"][0]["env"] for p in pods])
    assert PASSWORD not in env_values  # credentials are Secret references, resolved only by the kubelet

    for index, pod in sorted(shards.items()):
        assert run_pod_worker(cluster, pod.to_dict(), tmp_path / f"shard-{index}") == 0

    def succeeded() -> dict[str, Any] | None:
        status = (
            kube.get(ExperimentMigration, "vision-to-mlflow", namespace=namespace).to_dict().get("status")
            or {}
        )
        done = any(c["type"] == "Succeeded" and c["status"] == "True" for c in status.get("conditions", []))
        return status if done else None

    status = wait_for(succeeded, "the migration to succeed")
    assert status["totals"]["runsDone"] == RUNS and status["totals"]["points"] == RUNS * STEPS
    assert {s["index"] for s in status["shards"]} == {0, 1} and all(s["verified"] for s in status["shards"])
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "Verified"
    report = kube.get(ConfigMap, "vision-to-mlflow-report", namespace=namespace).data
    assert {"shard-0.json", "shard-1.json"} <= set(report)

    # A retried pod (same shard again) resumes from the ledger: nothing copied twice, still verified.
    assert run_pod_worker(cluster, shards["0"].to_dict(), tmp_path / "shard-0-retry") == 0

    from mlflow import MlflowClient

    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = "admin", PASSWORD
    try:
        copied = MlflowClient(destination.url)
        experiment = copied.get_experiment_by_name("vision-baselines")
        runs = copied.search_runs([experiment.experiment_id])
        assert len(runs) == RUNS
        history = copied.get_metric_history(runs[0].info.run_id, "loss")
        assert len(history) == STEPS
    finally:
        del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]

    # Secrets never reach status or events.
    final = kube.get(ExperimentMigration, "vision-to-mlflow", namespace=namespace).to_dict()
    assert PASSWORD not in json.dumps(final["status"])
    assert PASSWORD not in json.dumps([e.to_dict() for e in kube.list(Event, namespace=namespace)])

    # /metrics: each shard's runs, points and bytes, as the workers reported them
    def shard_metric(name: str, shard: int, **labels: str) -> float:
        migration = {"namespace": namespace, "migration": "vision-to-mlflow", "shard": str(shard)}
        return operator.metric(name, **migration, **labels) or 0.0

    def exported() -> bool:
        shards = [s["index"] for s in status["shards"]]
        points = sum(shard_metric("ferryman_migration_points", s) for s in shards)
        runs = sum(shard_metric("ferryman_migration_runs", s, state="done") for s in shards)
        return points == RUNS * STEPS and runs == RUNS

    wait_for(exported, "each shard's progress in /metrics")
    for shard in status["shards"]:
        assert shard_metric("ferryman_migration_bytes", shard["index"]) == shard["bytes"]

    # Deleting the migration removes its Job (ownerReferences, garbage collection).
    kube.delete(ExperimentMigration, "vision-to-mlflow", namespace=namespace)

    def job_gone() -> bool:
        try:
            kube.get(Job, job.metadata.name, namespace=namespace)
        except ApiError as error:
            return error.status.code == 404
        return False

    wait_for(job_gone, "the Job to be garbage-collected")


def claim(mount_path: str, name: str = "logs") -> dict[str, Any]:
    """A volume entry mounting PersistentVolumeClaim `name` at `mount_path`."""
    return {"mountPath": mount_path, "volume": {"persistentVolumeClaim": {"claimName": name}}}


TB = {"uri": "tensorboard:/logs/tb", "volumes": [claim("/logs")]}
DB = {"uri": "sqlite:////out/x.db", "volumes": [claim("/out", "out")]}
LOCAL_PATH = "that is under no volume's mountPath"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"source": TB}, "spec.destination: Required value"),
        ({"source": TB, "destination": DB, "parallelism": 0}, "should be greater than or equal to 1"),
        ({"source": DB, "destination": DB}, "source and destination must be different trackers"),
        (
            {"source": TB, "destination": DB, "schedule": {"interval": "soon"}},
            "schedule.interval must be a duration such as 30m, 6h or 1d",
        ),
        (
            {"source": TB, "destination": DB, "options": {"dryRun": True, "verifyOnly": True}},
            "options.dryRun and options.verifyOnly exclude each other",
        ),
    ],
)
def test_bad_experiment_migrations_are_rejected(
    cluster: ControlPlane, kube: Client, namespace: str, spec: dict[str, Any], message: str
) -> None:
    install_ferryman(cluster)
    bad = {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "ExperimentMigration",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": spec,
    }
    with pytest.raises(ApiError) as rejected:
        kube.create(codecs.from_dict(bad))
    assert rejected.value.status.code == 422 and message in str(rejected.value.status.message)


VOLUME_REJECTIONS = [
    ({"source": {"uri": "tensorboard:/logs/tb"}, "destination": DB}, "spec.source: Invalid value: "),
    ({"source": {"uri": "wandb:/runs", "volumes": [claim("/logs")]}, "destination": DB}, LOCAL_PATH),
    (
        {"source": {"uri": "neptune-export:/logs2", "volumes": [claim("/logs")]}, "destination": DB},
        LOCAL_PATH,
    ),
    (
        {"source": {"uri": "tensorboard:/logs/../etc", "volumes": [claim("/logs")]}, "destination": DB},
        LOCAL_PATH,
    ),
    (
        {"source": TB, "destination": {"uri": "sqlite:///relative.db", "volumes": [claim("/out")]}},
        LOCAL_PATH,
    ),
    ({"source": TB, "destination": {"uri": "sqlite:////tmp/x.db"}}, "spec.destination: Invalid value: "),
    ({"source": TB, "destination": {**DB, "volumes": [claim("/logs")]}}, "need different mountPaths"),
    (
        {"source": {**TB, "volumes": [claim("/etc/ferryman/x")]}, "destination": DB},
        "outside /etc/ferryman",
    ),
    (
        {
            "source": {**TB, "volumes": [{"mountPath": "/logs", "volume": {"hostPath": {"path": "/"}}}]},
            "destination": DB,
        },
        "forbids hostPath",
    ),
    (
        {"source": {**TB, "volumes": [{"mountPath": "/logs", "volume": {}}]}, "destination": DB},
        "exactly one volume source",
    ),
]
VOLUME_ACCEPTED = [
    {"source": TB, "destination": DB},
    {
        "source": {"uri": "wandb:/logs", "volumes": [claim("/logs")]},
        "destination": {"uri": "http://mlflow:5000"},
    },
    {
        "source": {"uri": "/logs/mlruns", "volumes": [claim("/logs/")]},
        "destination": {"uri": "wandb://team/p"},
    },
    {
        "source": {"uri": "postgresql://db/mlflow"},
        "destination": {"uri": "neptune-export:///tmp/run/x", "volumes": [claim("/tmp/run")]},
    },
]


def test_local_paths_must_lie_under_a_volume(cluster: ControlPlane, kube: Client, namespace: str) -> None:
    """A local path at either end needs a volume of that end mounted at or above it (server-side dry runs)."""
    install_ferryman(cluster)

    def migration(spec: dict[str, Any]) -> Any:
        return codecs.from_dict(
            {
                "apiVersion": "ferryman.dev/v1alpha1",
                "kind": "ExperimentMigration",
                "metadata": {"name": "volumes", "namespace": namespace},
                "spec": spec,
            }
        )

    for spec, message in VOLUME_REJECTIONS:
        with pytest.raises(ApiError) as rejected:
            kube.create(migration(spec), dry_run=True)
        text = str(rejected.value.status.message)
        assert rejected.value.status.code == 422 and message in text, (spec, text)
        if message.endswith("Invalid value: "):
            assert LOCAL_PATH in text
    for spec in VOLUME_ACCEPTED:
        kube.create(migration(spec), dry_run=True)


def test_suspend_and_scheduled_resync(
    operator: OperatorProcess, cluster: ControlPlane, kube: Client, namespace: str, tmp_path: Path
) -> None:
    from ferryman_dev.demo import write_tensorboard_logs

    logs = tmp_path / "tensorboard"
    write_tensorboard_logs(logs)

    # kwok's pods run here, on these directories; an emptyDir stands for their volumes (a claim that does
    # not exist would keep the pods unscheduled)
    def here(path: Path) -> list[dict[str, Any]]:
        return [{"mountPath": str(path), "volume": {"emptyDir": {}}}]

    migration = {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "ExperimentMigration",
        "metadata": {"name": "resync", "namespace": namespace},
        "spec": {
            "source": {"uri": f"tensorboard:{logs}", "volumes": here(logs)},
            "destination": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "volumes": here(tmp_path)},
            "schedule": {"interval": "5s"},
            "suspend": True,
        },
    }
    kube.create(codecs.from_dict(migration))

    def status() -> dict[str, Any]:
        return kube.get(ExperimentMigration, "resync", namespace=namespace).to_dict().get("status") or {}

    def condition(type_: str) -> dict[str, Any]:
        return next((c for c in status().get("conditions", []) if c["type"] == type_), {})

    first = wait_for(lambda: next(iter(kube.list(Job, namespace=namespace)), None), "the round-1 Job")
    assert first.spec.suspend is True
    wait_for(lambda: condition("Progressing").get("reason") == "Suspended", "the Suspended status")
    assert not list(kube.list(Pod, namespace=namespace))

    kube.patch(
        ExperimentMigration,
        "resync",
        {"spec": {"suspend": False}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    shards = wait_for(lambda: scheduled_shards(kube, namespace, first.metadata.name, 1), "the round-1 pod")
    assert run_pod_worker(cluster, shards["0"].to_dict(), tmp_path / "round-1") == 0
    wait_for(lambda: condition("Succeeded").get("status") == "True", "round 1 to succeed")
    assert status()["totals"]["runsDone"] == 3

    # The schedule starts round 2 after the interval; it copies only what is new (nothing here).
    second = wait_for(
        lambda: status().get("round") == 2 and status().get("job"), "the round-2 Job", timeout=60
    )
    assert second == "resync-2"
    shards = wait_for(lambda: scheduled_shards(kube, namespace, second, 1), "the round-2 pod")
    assert run_pod_worker(cluster, shards["0"].to_dict(), tmp_path / "round-2") == 0
    wait_for(lambda: condition("Succeeded").get("status") == "True", "round 2 to succeed")
    events = [e for e in kube.list(Event, namespace=namespace) if e.involvedObject.name == "resync"]
    assert {"RoundStarted", "Verified"} <= {e.reason for e in events}


def test_foreign_objects_under_child_names_are_never_adopted(
    operator: OperatorProcess, kube: Client, namespace: str
) -> None:
    """Issue #14, item 8 (confused deputy): objects a user put under the names of a migration's children
    (its workers' ServiceAccount, its spec ConfigMap, its round-1 Job) are not adopted, overwritten or deleted
    with the migration; the migration is Stalled with reason ChildNameTaken and one Warning event."""
    foreign = [
        ServiceAccount(metadata=ObjectMeta(name="clash-worker", namespace=namespace)),
        ConfigMap(metadata=ObjectMeta(name="clash-spec", namespace=namespace), data={"mine": "keep me"}),
        Job(
            metadata=ObjectMeta(name="clash-1", namespace=namespace),
            spec=JobSpec(
                suspend=True,
                template=PodTemplateSpec(
                    spec=PodSpec(restartPolicy="Never", containers=[Container(name="c", image="busybox")])
                ),
            ),
        ),
    ]
    for obj in foreign:
        kube.create(obj)
    before = {type(o).__name__: kube.get(type(o), o.metadata.name, namespace=namespace) for o in foreign}
    migration = {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "ExperimentMigration",
        "metadata": {"name": "clash", "namespace": namespace},
        "spec": {"source": TB, "destination": DB},
    }
    kube.create(codecs.from_dict(migration))

    def stalled() -> dict[str, Any] | None:
        status = kube.get(ExperimentMigration, "clash", namespace=namespace).to_dict().get("status") or {}
        found = next((c for c in status.get("conditions", []) if c["type"] == "Stalled"), {})
        return found if found.get("reason") == "ChildNameTaken" and found["status"] == "True" else None

    condition = wait_for(stalled, "the clash to be reported")
    assert "ServiceAccount" in condition["message"] and "clash-worker" in condition["message"]
    time.sleep(3)  # a few more reconciles (every second here): still one event, nothing created or touched
    warnings = [
        e
        for e in kube.list(Event, namespace=namespace)
        if e.involvedObject.name == "clash" and e.reason == "ChildNameTaken"
    ]
    assert len(warnings) == 1 and warnings[0].type == "Warning" and (warnings[0].count or 1) == 1
    assert [j.metadata.name for j in kube.list(Job, namespace=namespace)] == ["clash-1"]
    for obj in foreign:
        live = kube.get(type(obj), obj.metadata.name, namespace=namespace)
        assert live.metadata.resourceVersion == before[type(obj).__name__].metadata.resourceVersion
        assert not live.metadata.ownerReferences

    # The ServiceAccount goes: the spec ConfigMap is next in the way, then the round-1 Job.
    kube.delete(ServiceAccount, "clash-worker", namespace=namespace)
    wait_for(lambda: (c := stalled()) and "clash-spec" in c["message"], "the ConfigMap clash")
    kube.delete(ConfigMap, "clash-spec", namespace=namespace)
    wait_for(
        lambda: (c := stalled()) and "Job" in c["message"] and "clash-1" in c["message"], "the Job clash"
    )
    own_map = kube.get(ConfigMap, "clash-spec", namespace=namespace)
    assert own_map.metadata.ownerReferences[0].name == "clash"
    assert own_map.metadata.labels["ferryman.dev/experimentmigration"] == "clash"

    # Deleting the migration removes its own children and leaves the foreign Job alone.
    kube.delete(ExperimentMigration, "clash", namespace=namespace)

    def own_children_gone() -> bool:
        return not any(m.metadata.name == "clash-spec" for m in kube.list(ConfigMap, namespace=namespace))

    wait_for(own_children_gone, "the migration's own ConfigMap to be garbage-collected")
    live_job = kube.get(Job, "clash-1", namespace=namespace)
    assert live_job.spec.suspend is True and not live_job.metadata.ownerReferences
