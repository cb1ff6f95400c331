"""Pure child builders: TrainJobs for cutovers, the migration Job and its worker RBAC."""

from typing import Any

import pytest

from ferryman.api.experimentmigration import ExperimentMigrationSpec
from ferryman.controller.migration import worker_volumes
from ferryman.kube.builders import (
    GPU_TOLERATION,
    MigrationWorkload,
    Placement,
    SecretEnv,
    build_migration_job,
    build_trainjob,
    build_worker_rbac,
)

SOURCE = {
    "apiVersion": "kubeflow.org/v1",
    "kind": "PyTorchJob",
    "metadata": {"name": "bert", "namespace": "team-a", "uid": "uid-source"},
}
POLICY = {
    "apiVersion": "ferryman.dev/v1alpha1",
    "kind": "CutoverPolicy",
    "metadata": {"name": "cutover", "uid": "uid-policy"},
}
MIGRATION = {
    "apiVersion": "ferryman.dev/v1alpha1",
    "kind": "ExperimentMigration",
    "metadata": {"name": "mlflow-move", "namespace": "ml", "uid": "uid-migration"},
}


def converted() -> dict[str, Any]:
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {
            "name": "bert",
            "labels": {"app.kubernetes.io/instance": "argo-app", "team": "a"},
            "annotations": {"argocd.argoproj.io/tracking-id": "x", "ferryman.dev/source": "team-a/bert"},
        },
        "spec": {"runtimeRef": {"name": "torch-distributed"}, "trainer": {"numNodes": 2}},
    }


@pytest.mark.parametrize("takeover", [False, True])
def test_trainjob_owner_follows_the_mode(takeover: bool) -> None:
    suspend = not takeover
    trainjob = build_trainjob(converted(), source=SOURCE, policy=POLICY, takeover=takeover, suspend=suspend)
    (owner,) = trainjob["metadata"]["ownerReferences"]
    assert owner["kind"] == ("PyTorchJob" if takeover else "CutoverPolicy")
    assert owner["uid"] == ("uid-source" if takeover else "uid-policy")
    assert owner["blockOwnerDeletion"] is False
    assert trainjob["spec"]["suspend"] is (not takeover)
    assert trainjob["metadata"]["namespace"] == "team-a"


def test_trainjob_drops_gitops_tracking_and_labels_its_origin() -> None:
    trainjob = build_trainjob(converted(), source=SOURCE, policy=POLICY, takeover=False, suspend=True)
    labels, annotations = trainjob["metadata"]["labels"], trainjob["metadata"]["annotations"]
    assert "app.kubernetes.io/instance" not in labels and labels["team"] == "a"
    assert labels["ferryman.dev/policy"] == "cutover" and labels["ferryman.dev/source-uid"] == "uid-source"
    assert annotations == {"ferryman.dev/source": "team-a/bert"}


def test_migration_job_is_indexed_restricted_and_on_gpu_nodes() -> None:
    job = build_migration_job(
        MigrationWorkload(
            migration=MIGRATION,
            job_name="mlflow-move-1",
            image="ferryman:dev",
            shards=4,
            spec_config_map="mlflow-move-spec",
            service_account="mlflow-move-worker",
            secret_env=(SecretEnv("MLFLOW_TRACKING_TOKEN", "mlflow-creds", "token"),),
        )
    )
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 4
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"} and GPU_TOLERATION in pod["tolerations"]
    token = next(e for e in container["env"] if e["name"] == "MLFLOW_TRACKING_TOKEN")
    assert token == {
        "name": "MLFLOW_TRACKING_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "mlflow-creds", "key": "token"}},
    }
    assert "experimentmigration/ml/mlflow-move" in container["args"]
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-migration"
    volume_kinds = {key for volume in pod["volumes"] for key in volume if key != "name"}
    assert volume_kinds <= {"configMap", "emptyDir", "secret", "projected", "downwardAPI"}


LOGS = "logs"


def test_worker_pods_mount_both_ends_volumes_with_the_source_read_only() -> None:
    spec = ExperimentMigrationSpec.model_validate(
        {
            "source": {
                "uri": "tensorboard:/data/tensorboard",
                "volumes": [{"mountPath": "/data", "volume": {"persistentVolumeClaim": {"claimName": LOGS}}}],
            },
            "destination": {
                "uri": "sqlite:////out/mlflow.db",
                "volumes": [{"mountPath": "/out", "volume": {"nfs": {"server": "nfs", "path": "/mlflow"}}}],
            },
        }
    )
    job = build_migration_job(
        MigrationWorkload(
            migration=MIGRATION,
            job_name="j",
            image="i",
            shards=1,
            spec_config_map="c",
            service_account="s",
            volumes=worker_volumes(spec),
        )
    )
    pod = job["spec"]["template"]["spec"]
    assert {"name": "source-0", "persistentVolumeClaim": {"claimName": LOGS}} in pod["volumes"]
    assert {"name": "destination-0", "nfs": {"server": "nfs", "path": "/mlflow"}} in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "source-0", "mountPath": "/data", "readOnly": True} in mounts
    assert {"name": "destination-0", "mountPath": "/out", "readOnly": False} in mounts


def test_placement_is_configurable() -> None:
    placement = Placement(
        node_selector={"pool": "cpu"}, tolerations=(), resources={"limits": {"nvidia.com/gpu": 1}}
    )
    job = build_migration_job(
        MigrationWorkload(
            migration=MIGRATION,
            job_name="j",
            image="i",
            shards=1,
            spec_config_map="c",
            service_account="s",
            placement=placement,
        )
    )
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "cpu"} and pod["tolerations"] == []
    assert pod["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": 1}}


def test_worker_role_reaches_only_its_own_status() -> None:
    account, role, binding = build_worker_rbac(MIGRATION)
    assert account["kind"] == "ServiceAccount"
    status_rule, report_rule = role["rules"]
    assert status_rule == {
        "apiGroups": ["ferryman.dev"],
        "resources": ["experimentmigrations/status"],
        "resourceNames": ["mlflow-move"],
        "verbs": ["get", "patch"],
    }
    assert report_rule["resourceNames"] == ["mlflow-move-report"] and report_rule["verbs"] == ["get", "patch"]
    assert binding["subjects"][0]["name"] == "mlflow-move-worker"
