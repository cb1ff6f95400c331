"""TFJob (``kubeflow.org/v1``) to a TrainJob on a derived runtime without an ML policy (Trainer ships no
TensorFlow runtime).

Worker-only and Chief (or Master) + Worker jobs, MultiWorkerMirroredStrategy's topologies, convert: node 0
plays the Chief, and ``TF_CONFIG`` is set on every node exactly as v1 set it (its cluster of
``<host>:<tfjob-port>`` per role, the node's task type and index, environment ``cloud``), with v2 host names.
Worker-only, it is an env value expanding the node's index; with a Chief, whose task type differs, a shell
wrapped around the command computes it. ParameterServer and Evaluator roles have no v2 equivalent.
"""

from __future__ import annotations

import json
from typing import Any

from ferryman.api import v1jobs
from ferryman.api.kinds import TFJOB
from ferryman.convert.core import join
from ferryman.convert.findings import Severity
from ferryman.convert.launcher import COMPLETION_INDEX_ANNOTATION
from ferryman.convert.options import Conversion
from ferryman.convert.replicas import WORKER, ReplicaJobConverter
from ferryman.convert.shellwrap import NODE_INDEX, quote, wrap_command

TF_CONFIG = "TF_CONFIG"
TASK_INDEX = "TF_TASK_INDEX"  # the Worker-only job's node index, expanded into TF_CONFIG
_LEADERS = ("Chief", "Master")  # Master is v1's older name for the Chief
_NO_EQUIVALENT = ("PS", "Evaluator")


class TFJobConverter(ReplicaJobConverter):
    kind = TFJOB.kind
    container_name = v1jobs.TF_CONTAINER
    port_name = v1jobs.TF_PORT_NAME
    operator_env = (TF_CONFIG,)
    reserved_env = frozenset()
    runtime_name = "tensorflow"  # the base name of the derived runtime: none ships
    ml_policy = {}
    framework = "tensorflow"
    replica_field = "tfReplicaSpecs"
    default_restart_policy = "Never"

    def convert(self) -> Conversion:
        job = self.validate(v1jobs.TFJob)
        if job is None:
            return self.result(None)
        self.begin(job, TFJOB.api_version)
        specs = job.replica_specs
        for key in specs:
            if key.lower() in (role.lower() for role in _NO_EQUIVALENT):
                self.report(
                    Severity.BLOCKER,
                    join(self.replica_path, key),
                    "no-v2-equivalent",
                    f"a {key} replica (parameter-server or evaluator training) has no Trainer v2 equivalent: "
                    "every v2 node runs one template. Rewrite the job for MultiWorkerMirroredStrategy (Chief "
                    "and Workers) to convert it",
                )
        leaders = [found for role in _LEADERS if (found := job.replica(role)) is not None]
        if len(leaders) > 1:
            self.report(
                Severity.BLOCKER,
                self.replica_path,
                "no-v2-equivalent",
                "the job has both a Chief and a Master replica; v1 treats either as the chief, not both",
            )
        if self.blocked_so_far():
            return self.result(None)
        self.leader_role = leaders[0][0] if leaders else None
        replicas = self.replicas(specs)
        if replicas is None:
            return self.result(None)
        base = f"{self.replica_path}.{replicas.key}"
        node = self.node(base, replicas.template, replicas.has_leader)
        trainer = self.trainer_fields(node, replicas.num_nodes)
        self.needs_derived_runtime("TensorFlow")
        if job.spec.success_policy not in (None, ""):
            self.report(
                Severity.WARNING,
                "spec.successPolicy",
                "success-policy",
                f"successPolicy {job.spec.success_policy}: a TrainJob succeeds when every node has; v2 has "
                "no other policy for it",
            )
        elif replicas.num_nodes != 1:
            self.report(
                Severity.INFO,
                "spec.successPolicy",
                "success-policy",
                "v1 counted the job succeeded when the chief (or worker 0) did; a TrainJob succeeds when "
                "every node has",
            )
        if job.spec.enable_dynamic_worker:
            self.report(
                Severity.WARNING,
                "spec.enableDynamicWorker",
                "dynamic-worker",
                "enableDynamicWorker (a sparse TF_CONFIG for parameter-server training) has no v2 "
                "equivalent; the full cluster is set",
            )
        node.env = self.without_v1_env(node, (TF_CONFIG,))
        node.env = self.tf_config(job, trainer, node.env, replicas.num_nodes, node.path)
        return self.finish(trainer, node, job.spec.run_policy)

    def blocked_so_far(self) -> bool:
        return any(f.severity is Severity.BLOCKER for f in self.findings)

    def tf_config(
        self,
        job: v1jobs.TFJob,
        trainer: dict[str, Any],
        env: list[dict[str, Any]],
        num_nodes: int | str | None,
        cpath: str,
    ) -> list[dict[str, Any]]:
        """The env with TF_CONFIG as v1 set it (only for more than one replica), with v2 host names."""
        if num_nodes == 1:
            return env
        if not isinstance(num_nodes, int):
            self.report(
                Severity.BLOCKER,
                self.replica_path,
                "world-size",
                "TF_CONFIG lists every node's host name, which a placeholder node count cannot; "
                "substitute it",
            )
            return env
        leader = job.replica(self.leader_role) if self.leader_role else None
        worker = job.replica(WORKER)
        hosts = [f"{self.name}-node-0-{i}.{self.name}" for i in range(num_nodes)]
        cluster: dict[str, list[str]] = {}
        if leader is not None:
            port = self.declared_port(leader[1].template, v1jobs.TF_DEFAULT_PORT)
            cluster[leader[0].lower()] = [f"{hosts[0]}:{port}"]
        if worker is not None:
            port = self.declared_port(worker[1].template, v1jobs.TF_DEFAULT_PORT)
            cluster["worker"] = [f"{host}:{port}" for host in hosts[1 if leader else 0 :]]
        cluster_json = json.dumps(dict(sorted(cluster.items())), separators=(",", ":"))
        if leader is None:
            value = (
                f'{{"cluster":{cluster_json},"task":{{"type":"worker","index":$({TASK_INDEX})}},'
                '"environment":"cloud"}'
            )
            index = {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}}
            self.report(
                Severity.INFO,
                f"{cpath}.env",
                "v1-env-injected",
                f"TF_CONFIG is set as v1 set it, with v2 host names; the task index is {TASK_INDEX}, the "
                "node's index",
            )
            return [*env, {"name": TASK_INDEX, "valueFrom": index}, {"name": TF_CONFIG, "value": value}]
        role = leader[0].lower()
        head = quote(f'{{"cluster":{cluster_json},"task":{{"type":"')
        middle, tail = quote('","index":'), quote('},"environment":"cloud"}')
        script = (
            f'if [ "${NODE_INDEX}" = 0 ]; then t={role} i=0; else t=worker i=$(({NODE_INDEX} - 1)); fi; '
            f'export {TF_CONFIG}={head}"$t"{middle}"$i"{tail}'
        )
        if wrap_command(trainer, script):
            self.report(
                Severity.INFO,
                f"{cpath}.command",
                "v1-env-injected",
                "TF_CONFIG is set as v1 set it, with v2 host names, by a shell around the command: node 0 "
                f"is the {leader[0]}, node i worker i-1",
            )
        else:
            self.report(
                Severity.BLOCKER,
                f"{cpath}.command",
                "tf-config",
                f"with a {leader[0]}, TF_CONFIG's task differs per node and only a shell around the command "
                "can set it; the container runs the image's entrypoint, which is unknown. Set its command",
            )
        return env
