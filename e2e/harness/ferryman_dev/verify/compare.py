"""Rank-by-rank comparison of the pods two controllers rendered for one job (pure: objects in, differences
out).

A side is the pods one controller created for a job, keyed by rank, and the Services it created beside them.
Each pod is reduced to what the training process sees and where it runs (:func:`pod_fields`): the
distributed contract resolved to values (world size, node rank, local processes, the rank the master
address reaches through the side's Services, whether every rank agrees on the master port), the main
container's argv after a launcher wrap with ``$(VAR)`` expanded, env with downward-API references resolved,
resources, volumes and mounts, scheduling, security, service account, restart behaviour, and labels and
annotations less the controllers' own. Host names that reach a pod of the job become ``<rank N>`` wherever
they appear, so ``<job>-master-0`` and ``<job>-node-0-0.<job>`` compare equal when both reach rank 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ferryman.convert.launcher import TORCHRUN_WRAP, Launch, classify

# variables carrying the distributed contract: compared as the contract, not one by one
CONTRACT_ENV = frozenset(
    {
        "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK",
        "PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT",
        "PET_RDZV_ENDPOINT",
    }
)
# variables the Job controller sets in every container of an Indexed Job's pods
CONTROLLER_ENV = frozenset({"JOB_COMPLETION_INDEX"})
# labels and annotations the controllers (and the apiserver) put on the pods they render
CONTROLLER_METADATA = (
    "training.kubeflow.org/",
    "jobset.sigs.k8s.io/",
    "alpha.jobset.sigs.k8s.io/",
    "batch.kubernetes.io/",
    "trainer.kubeflow.org/",
    "controller-uid",
    "job-name",
)
# init containers a controller adds on its own (the Training Operator's wait for the master's DNS name)
CONTROLLER_INIT_CONTAINERS = frozenset({"init-pytorch"})
# the volume every ServiceAccount admission adds, under a random suffix
SERVICE_ACCOUNT_VOLUME = "kube-api-access-"
# pod fields compared as they are
POD_FIELDS = (
    "nodeSelector", "affinity", "tolerations", "securityContext", "serviceAccountName", "schedulerName",
    "priorityClassName", "restartPolicy", "hostNetwork", "hostIPC", "hostPID", "dnsPolicy", "dnsConfig",
    "runtimeClassName", "shareProcessNamespace", "terminationGracePeriodSeconds", "imagePullSecrets",
    "topologySpreadConstraints", "activeDeadlineSeconds", "overhead", "hostAliases", "readinessGates",
)
# container fields compared as they are (command, args and env are resolved first)
CONTAINER_FIELDS = (
    "image", "imagePullPolicy", "workingDir", "resources", "securityContext", "envFrom", "lifecycle",
    "livenessProbe", "readinessProbe", "startupProbe", "stdin", "tty", "restartPolicy",
)
# downward-API fields that name the pod itself: different on each side by construction, kept symbolic
IDENTITY_FIELD_PATHS = frozenset(
    {"metadata.name", "metadata.uid", "metadata.namespace", "status.podIP", "status.podIPs", "spec.nodeName",
     "status.hostIP", "status.hostIPs"}
)
_SHELL_WRAP = 'exec "$@"'  # convert/shellwrap.py: ["/bin/sh", "-c", "<script>; exec \"$@\"", "sh", ...]
_VARIABLE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_FIELD = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")
_TORCHRUN_FLAG = re.compile(
    r"--(nnodes|nproc[-_]per[-_]node|node[-_]rank|master[-_]addr|master[-_]port|rdzv[-_]endpoint|rdzv[-_]backend)"
    r"(?:=|\s+)(\S+)"
)


@dataclass
class Side:
    """The pods one controller rendered for a job, by rank, and the Services of their namespace."""

    pods: dict[int, dict[str, Any]]
    services: list[dict[str, Any]]
    main_container: str  # the training container's name on this side ("pytorch" in v1, "node" in v2)
    hosts: dict[str, int] = field(init=False)  # host name -> the rank whose pod it reaches

    def __post_init__(self) -> None:
        self.hosts = reachable_hosts(self.pods, self.services)


@dataclass(frozen=True)
class Difference:
    rank: int | None  # None for the job as a whole
    path: str  # in the pod, e.g. "spec.containers[0].env.NCCL_DEBUG" or "contract.world_size"
    v1: Any
    v2: Any


def reachable_hosts(pods: dict[int, dict[str, Any]], services: list[dict[str, Any]]) -> dict[str, int]:
    """Every DNS name (short, namespaced and fully qualified) that reaches one ranked pod: a Service whose
    selector matches exactly that pod, and ``<hostname>.<subdomain>`` of a pod under a headless Service."""
    names: dict[str, int] = {}
    for service in services:
        meta, spec = service["metadata"], service.get("spec") or {}
        selector = spec.get("selector") or {}
        if not selector:
            continue
        selected = [rank for rank, pod in pods.items() if _matches(pod, selector)]
        namespace = meta["namespace"]
        governing = any(pods[rank]["spec"].get("subdomain") == meta["name"] for rank in selected)
        if len(selected) == 1 and not governing:  # a governing Service's name reaches all its pods
            names.update(dict.fromkeys(_dns_forms(meta["name"], namespace), selected[0]))
        if spec.get("clusterIP") != "None":
            continue
        for rank in selected:
            pod_spec = pods[rank]["spec"]
            if pod_spec.get("subdomain") == meta["name"] and pod_spec.get("hostname"):
                host = f"{pod_spec['hostname']}.{meta['name']}"
                names.update(dict.fromkeys(_dns_forms(host, namespace), rank))
    return names


def _dns_forms(name: str, namespace: str) -> list[str]:
    return [f"{name}.{namespace}.svc.cluster.local", f"{name}.{namespace}.svc", f"{name}.{namespace}", name]


def _matches(pod: dict[str, Any], selector: dict[str, str]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(key) == value for key, value in selector.items())


class _Resolver:
    """Values of one pod as its process sees them: host names of the job as ranks, downward API resolved."""

    def __init__(self, side: Side, pod: dict[str, Any]) -> None:
        self.pod = pod
        names = sorted(side.hosts, key=len, reverse=True)  # longest first: FQDNs before short names
        self.hosts = side.hosts
        self.pattern = (
            re.compile("(?<![A-Za-z0-9.-])(" + "|".join(map(re.escape, names)) + ")(?![A-Za-z0-9-])")
            if names
            else None
        )

    def text(self, value: str) -> str:
        if self.pattern is None:
            return value
        return self.pattern.sub(lambda m: f"<rank {self.hosts[m.group(1)]}>", value)

    def env(self, container: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for entry in container.get("env") or []:
            name = entry["name"]
            if "value" in entry or "valueFrom" not in entry:
                values[name] = self.text(_VARIABLE.sub(lambda m: str(values.get(m.group(1), m.group(0))),
                                                       str(entry.get("value", ""))))
            else:
                values[name] = self.value_from(entry["valueFrom"])
        return values

    def value_from(self, source: dict[str, Any]) -> Any:
        reference = source.get("fieldRef")
        if reference is None:
            return source  # secretKeyRef, configMapKeyRef, resourceFieldRef: the same reference on both sides
        path = reference.get("fieldPath", "")
        if path in IDENTITY_FIELD_PATHS:
            return {"fieldRef": path}
        found = _FIELD.match(path)
        if found:
            return (self.pod["metadata"].get(found.group(1)) or {}).get(found.group(2))
        if path.startswith("spec."):
            return self.pod["spec"].get(path.removeprefix("spec."))
        return {"fieldRef": path}


def argv(container: dict[str, Any], env: dict[str, Any], resolver: _Resolver) -> tuple[list[str], bool]:
    """The command and args a container runs with ``$(VAR)`` expanded, without ferryman's wraps (a per-node
    shell wrap, ``torchrun --no-python``), and whether torchrun starts it (after unwrapping too)."""
    tokens = [str(t) for t in container.get("command") or []]
    rest = [str(t) for t in container.get("args") or []]
    if len(tokens) >= 4 and tokens[:2] == ["/bin/sh", "-c"] and tokens[2].endswith(_SHELL_WRAP) and (
        tokens[3] == "sh"
    ):
        tokens = tokens[4:]
    launched = classify(tokens, rest).launch is Launch.TORCH
    if tuple(tokens[: len(TORCHRUN_WRAP)]) == TORCHRUN_WRAP:
        tokens = tokens[len(TORCHRUN_WRAP) :]

    def expand(token: str) -> str:
        return resolver.text(_VARIABLE.sub(lambda m: str(env.get(m.group(1), m.group(0))), token))

    return [expand(t) for t in [*tokens, *rest]], launched


def contract(env: dict[str, Any], words: list[str], torchrun: bool) -> dict[str, Any]:
    """What the training processes of a pod see: torchrun's view (PET_* and its own flags) when it starts
    them, else the variables themselves. ``master`` is a rank when the address reaches a pod of the job;
    under a dynamic rendezvous (c10d, etcd) it is the rendezvous endpoint and the node rank is assigned."""
    if torchrun:
        flags = {m.group(1).replace("-", "_"): m.group(2) for m in _TORCHRUN_FLAG.finditer(" ".join(words))}
        nnodes = str(flags.get("nnodes", env.get("PET_NNODES", "1")))
        nproc = str(flags.get("nproc_per_node", env.get("PET_NPROC_PER_NODE", "1")))
        backend = str(flags.get("rdzv_backend", env.get("PET_RDZV_BACKEND", "static")))
        master: Any
        port: Any
        if backend != "static":
            endpoint = str(flags.get("rdzv_endpoint", env.get("PET_RDZV_ENDPOINT", "")))
            master, _, port = endpoint.rpartition(":")
            node_rank: Any = f"assigned by the {backend} rendezvous"
        else:
            master = flags.get("master_addr", env.get("PET_MASTER_ADDR"))
            port = flags.get("master_port", env.get("PET_MASTER_PORT"))
            node_rank = flags.get("node_rank", env.get("PET_NODE_RANK", "0"))
        numeric = nnodes.isdigit() and nproc.isdigit()
        world = str(int(nnodes) * int(nproc)) if numeric else f"{nnodes} x {nproc}"
        return {"world_size": world, "node_rank": node_rank, "local_processes": nproc, "master": master,
                "port": port}
    return {
        "world_size": env.get("WORLD_SIZE"),
        "node_rank": env.get("RANK"),
        "local_processes": "1",
        "master": env.get("MASTER_ADDR"),
        "port": env.get("MASTER_PORT"),
    }


def pod_fields(side: Side, rank: int) -> dict[str, Any]:
    """One ranked pod as a flat map of comparable paths to values (see the module docstring)."""
    pod = side.pods[rank]
    spec = pod["spec"]
    resolver = _Resolver(side, pod)
    fields: dict[str, Any] = {}
    containers = spec.get("containers") or []
    main = next((c for c in containers if c["name"] == side.main_container), None)
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or []:
            name = container["name"]
            if kind == "initContainers" and name in CONTROLLER_INIT_CONTAINERS:
                continue
            key = f"spec.{kind}[{'main' if container is main else name}]"
            env = resolver.env(container)
            words, torchrun = argv(container, env, resolver)
            if container is main:
                for item, value in contract(env, words, torchrun).items():
                    fields[f"contract.{item}"] = value
            fields[f"{key}.argv"] = words
            for name_, value in env.items():
                if name_ in CONTROLLER_ENV or (container is main and name_ in CONTRACT_ENV):
                    continue
                fields[f"{key}.env.{name_}"] = value
            for item in CONTAINER_FIELDS:
                if container.get(item) not in (None, {}, []):
                    fields[f"{key}.{item}"] = container[item]
            mounts = [m for m in container.get("volumeMounts") or []
                      if not m["name"].startswith(SERVICE_ACCOUNT_VOLUME)]
            for mount in mounts:
                fields[f"{key}.volumeMounts.{mount['mountPath']}"] = {
                    k: v for k, v in mount.items() if k != "mountPath"
                }
    for volume in spec.get("volumes") or []:
        if not volume["name"].startswith(SERVICE_ACCOUNT_VOLUME):
            fields[f"spec.volumes.{volume['name']}"] = {k: v for k, v in volume.items() if k != "name"}
    for item in POD_FIELDS:
        if spec.get(item) not in (None, {}, []):
            fields[f"spec.{item}"] = _resolve_hosts(spec[item], resolver)
    for item in ("labels", "annotations"):
        for key, value in (pod["metadata"].get(item) or {}).items():
            if not key.startswith(CONTROLLER_METADATA):
                fields[f"metadata.{item}.{key}"] = value
    return fields


def _resolve_hosts(value: Any, resolver: _Resolver) -> Any:
    if isinstance(value, str):
        return resolver.text(value)
    if isinstance(value, list):
        return [_resolve_hosts(v, resolver) for v in value]
    if isinstance(value, dict):
        return {k: _resolve_hosts(v, resolver) for k, v in value.items()}
    return value


def compare(v1: Side, v2: Side) -> list[Difference]:
    """Every difference between the two sides: ranks one side lacks, then field by field for each rank.

    The master port is a difference only when the ranks of a side disagree on it: rank 0 listens on
    whichever port its side names, so v1's 23456 and Trainer's 29400 are the same contract.
    """
    differences: list[Difference] = []
    if not v1.pods and not v2.pods:
        return [Difference(None, "pods", "none rendered", "none rendered")]
    for rank in sorted(set(v1.pods) ^ set(v2.pods)):
        differences.append(Difference(rank, "pod", _pod_name(v1, rank), _pod_name(v2, rank)))
    ports: dict[str, set[Any]] = {"v1": set(), "v2": set()}
    for rank in sorted(set(v1.pods) & set(v2.pods)):
        ours, theirs = pod_fields(v1, rank), pod_fields(v2, rank)
        ports["v1"].add(ours.pop("contract.port", None))
        ports["v2"].add(theirs.pop("contract.port", None))
        for path in sorted(set(ours) | set(theirs)):
            if ours.get(path) != theirs.get(path):
                differences.append(Difference(rank, path, ours.get(path), theirs.get(path)))
    if len(ports["v1"]) > 1 or len(ports["v2"]) > 1:
        differences.append(
            Difference(None, "contract.port", sorted(map(str, ports["v1"])), sorted(map(str, ports["v2"])))
        )
    return differences


def _pod_name(side: Side, rank: int) -> str | None:
    pod = side.pods.get(rank)
    return pod["metadata"]["name"] if pod is not None else None
