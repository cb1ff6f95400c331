"""Typed view of an MPIJob: ``kubeflow.org/v2beta1`` (mpi-operator v0.8) and the older ``kubeflow.org/v1``
(Training Operator v1.9), as far as ferryman maps them. Pod templates stay dictionaries."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ferryman.api.pytorchjob import ReplicaSpec, RunPolicy, _View, replica

LAUNCHER = "Launcher"
WORKER = "Worker"
OPENMPI = "OpenMPI"  # the one implementation Trainer's MPI policy runs
DEFAULT_SSH_AUTH_MOUNT_PATH = "/root/.ssh"  # mpi-operator's and Trainer's default
WAIT_FOR_WORKERS_READY = "WaitForWorkersReady"


class MPIJobSpec(_View):
    slots_per_worker: int | str | None = Field(default=None, alias="slotsPerWorker")
    run_launcher_as_worker: bool | None = Field(default=None, alias="runLauncherAsWorker")
    run_policy: RunPolicy | None = Field(default=None, alias="runPolicy")
    mpi_replica_specs: dict[str, ReplicaSpec | None] = Field(default_factory=dict, alias="mpiReplicaSpecs")
    ssh_auth_mount_path: str | None = Field(default=None, alias="sshAuthMountPath")
    launcher_creation_policy: str | None = Field(default=None, alias="launcherCreationPolicy")
    mpi_implementation: str | None = Field(default=None, alias="mpiImplementation")
    # kubeflow.org/v1 only
    clean_pod_policy: str | None = Field(default=None, alias="cleanPodPolicy")
    main_container: str | None = Field(default=None, alias="mainContainer")


class MPIJob(_View):
    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: MPIJobSpec = Field(default_factory=MPIJobSpec)
    status: dict[str, Any] | None = None

    @property
    def replica_specs(self) -> dict[str, ReplicaSpec | None]:
        return self.spec.mpi_replica_specs

    def replica(self, replica_type: str) -> tuple[str, ReplicaSpec] | None:
        return replica(self.replica_specs, replica_type)
