"""The kinds besides PyTorchJob: the variables v1 set are reproduced with v2 values (shell wrappers run for
real with /bin/sh), reserved names are compared with Trainer's, topologies v2 cannot run are blocked."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from ferryman.convert.findings import Severity
from ferryman.convert.registry import convert_job


def _container(**fields: Any) -> dict[str, Any]:
    return {"image": "example.com/train:1", "command": ["python", "train.py"], **fields}


def _job(kind: str, field: str, replicas: dict[str, int], container: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": kind,
        "metadata": {"name": "job", "namespace": "ns"},
        "spec": {
            field: {
                role: {
                    "replicas": count,
                    "template": {"spec": {"containers": [{"name": container, **_container(**extra)}]}},
                }
                for role, count in replicas.items()
            }
        },
    }


def _run_wrapper(trainer: dict[str, Any], variable: str, env: dict[str, str]) -> str:
    """What the wrapped command exports as ``variable`` on a node with ``env``."""
    shell, flag, script, *rest = trainer["command"]
    assert script.endswith('exec "$@"')
    script = script.removesuffix('exec "$@"') + f'printf %s "${variable}"'
    return subprocess.run([shell, flag, script, *rest], env=env, capture_output=True, text=True).stdout


def _codes(conversion: Any, severity: Severity) -> set[str]:
    return {f.code for f in conversion.findings if f.severity is severity}


def test_tfjob_chief_and_workers_get_v1s_tf_config_with_v2_host_names() -> None:
    conversion = convert_job(_job("TFJob", "tfReplicaSpecs", {"Chief": 1, "Worker": 2}, "tensorflow"))
    assert not conversion.blocked
    trainer = conversion.trainjob["spec"]["trainer"]  # type: ignore[index]
    assert trainer["numNodes"] == 3
    hosts = [f"job-node-0-{i}.job:2222" for i in range(3)]
    cluster = {"chief": hosts[:1], "worker": hosts[1:]}
    tasks = [("chief", 0), ("worker", 0), ("worker", 1)]
    for index, (role, task) in enumerate(tasks):
        tf_config = json.loads(_run_wrapper(trainer, "TF_CONFIG", {"JOB_COMPLETION_INDEX": str(index)}))
        assert tf_config == {
            "cluster": cluster,
            "task": {"type": role, "index": task},
            "environment": "cloud",
        }
    assert conversion.runtime is not None and conversion.runtime["spec"]["mlPolicy"] == {"numNodes": 1}


def test_tfjob_workers_only_expand_the_node_index_into_tf_config() -> None:
    conversion = convert_job(_job("TFJob", "tfReplicaSpecs", {"Worker": 2}, "tensorflow"))
    env = {e["name"]: e for e in conversion.trainjob["spec"]["trainer"]["env"]}  # type: ignore[index]
    names = list(env)
    assert names.index("TF_TASK_INDEX") < names.index("TF_CONFIG")  # $(VAR) expands earlier variables only
    value = env["TF_CONFIG"]["value"].replace("$(TF_TASK_INDEX)", "1")
    assert json.loads(value)["task"] == {"type": "worker", "index": 1}
    assert json.loads(value)["cluster"] == {"worker": ["job-node-0-0.job:2222", "job-node-0-1.job:2222"]}


def test_tfjob_parameter_servers_and_evaluators_are_blocked_with_the_reason() -> None:
    for role in ("PS", "Evaluator"):
        conversion = convert_job(_job("TFJob", "tfReplicaSpecs", {role: 1, "Worker": 2}, "tensorflow"))
        assert conversion.trainjob is None
        (finding,) = [f for f in conversion.findings if f.severity is Severity.BLOCKER]
        assert finding.path == f"spec.tfReplicaSpecs.{role}" and "no Trainer v2 equivalent" in finding.message


def test_tfjob_chief_without_a_command_is_blocked() -> None:
    job = _job("TFJob", "tfReplicaSpecs", {"Chief": 1, "Worker": 1}, "tensorflow")
    for role in ("Chief", "Worker"):
        del job["spec"]["tfReplicaSpecs"][role]["template"]["spec"]["containers"][0]["command"]
    assert "tf-config" in _codes(convert_job(job), Severity.BLOCKER)


def test_tfjob_without_derived_runtimes_is_blocked() -> None:
    from ferryman.convert.options import ConvertOptions

    conversion = convert_job(
        _job("TFJob", "tfReplicaSpecs", {"Worker": 2}, "tensorflow"), ConvertOptions(derived_runtime=False)
    )
    assert "no-runtime" in _codes(conversion, Severity.BLOCKER)


def test_paddlejob_master_is_its_own_pod_ip_on_node_0_and_node_0s_host_elsewhere() -> None:
    conversion = convert_job(_job("PaddleJob", "paddleReplicaSpecs", {"Worker": 3}, "paddle"))
    trainer = conversion.trainjob["spec"]["trainer"]  # type: ignore[index]
    env = {"POD_IP_DUMMY": "10.1.2.3"}
    assert _run_wrapper(trainer, "PADDLE_MASTER", {**env, "JOB_COMPLETION_INDEX": "0"}) == "10.1.2.3:36543"
    assert (
        _run_wrapper(trainer, "PADDLE_MASTER", {**env, "JOB_COMPLETION_INDEX": "2"})
        == "job-node-0-0.job:36543"
    )
    values = {e["name"]: e.get("value") for e in trainer["env"]}
    assert values["PADDLE_NNODES"] == "3" and values["PADDLE_JOB_ID"] == "job"


def test_paddlejob_master_and_elastic_are_blocked() -> None:
    conversion = convert_job(_job("PaddleJob", "paddleReplicaSpecs", {"Master": 1, "Worker": 2}, "paddle"))
    assert conversion.trainjob is None and "no-v2-equivalent" in _codes(conversion, Severity.BLOCKER)
    job = _job("PaddleJob", "paddleReplicaSpecs", {"Worker": 2}, "paddle")
    job["spec"]["elasticPolicy"] = {"minReplicas": 1, "maxReplicas": 4}
    assert "elastic-policy" in _codes(convert_job(job), Severity.BLOCKER)


def test_xgboost_dmlc_values_are_compared_with_trainers() -> None:
    same = [{"name": "DMLC_TRACKER_URI", "value": "job-node-0-0.job"}]
    other = [{"name": "DMLC_NUM_WORKER", "value": "7"}]
    for env, severity in ((same, Severity.INFO), (other, Severity.WARNING)):
        job = _job("XGBoostJob", "xgbReplicaSpecs", {"Master": 1, "Worker": 2}, "xgboost", env=env)
        conversion = convert_job(job)
        assert "reserved-env" in _codes(conversion, severity)
        names = [e["name"] for e in conversion.trainjob["spec"]["trainer"]["env"]]  # type: ignore[index]
        assert not any(name.startswith("DMLC_") for name in names)
        assert {"MASTER_ADDR", "WORKER_ADDRS", "RANK", "WORLD_SIZE"} <= set(names)


def test_xgboost_without_master_is_blocked() -> None:
    conversion = convert_job(_job("XGBoostJob", "xgbReplicaSpecs", {"Worker": 2}, "xgboost"))
    assert "no-master" in _codes(conversion, Severity.BLOCKER)


def test_jax_reserved_and_v1_variables() -> None:
    env = [{"name": "JAX_NUM_PROCESSES", "value": "2"}, {"name": "COORDINATOR_ADDRESS", "value": "x"}]
    conversion = convert_job(_job("JAXJob", "jaxReplicaSpecs", {"Worker": 2}, "jax", env=env))
    codes = [
        (f.code, f.path.rsplit(".", 1)[-1]) for f in conversion.findings if f.severity is Severity.WARNING
    ]
    assert ("reserved-env", "env[0]") in codes and ("v1-env-overridden", "env[1]") in codes
    values = {e["name"]: e.get("value") for e in conversion.trainjob["spec"]["trainer"]["env"]}  # type: ignore[index]
    assert values["COORDINATOR_ADDRESS"] == "job-node-0-0.job" and values["NUM_PROCESSES"] == "2"
    assert "JAX_NUM_PROCESSES" not in values


def test_a_stream_of_every_kind_reports_kind_and_api_version_per_job_and_counts_per_kind() -> None:
    import yaml

    from ferryman.convert.manifests import convert_stream
    from ferryman.convert.options import ConvertOptions
    from ferryman.convert.report import FileReport, render_json

    jobs = [
        _job("JAXJob", "jaxReplicaSpecs", {"Worker": 2}, "jax"),
        _job("XGBoostJob", "xgbReplicaSpecs", {"Master": 1, "Worker": 1}, "xgboost"),
        _job("TFJob", "tfReplicaSpecs", {"PS": 1, "Worker": 2}, "tensorflow"),
        _job("PaddleJob", "paddleReplicaSpecs", {"Worker": 2}, "paddle"),
    ]
    result = convert_stream(yaml.safe_dump_all(jobs), ConvertOptions())
    converted = [doc for doc in yaml.safe_load_all(result.text) if doc]
    kinds = [doc["kind"] for doc in converted]
    assert kinds == ["TrainJob", "TrainJob", "TFJob", "TrainingRuntime", "TrainJob"]
    report = json.loads(render_json([FileReport("jobs.yaml", result.jobs)]))
    assert [(r["kind"], r["apiVersion"], r["status"]) for r in report["jobs"]] == [
        ("JAXJob", "kubeflow.org/v1", "converted"),
        ("XGBoostJob", "kubeflow.org/v1", "converted"),
        ("TFJob", "kubeflow.org/v1", "blocked"),
        ("PaddleJob", "kubeflow.org/v1", "converted"),
    ]
    assert report["summary"]["kinds"]["TFJob"] == {
        "jobs": 1,
        "converted": 0,
        "forced": 0,
        "blocked": 1,
        "unsupported": 0,
    }
    assert set(report["summary"]["kinds"]) == {"JAXJob", "XGBoostJob", "TFJob", "PaddleJob"}


def _mpijob(api_version: str = "kubeflow.org/v2beta1", **spec: Any) -> dict[str, Any]:
    launcher = {"name": "launcher", "image": "example.com/mpi:1", "command": ["mpirun", "-np", "8", "./app"]}
    worker = {"name": "worker", "image": "example.com/mpi:1"}
    return {
        "apiVersion": api_version,
        "kind": "MPIJob",
        "metadata": {"name": "job"},
        "spec": {
            "slotsPerWorker": 4,
            "mpiReplicaSpecs": {
                "Launcher": {"replicas": 1, "template": {"spec": {"containers": [launcher]}}},
                "Worker": {"replicas": 2, "template": {"spec": {"containers": [worker]}}},
            },
            **spec,
        },
    }


def test_mpijob_runs_launcher_and_workers_on_a_derived_mpi_runtime() -> None:
    conversion = convert_job(_mpijob(runLauncherAsWorker=True, sshAuthMountPath="/home/mpiuser/.ssh"))
    assert not conversion.blocked
    trainjob, runtime = conversion.trainjob, conversion.runtime
    assert trainjob is not None and runtime is not None
    assert trainjob["spec"]["trainer"]["numNodes"] == 3  # the launcher works too
    assert trainjob["spec"]["trainer"]["command"] == ["mpirun", "-np", "8", "./app"]
    assert runtime["spec"]["mlPolicy"]["mpi"] == {
        "numProcPerNode": 4,
        "mpiImplementation": "OpenMPI",
        "sshAuthMountPath": "/home/mpiuser/.ssh",
        "runLauncherAsNode": True,
    }
    node, launcher = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert (node["name"], launcher["name"]) == ("node", "launcher")
    (worker,) = node["template"]["spec"]["template"]["spec"]["containers"]
    assert worker["name"] == "node" and worker["command"] == ["/usr/sbin/sshd", "-De"]


def test_mpijob_intel_and_mpich_are_blocked_with_the_reason() -> None:
    for implementation in ("Intel", "MPICH"):
        conversion = convert_job(_mpijob(mpiImplementation=implementation))
        assert conversion.trainjob is None
        (finding,) = [f for f in conversion.findings if f.severity is Severity.BLOCKER]
        assert finding.path == "spec.mpiImplementation" and "Open MPI only" in finding.message


def test_mpijob_v1_workers_need_an_ssh_server_and_reserved_openmpi_variables_are_dropped() -> None:
    job = _mpijob("kubeflow.org/v1")
    launcher = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    launcher["env"] = [{"name": "OMPI_MCA_orte_default_hostfile", "value": "/etc/mpi/hostfile"}]
    conversion = convert_job(job)
    assert {"mpi-ssh", "reserved-env"} <= _codes(conversion, Severity.WARNING)
    assert conversion.trainjob is not None and not conversion.trainjob["spec"]["trainer"]["env"]


def test_a_jobs_own_copies_of_v1_variables_are_replaced_not_duplicated() -> None:
    for kind, field, container, name in (
        ("TFJob", "tfReplicaSpecs", "tensorflow", "TF_CONFIG"),
        ("PaddleJob", "paddleReplicaSpecs", "paddle", "PADDLE_MASTER"),
        ("JAXJob", "jaxReplicaSpecs", "jax", "COORDINATOR_ADDRESS"),
    ):
        job = _job(kind, field, {"Worker": 2}, container, env=[{"name": name, "value": "mine"}])
        conversion = convert_job(job)
        assert "v1-env-overridden" in _codes(conversion, Severity.WARNING), kind
        env = conversion.trainjob["spec"]["trainer"]["env"]  # type: ignore[index]
        names = [e["name"] for e in env]
        assert len(names) == len(set(names)) and all(e.get("value") != "mine" for e in env), kind


def test_v1_host_names_become_node_host_names_of_the_same_node() -> None:
    cases = (
        (_job("PaddleJob", "paddleReplicaSpecs", {"Worker": 2}, "paddle", args=["job-worker-1"]), 1),
        (_job("TFJob", "tfReplicaSpecs", {"Chief": 1, "Worker": 2}, "tensorflow", args=["job-worker-1"]), 2),
        (_mpijob(runLauncherAsWorker=True), 1),
    )
    mpi = cases[2][0]["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    mpi["command"] = ["mpirun", "-H", "job-worker-1", "./app"]
    for job, node in cases:
        trainer = convert_job(job).trainjob["spec"]["trainer"]  # type: ignore[index]
        assert f"job-node-0-{node}.job" in json.dumps(trainer), job["kind"]


def test_an_embedded_job_that_is_not_yaml_is_blocked_with_the_reason_and_left_unchanged() -> None:
    from ferryman.convert.manifests import convert_stream
    from ferryman.convert.options import ConvertOptions

    manifest = (
        "apiVersion: kubeflow.org/v1\nkind: TFJob\nmetadata:\n  name: tf-{{workflow.name}}\nspec:\n"
        "  tfReplicaSpecs:\n    Worker:\n      replicas: {{workflow.parameters.workers}}\n"
    )
    workflow = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "wf"},
        "spec": {"templates": [{"name": "train", "resource": {"action": "create", "manifest": manifest}}]},
    }
    text = json.dumps(workflow)
    result = convert_stream(text, ConvertOptions())
    (job,) = result.jobs
    assert (job.kind, job.status, job.location) == ("TFJob", "blocked", "spec.templates[0].resource.manifest")
    (finding,) = job.findings
    assert finding.code == "embedded-not-yaml" and "not valid YAML" in finding.message
    assert result.text == text


def test_mpijob_names_leave_room_for_launcher_pod_names() -> None:
    job = _mpijob()
    job["metadata"]["name"] = "a" * 46  # fits a torch TrainJob (48), not `<name>-launcher-0-0-<suffix>`
    conversion = convert_job(job)
    name = conversion.trainjob["metadata"]["name"]  # type: ignore[index]
    assert len(f"{name}-launcher-0-0-abcde") <= 63
    assert "name-changed" in _codes(conversion, Severity.WARNING)


def test_what_kueue_writes_into_an_admitted_mpijobs_pods_is_not_carried() -> None:
    admitted = _mpijob()
    for role in admitted["spec"]["mpiReplicaSpecs"].values():
        role["template"]["metadata"] = {
            "labels": {"app": "mpi", "kueue.x-k8s.io/podset": "worker"},
            "annotations": {"kueue.x-k8s.io/workload": "mpijob-job-1a2b3"},
        }
    conversion = convert_job(admitted)
    assert conversion.runtime is not None and "kueue.x-k8s.io" not in json.dumps(conversion.runtime)
    assert '"app": "mpi"' in json.dumps(conversion.runtime)
    assert {f.code for f in conversion.findings} >= {"queue-admission-metadata"}
