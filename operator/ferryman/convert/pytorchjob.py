"""PyTorchJob (``kubeflow.org/v1``) to TrainJob on a torch runtime: replicas, launcher and processes per node.

The kind-agnostic steps are in ``convert/core.py``; this module adds what only a PyTorchJob has: Master and
Worker replicas (node 0 plays the Master), ``nprocPerNode``, ``elasticPolicy`` and the variables v1 injected
for ``torch.distributed`` (see ``convert/launcher.py``).
"""

from __future__ import annotations

import re
from typing import Any

from ferryman.api import pytorchjob as v1
from ferryman.api.kinds import PYTORCHJOB
from ferryman.api.trainer import LauncherStrategy, TrainerAPI
from ferryman.convert.findings import Severity
from ferryman.convert.launcher import (
    MASTER_PORT,
    TORCHRUN_WRAP,
    V1_ENV,
    Launch,
    add_launcher_argument,
    classify,
    master_address,
    v1_env,
    v1_env_references,
)
from ferryman.convert.options import Conversion
from ferryman.convert.replicas import ReplicaJobConverter

_NPROC_WORDS = ("auto", "cpu", "gpu")
# a launcher's own node count: torchrun --nnodes, accelerate --num_machines, deepspeed --num_nodes
_PINNED_NODES = re.compile(r"--(?:nnodes|num[_-]machines|num[_-]nodes)[=\s]+(\S+)")


def _env_value_texts(env: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("value")) for e in env if isinstance(e, dict) and e.get("value") is not None]


