"""MPIJob (``kubeflow.org/v2beta1`` of mpi-operator, ``kubeflow.org/v1`` of Training Operator) to a TrainJob
on a derived MPI runtime (``mlPolicy.mpi``): Trainer ships MPI runtimes only for DeepSpeed and MLX images.

The derived runtime runs the Launcher template as its ``launcher`` job and the Worker template as its
``node`` job, like the shipped ones: ``slotsPerWorker`` is ``numProcPerNode``, ``sshAuthMountPath`` and
``runLauncherAsWorker`` (``runLauncherAsNode``) carry over, ``launcherCreationPolicy: WaitForWorkersReady`` is
the launcher's ``dependsOn`` the nodes being ready. The TrainJob carries the launcher's image, command, args
and env and ``numNodes`` (the Workers, plus the launcher when it works too). Trainer generates the SSH key
Secret and the hostfile (``/etc/mpi/hostfile``, as mpi-operator did) and sets the ``OMPI_MCA_*`` variables
pointing at them, so a job's own copies are reserved. Only Open MPI runs on Trainer: Intel MPI and MPICH
jobs are blocked.
"""

from __future__ import annotations

from typing import Any

from ferryman.api import mpijob as mpi
from ferryman.api.kinds import MPIJOB, MPIJOB_V1, TRAINING_RUNTIME, TRAINJOB
from ferryman.api.trainjob import ANCESTOR_LABEL, TRAINER_CONTAINER, TRAINER_JOB
from ferryman.convert.core import JobConverter, clone, join, mapping
from ferryman.convert.findings import Severity
from ferryman.convert.launcher import HostRewriter
from ferryman.convert.names import MAX_NAME_LENGTH
from ferryman.convert.options import Conversion
from ferryman.convert.runtime import named_runtime

MPI_RESERVED_ENV = frozenset(
    {
        "OMPI_MCA_orte_default_hostfile",
        "OMPI_MCA_plm_rsh_args",
        "OMPI_MCA_orte_keep_fqdn_hostnames",
        "OMPI_MCA_orte_set_default_slots",
    }
)
V1_MPI_ENV = ("OMPI_MCA_plm_rsh_agent",)  # v1's kubectl-exec agent; Trainer reaches workers over SSH
LAUNCHER_JOB = "launcher"
SSHD = ["/usr/sbin/sshd", "-De"]
# files the MPI operators generated besides the hostfile; Trainer generates only /etc/mpi/hostfile
OPERATOR_FILES = (
    "/etc/mpi/discover_hosts.sh",
    "/etc/mpi/kubexec.sh",
)  # what mpi-operator runs in a Worker without command and args
_TRAINER_FIELDS = ("image", "command", "args", "env")
_RESTART = {
    "OnFailure": "OnFailure",
    "Never": "Never",
    "ExitCode": "Never",  # mpi-operator: Never, and a failure policy retrying on some exit codes
    "Always": "OnFailure",  # a Job's pods cannot restart Always
}


