"""XGBoostJob (``kubeflow.org/v1``) to a TrainJob on ``xgboost-distributed`` (``mlPolicy.xgboost``, Trainer
v2.2+).

The Master (exactly one, v1 requires it) and the Workers become ``numNodes``; node 0 plays the Master. v1
set no ``DMLC_*`` variable: it set ``MASTER_ADDR``/``MASTER_PORT`` (the Master's ``xgboostjob-port``),
``WORLD_SIZE``, ``RANK`` and, for LightGBM, ``WORKER_ADDRS``/``WORKER_PORT``, from which the program starts
the rabit tracker on the Master itself. Those are set again with v2 values. Trainer's XGBoost plugin sets
``DMLC_TRACKER_URI`` (node 0), ``DMLC_TRACKER_PORT`` (29500), ``DMLC_TASK_ID`` (the node index) and
``DMLC_NUM_WORKER`` (nodes times GPUs per node, else nodes) and rejects a job setting them: a job's own value
that differs is reported.
"""

from __future__ import annotations

from typing import Any

from ferryman.api import v1jobs
from ferryman.api.kinds import XGBOOSTJOB
from ferryman.api.trainer import TrainerAPI
from ferryman.convert.findings import Severity
from ferryman.convert.launcher import COMPLETION_INDEX_ANNOTATION, MASTER_PORT, master_address
from ferryman.convert.options import Conversion
from ferryman.convert.replicas import LEADER, WORKER, ReplicaJobConverter

V1_XGBOOST_ENV = (
    "MASTER_PORT",
    "MASTER_ADDR",
    "WORLD_SIZE",
    "RANK",
    "PYTHONUNBUFFERED",
    "WORKER_PORT",
    "WORKER_ADDRS",
)
_RANK = {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}}


def _gpus_per_node(resources: Any) -> int:
    """GPUs per node as Trainer counts them (``GetNumGPUPerNode``): the first ``*gpu*`` request or limit."""
    resources = resources if isinstance(resources, dict) else {}
    for section in ("requests", "limits"):
        for name, quantity in (resources.get(section) or {}).items():
            if "gpu" in str(name).lower():
                try:
                    count = int(str(quantity))
                except ValueError:
                    return 0
                if count:
                    return count
                break
    return 0