class PyTorchJobConverter(ReplicaJobConverter):
    kind = PYTORCHJOB.kind
    replica_field = "pytorchReplicaSpecs"
    container_name = v1.PYTORCH_CONTAINER
    operator_env = V1_ENV

    def convert(self) -> Conversion:
        job = self.validate(v1.PyTorchJob)
        if job is None:
            return self.result(None)
        self.begin(job, PYTORCHJOB.api_version)
        spec = job.spec
        replicas = self.replicas(job.replica_specs)
        if replicas is None:
            return self.result(None)
        template, has_master, num_nodes = replicas.template, replicas.has_leader, replicas.num_nodes
        base = f"{self.replica_path}.{replicas.key}"
        if not isinstance(template.get("spec"), dict):
            self.report(
                Severity.BLOCKER,
                f"{base}.template.spec",
                "invalid-field",
                f"the pod template's spec is {template.get('spec')!r}, not a pod spec",
            )
        node = self.node(base, template, has_master)
        trainer = self.trainer_fields(node, num_nodes)

        if spec.elastic_policy is not None:
            node.env = self.elastic(spec.elastic_policy, trainer, node.env, num_nodes, node.path)
        nproc_source = spec.nproc_per_node
        if nproc_source is None and spec.elastic_policy is not None:
            nproc_source = spec.elastic_policy.n_proc_per_node  # the deprecated field v1 still read
        nproc = self.nproc(nproc_source, node.accelerators)
        node.env, trainer = self.distributed(trainer, node.env, nproc, num_nodes, has_master, spec, node.path)
        if nproc is not None and "numProcPerNode" not in trainer:
            trainer["numProcPerNode"] = nproc
        if not any(e.get("name") == "PYTHONUNBUFFERED" for e in node.env):
            node.env.append({"name": "PYTHONUNBUFFERED", "value": "1"})  # v1 set it in every container
        self.sidecar_env(template, f"{base}.template.spec.containers", has_master, spec)
        return self.finish(trainer, node, spec.run_policy)

    def sidecar_env(
        self, template: dict[str, Any], path: str, has_master: bool, spec: v1.PyTorchJobSpec
    ) -> None:
        """v1 set its variables in every container of a pod; v2 sets them in the trainer container only, so a
        sidecar no longer sees them (found by `ferryman verify`)."""
        pod = template.get("spec") if isinstance(template, dict) else None
        containers = pod.get("containers") if isinstance(pod, dict) else None
        if not isinstance(containers, list):
            return
        names = ["PYTHONUNBUFFERED"]
        if has_master:
            names += [*V1_ENV, "PET_MASTER_ADDR", "PET_MASTER_PORT", "PET_NODE_RANK"]
        if spec.nproc_per_node is not None:
            names.append("PET_NPROC_PER_NODE")
        names += ["PET_RDZV_*"] if spec.elastic_policy is not None else ["PET_NNODES"]
        for index, container in enumerate(containers):
            if isinstance(container, dict) and container.get("name") != v1.PYTORCH_CONTAINER:
                self.report(
                    Severity.WARNING,
                    f"{path}[{index}].env",
                    "sidecar-v1-env",
                    f"v1 set {', '.join(names)} in every container; Trainer v2 sets the distributed "
                    f"variables in the trainer container only, so sidecar {container.get('name')!r} no "
                    "longer sees them",
                )

    # -- distributed semantics ----------------------------------------------------------------------

    def elastic(
        self,
        elastic: v1.ElasticPolicy,
        trainer: dict[str, Any],
        env: list[dict[str, Any]],
        num_nodes: int | str | None,
        cpath: str,
    ) -> list[dict[str, Any]]:
        """Trainer v2 has no elastic scaling (v2.2 removed ElasticPolicy): a fixed numNodes, keeping what
        torchrun itself can keep (rendezvous, restarts, a min:max node range) and naming what is lost."""
        path = "spec.elasticPolicy"
        self.unknown(elastic.unknown_fields(), path)
        low = self.integer(elastic.min_replicas, f"{path}.minReplicas", "minReplicas", 1)
        high = self.integer(elastic.max_replicas, f"{path}.maxReplicas", "maxReplicas", 1)
        low, high = low if low is not None else high, high if high is not None else low
        if self.options.strict_elastic:
            self.report(
                Severity.BLOCKER,
                path,
                "elastic-policy",
                f"elastic training (minReplicas {low}, maxReplicas {high}) has no Trainer v2 equivalent "
                "(v2.2 removed ElasticPolicy) and --strict-elastic keeps such jobs blocked; without it the "
                f"job converts to a fixed {num_nodes} nodes",
            )
            return env
        lost: list[str] = []
        if low is not None and high is not None and low != high:
            lost.append(f"scaling between minReplicas {low} and maxReplicas {high}")
        if elastic.metrics:
            metrics = ", ".join(_metric_name(m) for m in elastic.metrics)
            lost.append(f"the HorizontalPodAutoscaler v1 created from metrics ({metrics})")
        if elastic.standalone:
            lost.append("standalone rendezvous")
        rendezvous = self.rendezvous(elastic, num_nodes)
        kept = [f"{e['name']}={e['value']}" for e in rendezvous]
        entry = classify(trainer.get("command"), trainer.get("args"))
        pinned = _PINNED_NODES.search(entry.text)
        never = ""
        if entry.launch is Launch.OTHER:
            never = f" {entry.launcher} ignores torchrun's PET_* variables"
        elif pinned and ":" not in pinned.group(1):
            never = f" The command pins {pinned.group(0)}"
        elif entry.launch is Launch.TORCH and low is not None and high is not None and low != high:
            nodes = f"--nnodes={low}:{high}"
            where = add_launcher_argument(trainer, nodes)
            if where is not None:
                kept.append(f"{nodes} on the torchrun command line")
                self.report(
                    Severity.INFO,
                    f"{cpath}.{where}",
                    "elastic-policy",
                    f"{nodes} added after torchrun: it rendezvouses between minReplicas and maxReplicas",
                )
        never += ": the job was never elastic in node count" if never else ""
        self.report(
            Severity.WARNING,
            path,
            "elastic-policy",
            f"Trainer v2 has no elastic scaling (v2.2 removed ElasticPolicy): the TrainJob runs a fixed "
            f"{num_nodes} nodes (the replicas). Lost: {'; '.join(lost) or 'nothing else'}. Kept: "
            f"{', '.join(kept) or 'nothing'}.{never}"
            + (". " if never else " ")
            + "--strict-elastic blocks elastic jobs instead",
        )
        names = {e["name"] for e in rendezvous}
        return [*[e for e in env if e.get("name") not in names], *rendezvous]

    def rendezvous(self, elastic: v1.ElasticPolicy, num_nodes: int | str | None) -> list[dict[str, Any]]:
        """The PET_* variables (none reserved by Trainer) v1 set from the elastic policy, with v2 host names:
        torchrun reads them as its defaults."""
        host = elastic.rdzv_host
        if host and self.rewriter is not None:
            host = self.rewrite_hosts(host, "spec.elasticPolicy.rdzvHost", self.rewriter)
        port = elastic.rdzv_port if elastic.rdzv_port is not None else MASTER_PORT
        out = [
            ("PET_RDZV_BACKEND", elastic.rdzv_backend or "c10d"),
            ("PET_RDZV_ENDPOINT", f"{host or master_address(self.name)}:{port}"),
        ]
        if elastic.rdzv_id:
            out.append(("PET_RDZV_ID", elastic.rdzv_id))
        if elastic.rdzv_conf:
            pairs = [c for c in elastic.rdzv_conf if isinstance(c, dict)]
            conf = ",".join(f"{c.get('key')}={c.get('value')}" for c in pairs)
            out.append(("PET_RDZV_CONF", conf))
        if elastic.max_restarts is not None:
            out.append(("PET_MAX_RESTARTS", str(elastic.max_restarts)))
        return [{"name": name, "value": str(value)} for name, value in out]

    def nproc(self, value: Any, requested: list[str]) -> int | str | None:
        path = "spec.nprocPerNode"
        if value is None:
            return None
        text = str(value).strip().lower() if isinstance(value, str) else None
        if text in _NPROC_WORDS:
            if self.api is not TrainerAPI.V2_2:
                return text
            if text == "cpu" and requested:
                self.report(
                    Severity.WARNING,
                    path,
                    "nproc-per-node",
                    "nprocPerNode 'cpu' cannot be expressed in TrainJob v2.2+; with GPUs requested v2 starts "
                    "one process per GPU. Set an integer nprocPerNode to keep a fixed count",
                )
            else:
                self.report(
                    Severity.INFO,
                    path,
                    "nproc-per-node",
                    f"nprocPerNode {text!r} is v2's default (auto: a process per GPU, else per CPU)",
                )
            return None
        return self.integer(value, path, "nprocPerNode", 1)

    def distributed(
        self,
        trainer: dict[str, Any],
        env: list[dict[str, Any]],
        nproc: int | str | None,
        num_nodes: int | str | None,
        has_master: bool,
        spec: v1.PyTorchJobSpec,
        cpath: str,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Keep v1's distributed semantics: wrap in torchrun or inject the v1 variables (Master jobs only:
        v1 injects MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK only when a Master exists)."""
        entry = classify(trainer.get("command"), trainer.get("args"))
        if not has_master:
            if entry.launch is Launch.OPAQUE and num_nodes != 1 and spec.elastic_policy is None:
                self.report(
                    Severity.WARNING,
                    f"{cpath}.command",
                    "launcher-unknown",
                    "a multi-node job whose entrypoint (image default or a script file) cannot be inspected, "
                    "so its distributed setup cannot be checked: v2 sets only PET_NNODES, PET_NODE_RANK, "
                    "PET_MASTER_ADDR and PET_MASTER_PORT, which torchrun reads. Check it starts torchrun",
                )
            return env, trainer
        launcher = LauncherStrategy(self.options.launcher)
        referenced = v1_env_references([entry.text, *_env_value_texts(env)])
        wrap = entry.launch is Launch.PLAIN and launcher is LauncherStrategy.TORCHRUN
        per_node = nproc if isinstance(nproc, int) else 1
        if wrap:
            per_node = 1
        world: int | str | None = None
        if isinstance(num_nodes, int):
            world = num_nodes * per_node
        elif isinstance(num_nodes, str) and per_node == 1:
            world = num_nodes

        if entry.launch is Launch.TORCH:
            inject = referenced
            reason = "torchrun reads v2's PET_* variables; the command refers to"
        elif entry.launch is Launch.OTHER:
            inject = list(V1_ENV)
            reason = f"{entry.launcher} may read the v1 variables; injected"
        elif wrap:
            inject = referenced
            reason = "the command refers to"
            trainer["command"] = [*TORCHRUN_WRAP, *trainer["command"]]
            trainer["numProcPerNode"] = 1
            self.report(
                Severity.INFO,
                f"{cpath}.command",
                "torchrun-wrapped",
                "the entrypoint is not started by a distributed launcher; it is wrapped in "
                "'torchrun --no-python' with numProcPerNode 1, so each node runs one process with RANK, "
                "WORLD_SIZE, MASTER_ADDR and MASTER_PORT set as in v1",
            )
            if spec.nproc_per_node is not None:
                self.report(
                    Severity.INFO,
                    "spec.nprocPerNode",
                    "nproc-per-node",
                    "v1 started one process per pod for a non-launcher entrypoint; numProcPerNode is 1",
                )
        else:
            inject = list(V1_ENV)
            if entry.launch is Launch.OPAQUE:
                self.report(
                    Severity.WARNING,
                    f"{cpath}.command",
                    "launcher-unknown",
                    "the entrypoint (image default or a script file) cannot be inspected; MASTER_ADDR, "
                    "MASTER_PORT, WORLD_SIZE and RANK are injected as v1 did. If it starts torchrun itself, "
                    "nothing else is needed; otherwise check it initialises torch.distributed from them",
                )
            reason = "the v1 variables are injected (launcher strategy 'env'):"
        if not inject:
            return env, trainer
        if world is None:
            self.report(
                Severity.BLOCKER,
                "spec.pytorchReplicaSpecs",
                "world-size",
                "WORLD_SIZE cannot be computed from a placeholder node count times nprocPerNode; substitute",
            )
            world = 0
        injected = [e for e in v1_env(self.name, world) if e["name"] in inject]
        self.report(
            Severity.INFO,
            f"{cpath}.env",
            "v1-env-injected",
            f"{reason} {', '.join(e['name'] for e in injected)} (node 0 is the v1 master; RANK is the Job "
            "completion index)",
        )
        names = {e["name"] for e in injected}
        return [*[e for e in env if e.get("name") not in names], *injected], trainer


def _metric_name(metric: Any) -> str:
    """``Resource cpu``, ``Pods requests_per_second``, ... for an HPA metric spec."""
    if not isinstance(metric, dict):
        return repr(metric)
    kind = str(metric.get("type", "?"))
    source = metric.get(kind[:1].lower() + kind[1:]) if kind else None
    if not isinstance(source, dict):
        return kind
    name = source.get("name") or (source.get("metric") or {}).get("name")
    return f"{kind} {name}" if name else kind
