"""JAXJob (``kubeflow.org/v1``) to a TrainJob on ``jax-distributed`` (``mlPolicy.jax``, Trainer v2.2+).

Worker replicas become ``numNodes``. Trainer's JAX plugin sets ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID`` and
``JAX_COORDINATOR_ADDRESS`` (node 0, port 29500), which ``jax.distributed.initialize()`` reads; a job's own
copies are reserved names. v1 instead set ``COORDINATOR_ADDRESS`` (worker 0's host), ``COORDINATOR_PORT`` (the
``jaxjob-port``), ``NUM_PROCESSES`` and ``PROCESS_ID``, which v1 programs pass to ``initialize`` themselves:
they are set again with v2 values, so such a program runs unchanged.
"""

from __future__ import annotations

from typing import Any

from ferryman.api import v1jobs
from ferryman.api.kinds import JAXJOB
from ferryman.api.trainer import TrainerAPI
from ferryman.convert.core import Node
from ferryman.convert.findings import Severity
from ferryman.convert.launcher import COMPLETION_INDEX_ANNOTATION, master_address
from ferryman.convert.options import Conversion
from ferryman.convert.replicas import ReplicaJobConverter

JAX_RESERVED_ENV = frozenset({"JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_COORDINATOR_ADDRESS"})
V1_JAX_ENV = ("COORDINATOR_PORT", "COORDINATOR_ADDRESS", "NUM_PROCESSES", "PROCESS_ID", "PYTHONUNBUFFERED")


class JAXJobConverter(ReplicaJobConverter):
    kind = JAXJOB.kind
    container_name = v1jobs.JAX_CONTAINER
    port_name = v1jobs.JAX_PORT_NAME
    reserved_env = JAX_RESERVED_ENV
    runtime_name = "jax-distributed"
    ml_policy = {"jax": {}}
    framework = "jax"
    replica_field = "jaxReplicaSpecs"
    leader_role = None
    default_restart_policy = "Never"

    def convert(self) -> Conversion:
        job = self.validate(v1jobs.JAXJob)
        if job is None:
            return self.result(None)
        self.begin(job, JAXJOB.api_version)
        if self.api in (TrainerAPI.V2_0, TrainerAPI.V2_1):
            self.report(
                Severity.BLOCKER,
                "kind",
                "no-runtime",
                f"TrainJob {self.api} has no JAX runtime: mlPolicy.jax and jax-distributed ship from Trainer "
                "v2.2 on",
            )
            return self.result(None)  # no object of this flavour can run it, even forced
        replicas = self.replicas(job.replica_specs)
        if replicas is None:
            return self.result(None)
        base = f"{self.replica_path}.{replicas.key}"
        node = self.node(base, replicas.template, has_leader=False)
        trainer = self.trainer_fields(node, replicas.num_nodes)
        port = self.declared_port(replicas.template, v1jobs.JAX_DEFAULT_PORT)
        node.env = self.v1_environment(node, replicas.num_nodes, port)
        return self.finish(trainer, node, job.spec.run_policy)

    def v1_environment(self, node: Node, num_nodes: int | str | None, port: int) -> list[dict[str, Any]]:
        """The job's env with the variables v1 set over it (COORDINATOR_*, NUM_PROCESSES, PROCESS_ID)
        set again with v2 values: node 0 is v1's worker 0, the process id is the node's index."""
        cpath = node.path
        kept = self.without_v1_env(node, V1_JAX_ENV)
        injected: list[dict[str, Any]] = [
            {"name": "COORDINATOR_PORT", "value": str(port)},
            {"name": "COORDINATOR_ADDRESS", "value": master_address(self.name)},
            {"name": "NUM_PROCESSES", "value": str(num_nodes if num_nodes is not None else 0)},
            {
                "name": "PROCESS_ID",
                "valueFrom": {
                    "fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}
                },
            },
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ]
        self.report(
            Severity.INFO,
            f"{cpath}.env",
            "v1-env-injected",
            "COORDINATOR_ADDRESS, COORDINATOR_PORT, NUM_PROCESSES and PROCESS_ID are set as v1 set them, "
            "with v2 names (node 0 is v1's worker 0; PROCESS_ID is the Job completion index); Trainer "
            "also sets JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID",
        )
        return [*kept, *injected]