class MPIJobConverter(JobConverter):
    kind = MPIJOB.kind
    container_name = TRAINER_CONTAINER  # each role's main container becomes the runtime's `node`
    reserved_env = MPI_RESERVED_ENV
    operator_env = V1_MPI_ENV
    runtime_name = "mpi"
    framework = "mpi"
    longest_job = LAUNCHER_JOB
    name_limit = MAX_NAME_LENGTH - (len(LAUNCHER_JOB) - len(TRAINER_JOB))  # `launcher` pods: 4 more

    def convert(self) -> Conversion:
        job = self.validate(mpi.MPIJob)
        if job is None:
            return self.result(None)
        v1 = job.api_version == MPIJOB_V1.api_version
        self.begin(job, MPIJOB_V1.api_version if v1 else MPIJOB.api_version)
        spec = job.spec
        if spec.mpi_implementation not in (None, "", mpi.OPENMPI):
            self.report(
                Severity.BLOCKER,
                "spec.mpiImplementation",
                "mpi-implementation",
                f"{spec.mpi_implementation} MPI is not supported by Trainer: its MPI policy runs Open MPI "
                "only (mlPolicy.mpi.mpiImplementation allows OpenMPI)",
            )
            return self.result(None)
        for key in job.replica_specs:
            if key not in (mpi.LAUNCHER, mpi.WORKER):
                self.report(
                    Severity.BLOCKER,
                    join("spec.mpiReplicaSpecs", key),
                    "unknown-replica-type",
                    f"replica type {key!r} is not Launcher or Worker; the MPI operator rejects it",
                )
        launcher, worker = job.replica(mpi.LAUNCHER), job.replica(mpi.WORKER)
        if launcher is None or worker is None:
            self.report(
                Severity.BLOCKER,
                "spec.mpiReplicaSpecs",
                "no-replicas",
                "an MPIJob converts with a Launcher and Workers; "
                + ("the Launcher is missing" if launcher is None else "without Workers it has no v2 nodes"),
            )
            return self.result(None)
        if launcher[1].replicas not in (None, 1):
            self.report(
                Severity.BLOCKER,
                "spec.mpiReplicaSpecs.Launcher.replicas",
                "invalid-value",
                f"Launcher replicas is {launcher[1].replicas!r}; an MPIJob has exactly one launcher",
            )
        for key, replica in (launcher, worker):
            self.unknown(replica.unknown_fields(), f"spec.mpiReplicaSpecs.{key}")
        workers = self.integer(
            0 if worker[1].replicas is None else worker[1].replicas,
            "spec.mpiReplicaSpecs.Worker.replicas",
            "Worker replicas",
            1,
        )
        slots = self.integer(
            1 if spec.slots_per_worker is None else spec.slots_per_worker,
            "spec.slotsPerWorker",
            "slotsPerWorker",
            1,
        )
        as_node = bool(spec.run_launcher_as_worker)
        num_nodes: int | str | None = workers
        if isinstance(workers, int) and as_node:
            num_nodes = workers + 1
        elif isinstance(workers, str) and as_node:
            self.report(
                Severity.BLOCKER,
                "spec.runLauncherAsWorker",
                "placeholder-arithmetic",
                f"numNodes would be {workers} + 1 (the launcher works too), which one placeholder cannot "
                "express",
            )
            num_nodes = None
        # worker i is node i whether or not the launcher works too: it is a job of its own (launcher-0-0)
        self.rewriter = HostRewriter(self.source_name, self.name, False) if self.source_name else None

        trainer, launcher_pod, launcher_meta = self.launcher(launcher, spec, v1)
        node_pod, node_meta = self.worker(worker, v1)
        if num_nodes is not None:
            trainer["numNodes"] = num_nodes
        body: dict[str, Any] = {}
        jobset_annotations: dict[str, str] = {}
        if spec.run_policy is not None:
            self.run_policy(spec.run_policy, body, jobset_annotations)
        if v1 and spec.clean_pod_policy is not None:
            self.report(
                Severity.INFO if spec.clean_pod_policy == "None" else Severity.WARNING,
                "spec.cleanPodPolicy",
                "clean-pod-policy",
                "v2 keeps the pods of finished jobs until the TrainJob is deleted"
                + ("" if spec.clean_pod_policy == "None" else "; delete finished TrainJobs"),
            )
        for pod in (launcher_pod, node_pod):
            for key, value in self.runtime_pod.items():  # run-policy settings (the priority class)
                pod.setdefault(key, value)
        self.check_limits(trainer, {}, "spec.mpiReplicaSpecs.Launcher.template.spec.containers[0]", "")
        if not self.options.derived_runtime:
            self.report(
                Severity.BLOCKER,
                "kind",
                "no-runtime",
                "Trainer ships no MPI runtime for plain Open MPI jobs (deepspeed-distributed and "
                "mlx-distributed run DeepSpeed and MLX images); a derived TrainingRuntime would carry the "
                "Launcher and Worker templates (drop --no-derived-runtime)",
            )
            return self.result(None)
        policy: dict[str, Any] = {
            "numProcPerNode": slots if slots is not None else 1,
            "mpiImplementation": mpi.OPENMPI,
            "sshAuthMountPath": spec.ssh_auth_mount_path or mpi.DEFAULT_SSH_AUTH_MOUNT_PATH,
            "runLauncherAsNode": as_node,
        }
        self.report(
            Severity.INFO,
            "kind",
            "derived-runtime",
            "the Launcher and Worker templates run as the launcher and node jobs of a derived MPI "
            "TrainingRuntime; Trainer generates the SSH key Secret and the hostfile (/etc/mpi/hostfile)",
        )
        if spec.launcher_creation_policy == mpi.WAIT_FOR_WORKERS_READY:
            self.report(
                Severity.INFO,
                "spec.launcherCreationPolicy",
                "launcher-creation",
                "the launcher job depends on the node job being ready",
            )
        runtime = mpi_runtime(
            self.namespace,
            launcher=(launcher_meta, launcher_pod),
            node=(node_meta, node_pod),
            mpi_policy=policy,
            wait_for_workers=spec.launcher_creation_policy == mpi.WAIT_FOR_WORKERS_READY,
            jobset_annotations=jobset_annotations,
        )
        if jobset_annotations:
            runtime["spec"]["podGroupPolicy"] = {"volcano": {}}
        runtime_ref = {
            "name": runtime["metadata"]["name"],
            "apiGroup": TRAINING_RUNTIME.group,
            "kind": TRAINING_RUNTIME.kind,
        }
        trainjob = {
            **TRAINJOB.type_meta,
            "metadata": self.metadata,
            "spec": {"runtimeRef": runtime_ref, "trainer": trainer, **body},
        }
        return self.result(clone(trainjob), clone(runtime))

    # -- roles --------------------------------------------------------------------------------------

    def main_container(
        self, pod: dict[str, Any], path: str, spec: mpi.MPIJobSpec | None
    ) -> tuple[int, dict[str, Any]] | None:
        """(index, container) of the role's main container: the first one (v1: ``mainContainer``)."""
        containers = pod.get("containers")
        if not isinstance(containers, list) or not containers or not isinstance(containers[0], dict):
            self.report(
                Severity.BLOCKER, f"{path}.containers", "invalid-field", "the pod template has no containers"
            )
            return None
        index = 0
        if spec is not None and spec.main_container:
            named = [
                i
                for i, c in enumerate(containers)
                if isinstance(c, dict) and c.get("name") == spec.main_container
            ]
            index = named[0] if named else 0
        container = containers[index]
        if container.get("name") != TRAINER_CONTAINER:
            self.report(
                Severity.INFO,
                f"{path}.containers[{index}].name",
                "container-renamed",
                f"container {container.get('name')!r} is named {TRAINER_CONTAINER!r} in the runtime (Trainer "
                "runs the container of that name)",
            )
        return index, container

    def pod(
        self, replica: tuple[str, Any], default_restart: str
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(path, pod spec, pod metadata) of a role's template, its restart policy applied."""
        key, spec = replica
        base = f"spec.mpiReplicaSpecs.{key}"
        template = mapping(spec.template)
        for extra in template:
            if extra not in ("metadata", "spec"):
                self.unknown({extra: template[extra]}, f"{base}.template")
        pod = clone(mapping(template.get("spec")))
        meta = {}
        for k, v in mapping(template.get("metadata")).items():
            if k in ("labels", "annotations") and isinstance(v, dict):
                v = self.without_queue_admission(v, f"{base}.template.metadata.{k}")
            if k in ("labels", "annotations") and v:
                meta[k] = clone(v)
        for k in mapping(template.get("metadata")):
            if k not in ("labels", "annotations"):
                self.report(
                    Severity.INFO,
                    f"{base}.template.metadata.{k}",
                    "pod-metadata-ignored",
                    f"pod template metadata.{k} is set by the Job controller; not carried",
                )
        self.resources(pod, f"{base}.template.spec")
        policy = spec.restart_policy or default_restart
        restart = _RESTART.get(policy)
        if restart is None or restart != policy:
            self.report(
                Severity.WARNING,
                f"{base}.restartPolicy",
                "restart-policy",
                f"restartPolicy {policy}: a Job's pods restart {restart or 'OnFailure'}"
                + (" (v2 has no exit-code based retry)" if policy == "ExitCode" else ""),
            )
        pod["restartPolicy"] = restart or "OnFailure"
        return f"{base}.template.spec", pod, meta

    def resources(self, pod: dict[str, Any], path: str) -> None:
        """Container resources as a TrainingRuntime accepts them: quantities as strings where YAML made
        them floats, keys other than limits, requests and claims dropped with a finding."""
        for list_key in ("initContainers", "containers"):
            for index, container in enumerate(pod.get(list_key) or []):
                resources = container.get("resources") if isinstance(container, dict) else None
                if not isinstance(resources, dict):
                    continue
                rpath = f"{path}.{list_key}[{index}].resources"
                for key in [k for k in resources if k not in ("limits", "requests", "claims")]:
                    self.report(
                        Severity.WARNING,
                        f"{rpath}.{key}",
                        "unknown-field",
                        f"{key!r} is not a field of resources (limits, requests, claims); the v1 API server "
                        "dropped it, and so does the conversion",
                    )
                    del resources[key]
                for section in ("limits", "requests"):
                    quantities = resources.get(section)
                    if isinstance(quantities, dict):
                        resources[section] = {
                            name: str(q) if isinstance(q, float) else q for name, q in quantities.items()
                        }

    def launcher(
        self, launcher: tuple[str, Any], spec: mpi.MPIJobSpec, v1: bool
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(trainer fields, launcher pod spec, pod metadata): the main container's image, command, args and
        env go to the TrainJob, the rest stays in the runtime."""
        path, pod, meta = self.pod(launcher, "Never" if v1 else "OnFailure")  # each operator's default
        found = self.main_container(pod, path, spec if v1 else None)
        trainer: dict[str, Any] = {}
        if found is None:
            return trainer, pod, meta
        index, container = found
        cpath = f"{path}.containers[{index}]"
        rest = {"name": TRAINER_CONTAINER}
        for key, value in container.items():
            if key in _TRAINER_FIELDS and value is not None:
                trainer[key] = value
            elif key != "name":
                rest[key] = value
        if self.rewriter is not None:
            for key in ("command", "args"):
                if key in trainer:
                    trainer[key] = self.rewrite_hosts(trainer[key], f"{cpath}.{key}", self.rewriter)
        for key in ("command", "args"):
            for file in OPERATOR_FILES:
                if file in repr(trainer.get(key)):
                    self.report(
                        Severity.BLOCKER,
                        f"{cpath}.{key}",
                        "mpi-operator-file",
                        f"uses {file}, which the MPI operator generated; Trainer generates only the hostfile "
                        "(/etc/mpi/hostfile) and has no elastic host discovery",
                    )
        self.hand_made_ssh(pod, path)
        if isinstance(trainer.get("env"), list):
            trainer["env"] = self.env(trainer["env"], f"{cpath}.env", v1)
        pod["containers"] = [rest if i == index else c for i, c in enumerate(pod["containers"])]
        return trainer, pod, meta

    def worker(self, worker: tuple[str, Any], v1: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """(pod spec, pod metadata) of the node job: the Worker template, its main container an SSH server."""
        path, pod, meta = self.pod(worker, "Never")
        found = self.main_container(pod, path, None)
        if found is None:
            return pod, meta
        index, container = found
        cpath = f"{path}.containers[{index}]"
        container = {**clone(container), "name": TRAINER_CONTAINER}
        if v1:
            self.report(
                Severity.WARNING,
                f"{cpath}.command",
                "mpi-ssh",
                "v1 started ranks on the Workers with kubectl exec; Trainer starts them over SSH, so the "
                "Worker image must run an SSH server"
                + (
                    ""
                    if container.get("command")
                    else f" (its command becomes {' '.join(SSHD)}; v1 ran sleep)"
                ),
            )
        if not container.get("command") and not container.get("args"):
            container["command"] = list(SSHD)
            if not v1:
                self.report(
                    Severity.INFO,
                    f"{cpath}.command",
                    "mpi-ssh",
                    f"the Worker runs {' '.join(SSHD)}, as mpi-operator ran it for a container without "
                    "command",
                )
        if self.rewriter is not None:
            for key in ("command", "args"):
                if isinstance(container.get(key), list):
                    container[key] = self.rewrite_hosts(container[key], f"{cpath}.{key}", self.rewriter)
            if isinstance(container.get("env"), list):
                container["env"] = self.env(container["env"], f"{cpath}.env", v1)
        pod["containers"] = [container if i == index else c for i, c in enumerate(pod["containers"])]
        self.hand_made_ssh(pod, path)
        return pod, meta

    def hand_made_ssh(self, pod: dict[str, Any], path: str) -> None:
        """Report Secret volumes holding SSH keys: Trainer generates and mounts its own."""
        for index, volume in enumerate(pod.get("volumes") or []):
            secret = volume.get("secret") if isinstance(volume, dict) else None
            if isinstance(secret, dict) and (
                "ssh" in str(secret.get("secretName")) or "id_rsa" in repr(secret)
            ):
                self.report(
                    Severity.WARNING,
                    f"{path}.volumes[{index}]",
                    "mpi-ssh",
                    f"Secret {secret.get('secretName')} looks like hand-made SSH keys; Trainer generates the "
                    "keys (Secret <trainjob>-mpi-ssh-auth, mounted at sshAuthMountPath); this volume is kept "
                    "as is",
                )


def mpi_runtime(
    namespace: str | None,
    *,
    launcher: tuple[dict[str, Any], dict[str, Any]],
    node: tuple[dict[str, Any], dict[str, Any]],
    mpi_policy: dict[str, Any],
    wait_for_workers: bool,
    jobset_annotations: dict[str, str],
) -> dict[str, Any]:
    """A TrainingRuntime of the shipped MPI runtimes' shape (``deepspeed-distributed``): the ``node`` job and
    the ``launcher`` job holding the trainer, each with its (metadata, pod spec)."""

    def job(name: str, meta: dict[str, Any], pod: dict[str, Any], trainer: bool) -> dict[str, Any]:
        pod_template: dict[str, Any] = {"spec": pod}
        if meta:
            pod_template["metadata"] = meta
        template: dict[str, Any] = {"spec": {"template": pod_template}}
        if trainer:
            template["metadata"] = {"labels": {ANCESTOR_LABEL: "trainer"}}
        out: dict[str, Any] = {"name": name, "template": template}
        if trainer and wait_for_workers:
            out["dependsOn"] = [{"name": TRAINER_JOB, "status": "Ready"}]
        return out

    template: dict[str, Any] = {
        "spec": {
            "network": {"publishNotReadyAddresses": True},
            "successPolicy": {"operator": "All", "targetReplicatedJobs": [LAUNCHER_JOB]},
            "replicatedJobs": [job(TRAINER_JOB, *node, False), job(LAUNCHER_JOB, *launcher, True)],
        }
    }
    if jobset_annotations:
        template["metadata"] = {"annotations": dict(jobset_annotations)}
    spec = {"mlPolicy": {"numNodes": 1, "mpi": mpi_policy}, "template": template}
    return named_runtime(namespace, "mpi", spec, "mpi")