class XGBoostJobConverter(ReplicaJobConverter):
    kind = XGBOOSTJOB.kind
    container_name = v1jobs.XGBOOST_CONTAINER
    port_name = v1jobs.XGBOOST_PORT_NAME
    operator_env = V1_XGBOOST_ENV
    reserved_env = frozenset()  # the DMLC_* names are compared with Trainer's values in dmlc()
    runtime_name = "xgboost-distributed"
    ml_policy = {"xgboost": {}}
    framework = "xgboost"
    replica_field = "xgbReplicaSpecs"
    default_restart_policy = "Never"

    def convert(self) -> Conversion:
        job = self.validate(v1jobs.XGBoostJob)
        if job is None:
            return self.result(None)
        self.begin(job, XGBOOSTJOB.api_version)
        if self.api in (TrainerAPI.V2_0, TrainerAPI.V2_1):
            self.report(
                Severity.BLOCKER,
                "kind",
                "no-runtime",
                f"TrainJob {self.api} has no XGBoost runtime: mlPolicy.xgboost and xgboost-distributed ship "
                "from Trainer v2.2 on",
            )
            return self.result(None)  # no object of this flavour can run it, even forced
        master = job.replica(LEADER)
        if master is None:
            self.report(
                Severity.BLOCKER,
                self.replica_path,
                "no-master",
                "v1 requires a Master replica (it runs the rabit tracker); the job has none",
            )
            return self.result(None)
        if master[1].replicas not in (None, 1):
            self.report(
                Severity.BLOCKER,
                f"{self.replica_path}.{master[0]}.replicas",
                "invalid-value",
                f"Master replicas is {master[1].replicas!r}; v1 requires exactly 1",
            )
        replicas = self.replicas(job.replica_specs)
        if replicas is None:
            return self.result(None)
        base = f"{self.replica_path}.{replicas.key}"
        node = self.node(base, replicas.template, has_leader=True)
        trainer = self.trainer_fields(node, replicas.num_nodes)
        worker = job.replica(WORKER)
        ports = (
            self.declared_port(master[1].template, v1jobs.XGBOOST_DEFAULT_PORT),
            self.declared_port(worker[1].template, v1jobs.XGBOOST_DEFAULT_PORT) if worker else None,
        )
        node.env = self.dmlc(node.env, replicas.num_nodes, node.container.get("resources"), node.path)
        node.env.extend(self.v1_environment(replicas.num_nodes, ports, node.path))
        return self.finish(trainer, node, job.spec.run_policy)

    def v1_environment(
        self, num_nodes: int | str | None, ports: tuple[int, int | None], cpath: str
    ) -> list[dict[str, Any]]:
        """MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK (and WORKER_ADDRS, WORKER_PORT with Workers) as v1 set
        them, with v2 host names: node 0 is the Master, node i+1 v1's worker i."""
        master_port, worker_port = ports
        env: list[dict[str, Any]] = [
            {"name": "MASTER_PORT", "value": str(master_port)},
            {"name": "MASTER_ADDR", "value": master_address(self.name)},
            {"name": "WORLD_SIZE", "value": str(num_nodes if num_nodes is not None else 0)},
            {"name": "RANK", "valueFrom": _RANK},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ]
        if isinstance(num_nodes, int) and num_nodes > 1:
            hosts = [f"{self.name}-node-0-{i}.{self.name}" for i in range(1, num_nodes)]
            env.append({"name": "WORKER_PORT", "value": str(worker_port)})
            env.append({"name": "WORKER_ADDRS", "value": ",".join(hosts)})
        elif isinstance(num_nodes, str):
            self.report(
                Severity.BLOCKER,
                self.replica_path,
                "world-size",
                "WORKER_ADDRS lists every Worker's host name, which a placeholder node count cannot; "
                "substitute it first",
            )
        self.report(
            Severity.INFO,
            f"{cpath}.env",
            "v1-env-injected",
            f"{', '.join(e['name'] for e in env)} are set as v1 set them, with v2 host names (node 0 is the "
            "Master; RANK is the Job completion index)",
        )
        return env

    def dmlc(
        self, env: list[dict[str, Any]], num_nodes: int | str | None, resources: Any, cpath: str
    ) -> list[dict[str, Any]]:
        """The job's env without the DMLC_* names Trainer sets, each compared with Trainer's value."""
        per_node = _gpus_per_node(resources) or 1
        trainer_values: dict[str, str] = {
            "DMLC_TRACKER_URI": master_address(self.name),
            "DMLC_TRACKER_PORT": str(MASTER_PORT),
            "DMLC_TASK_ID": "the node index",
            "DMLC_NUM_WORKER": (
                str(num_nodes * per_node) if isinstance(num_nodes, int) else "numNodes times GPUs per node"
            ),
        }
        kept: list[dict[str, Any]] = []
        for index, entry in enumerate(env):
            name = entry.get("name")
            if name not in trainer_values:
                kept.append(entry)
                continue
            path = f"{cpath}.env[{index}]"
            value, ours = entry.get("value"), trainer_values[name]
            if name == "DMLC_TASK_ID" and entry.get("valueFrom") == _RANK:
                value = ours
            if value is not None and value == ours:
                self.report(
                    Severity.INFO,
                    path,
                    "reserved-env",
                    f"{name} is reserved by Trainer's XGBoost runtime, which sets the same value; not copied",
                )
            else:
                self.report(
                    Severity.WARNING,
                    path,
                    "reserved-env",
                    f"{name} is reserved by Trainer's XGBoost runtime, which sets it to {ours}; the job's "
                    f"value {value if value is not None else entry.get('valueFrom')!r} is not copied. Check "
                    "the program agrees",
                )
        return kept
