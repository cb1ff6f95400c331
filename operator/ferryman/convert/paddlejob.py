"""PaddleJob (``kubeflow.org/v1``) to a TrainJob on a derived runtime without an ML policy (Trainer ships no
Paddle runtime), where v1's ``PADDLE_*`` environment can be reproduced exactly.

That is a Worker-only job: v1 set ``PADDLE_JOB_ID`` (the job's name), ``PADDLE_NNODES`` (the replicas) and
``PADDLE_MASTER``, which on worker 0 is its own pod IP and on the others worker 0's host name, each with the
``master`` port. A single node gets it from env; several nodes from a shell around the command, since the
value differs on node 0. A Master replica (parameter-server mode: ``PADDLE_SERVER_NUM`` on it,
``PADDLE_TRAINER_NUM`` on the Workers) and ``elasticPolicy`` (etcd rendezvous and scaling) have no v2
equivalent.
"""

from __future__ import annotations

from typing import Any

from ferryman.api import v1jobs
from ferryman.api.kinds import PADDLEJOB
from ferryman.convert.findings import Severity
from ferryman.convert.options import Conversion
from ferryman.convert.replicas import LEADER, ReplicaJobConverter
from ferryman.convert.shellwrap import NODE_INDEX, quote, wrap_command

POD_IP = "POD_IP_DUMMY"  # v1's name for the pod IP PADDLE_MASTER expands on worker 0
V1_PADDLE_ENV = ("PYTHONUNBUFFERED", "PADDLE_JOB_ID", "PADDLE_NNODES", "PADDLE_MASTER", POD_IP)


class PaddleJobConverter(ReplicaJobConverter):
    kind = PADDLEJOB.kind
    container_name = v1jobs.PADDLE_CONTAINER
    port_name = v1jobs.PADDLE_PORT_NAME
    reserved_env = frozenset()
    runtime_name = "paddle"  # the base name of the derived runtime: none ships
    ml_policy = {}
    framework = "paddle"
    replica_field = "paddleReplicaSpecs"
    leader_role = None

    def convert(self) -> Conversion:
        job = self.validate(v1jobs.PaddleJob)
        if job is None:
            return self.result(None)
        self.begin(job, PADDLEJOB.api_version)
        master = job.replica(LEADER)
        if master is not None:
            self.report(
                Severity.BLOCKER,
                f"{self.replica_path}.{master[0]}",
                "no-v2-equivalent",
                "a Master replica runs Paddle's parameter-server mode (v1 sets PADDLE_SERVER_NUM on it and "
                "PADDLE_TRAINER_NUM on the Workers), which one v2 node template cannot reproduce; make it a "
                "Worker-only (collective) job to convert it",
            )
        if job.spec.elastic_policy is not None:
            self.report(
                Severity.BLOCKER,
                "spec.elasticPolicy",
                "elastic-policy",
                "Paddle elastic training (etcd rendezvous, scaling between minReplicas and maxReplicas) has "
                "no Trainer v2 equivalent",
            )
        if master is not None or job.spec.elastic_policy is not None:
            return self.result(None)
        replicas = self.replicas(job.replica_specs)
        if replicas is None:
            return self.result(None)
        base = f"{self.replica_path}.{replicas.key}"
        node = self.node(base, replicas.template, has_leader=False)
        node.env = self.without_v1_env(node, V1_PADDLE_ENV)
        trainer = self.trainer_fields(node, replicas.num_nodes)
        self.needs_derived_runtime("Paddle")
        port = self.declared_port(replicas.template, v1jobs.PADDLE_DEFAULT_PORT)
        node.env = self.paddle_env(trainer, node.env, replicas.num_nodes, port, node.path)
        return self.finish(trainer, node, job.spec.run_policy)

    def paddle_env(
        self,
        trainer: dict[str, Any],
        env: list[dict[str, Any]],
        num_nodes: int | str | None,
        port: int,
        cpath: str,
    ) -> list[dict[str, Any]]:
        """The env with v1's PADDLE_* variables, PADDLE_MASTER by a shell around the command when the nodes
        differ in it."""
        own = f"$({POD_IP}):{port}"
        out = [
            *env,
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            {"name": "PADDLE_JOB_ID", "value": self.source_name},
            {"name": "PADDLE_NNODES", "value": str(num_nodes if num_nodes is not None else 0)},
            {"name": POD_IP, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ]
        if num_nodes == 1:
            self.report(
                Severity.INFO,
                f"{cpath}.env",
                "v1-env-injected",
                "PADDLE_JOB_ID, PADDLE_NNODES and PADDLE_MASTER (the pod IP and master port) are set as v1 "
                "set them",
            )
            return [*out, {"name": "PADDLE_MASTER", "value": own}]
        leader = f"{self.name}-node-0-0.{self.name}:{port}"
        script = (
            f'if [ "${NODE_INDEX}" = 0 ]; then PADDLE_MASTER="${POD_IP}":{port}; '
            f"else PADDLE_MASTER={quote(leader)}; fi; export PADDLE_MASTER"
        )
        if wrap_command(trainer, script):
            self.report(
                Severity.INFO,
                f"{cpath}.command",
                "v1-env-injected",
                "PADDLE_JOB_ID and PADDLE_NNODES are set as v1 set them; PADDLE_MASTER by a shell around the "
                "command: node 0's own pod IP there, node 0's host name elsewhere, with the master port",
            )
        else:
            self.report(
                Severity.BLOCKER,
                f"{cpath}.command",
                "paddle-master",
                "PADDLE_MASTER differs on node 0 (its pod IP) and only a shell around the command can set "
                "it; the container runs the image's entrypoint, which is unknown. Set its command",
            )
        return out
