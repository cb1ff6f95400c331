"""Replica topology shared by the v1 kinds whose nodes all run one pod template: an optional leader replica
(``Master``, which v1 made rank 0) and ``Worker`` replicas, summed into ``numNodes``.

A kind's converter subclasses :class:`ReplicaJobConverter` and names its map of replica specs, its leader
role and the restart policy v1 defaulted its replicas to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ferryman.api import pytorchjob as v1
from ferryman.convert.core import JobConverter, Node, join, mapping
from ferryman.convert.findings import Severity
from ferryman.convert.merge import TemplateMerge

LEADER = "Master"
WORKER = "Worker"


@dataclass(frozen=True)
class Replicas:
    """What the replica specs give every node: the replica whose path findings name, its pod template (the
    leader's and the Workers' merged), whether a leader exists and ``numNodes``."""

    key: str
    template: dict[str, Any]
    has_leader: bool
    num_nodes: int | str | None


class ReplicaJobConverter(JobConverter):
    replica_field: ClassVar[str]  # the spec field holding the replica specs, e.g. jaxReplicaSpecs
    leader_role: str | None = LEADER  # None: a Worker-only kind
    default_restart_policy: ClassVar[str] = "OnFailure"  # what v1 defaulted the kind's replicas to

    @property
    def replica_path(self) -> str:
        return f"spec.{self.replica_field}"

    def replicas(self, specs: dict[str, v1.ReplicaSpec | None]) -> Replicas | None:
        """The nodes' topology, or None (after a blocker) when it cannot be converted."""
        roles = [role for role in (self.leader_role, WORKER) if role is not None]
        for key in specs:
            if key.lower() not in (role.lower() for role in roles):
                self.report(
                    Severity.BLOCKER,
                    join(self.replica_path, key),
                    "unknown-replica-type",
                    f"replica type {key!r} is not {' or '.join(roles)}; v1 rejects it and v2 has no "
                    "equivalent",
                )
        leader = v1.replica(specs, self.leader_role) if self.leader_role else None
        worker = v1.replica(specs, WORKER)
        if leader is None and worker is None:
            self.report(
                Severity.BLOCKER,
                self.replica_path,
                "no-replicas",
                f"the job has no {' or '.join(roles)} replica spec",
            )
            return None
        terms: list[int | str | None] = []
        for entry in (leader, worker):
            if entry is None:
                continue
            key, replica = entry
            path = f"{self.replica_path}.{key}"
            self.unknown(replica.unknown_fields(), path)
            if entry is worker or worker is None or replica.restart_policy != worker[1].restart_policy:
                # a leader policy equal to the Workers' is the nodes' policy: reported once, as the Workers'
                self.replica_restart_policy(
                    replica.restart_policy, f"{path}.restartPolicy", entry is worker or worker is None
                )
            count = 1 if replica.replicas is None else replica.replicas
            terms.append(self.integer(count, f"{path}.replicas", f"{key}.replicas"))
        primary_key, primary = worker if worker is not None else leader  # type: ignore[misc]
        template = mapping(primary.template)
        if leader is not None and worker is not None:
            template = self.merge_templates(leader, worker)
        return Replicas(primary_key, template, leader is not None, self.node_count(terms))

    def node_count(self, terms: list[int | str | None]) -> int | str | None:
        """numNodes from the replica counts: their sum, a lone placeholder, or None after a blocker."""
        if any(t is None for t in terms):
            return None
        if all(isinstance(t, int) for t in terms):
            return sum(t for t in terms if isinstance(t, int))
        placeholders = [t for t in terms if isinstance(t, str)]
        if len(terms) == 1:
            return placeholders[0]
        rest = [t for t in terms if isinstance(t, int)]
        self.report(
            Severity.BLOCKER,
            self.replica_path,
            "placeholder-arithmetic",
            f"numNodes would be {' + '.join(str(t) for t in terms)}, which one placeholder cannot express; "
            f"substitute {', '.join(placeholders)} first or make it a Worker-only job"
            + (f" (other replicas: {sum(rest)})" if rest else ""),
        )
        return None

    def replica_restart_policy(self, policy: str | None, path: str, primary: bool) -> None:
        """A replica's restartPolicy; the one v1 defaulted an unset policy to is reported as such."""
        if policy is not None or self.default_restart_policy == "OnFailure":
            self.restart_policy(policy, path, primary)
            return
        self.report(
            Severity.INFO,
            path,
            "restart-policy",
            f"v1 defaulted the restart policy to {self.default_restart_policy}; v2 pods restart in place on "
            "failure (OnFailure). Set restartPolicy Never on the replica to keep v1's behaviour",
        )

    def merge_templates(
        self, leader: tuple[str, v1.ReplicaSpec], worker: tuple[str, v1.ReplicaSpec]
    ) -> dict[str, Any]:
        """The one pod template every node runs: the Workers' with what the leader adds (convert/merge.py)."""
        (lkey, lspec), (wkey, wspec) = leader, worker
        default = self.default_restart_policy
        if (lspec.restart_policy or default) != (wspec.restart_policy or default):
            self.report(
                Severity.WARNING,
                f"{self.replica_path}.{lkey}.restartPolicy",
                "replica-templates-differ",
                f"{lkey} restartPolicy {lspec.restart_policy} differs from {wkey}'s; all v2 nodes share one",
            )
        merge = TemplateMerge(
            f"{self.replica_path}.{lkey}",
            f"{self.replica_path}.{wkey}",
            self.container_name,
            self.options.claims,
            self.namespace,
        )
        merged = merge.merge(mapping(lspec.template), mapping(wspec.template))
        self.findings.extend(merge.findings)
        return merged

    def trainer_fields(self, node: Node, num_nodes: int | str | None) -> dict[str, Any]:
        """``trainer``'s numNodes, and image, command, args and resources from the node container with v1
        host names rewritten."""
        trainer: dict[str, Any] = {}
        if num_nodes is not None:
            trainer["numNodes"] = num_nodes
        for key in ("image", "command", "args"):
            if node.container.get(key) is not None:
                trainer[key] = node.container[key]
        if node.container.get("resources"):
            trainer["resourcesPerNode"] = node.container["resources"]
        if self.rewriter:
            for key in ("command", "args"):
                if key in trainer:
                    trainer[key] = self.rewrite_hosts(trainer[key], f"{node.path}.{key}", self.rewriter)
        return trainer

    def needs_derived_runtime(self, framework: str) -> None:
        """Record that the job needs a derived TrainingRuntime without an ML policy: Trainer ships no
        ``framework`` runtime."""
        self.need(
            Severity.BLOCKER,
            "kind",
            "no-runtime",
            f"Trainer ships no {framework} runtime; a TrainingRuntime without an ML policy would run it",
            f"the job runs on a derived TrainingRuntime without an ML policy (Trainer ships no {framework} "
            "one)",
        )

    def without_v1_env(self, node: Node, names: tuple[str, ...]) -> list[dict[str, Any]]:
        """``node.env`` without the variables the v1 operator set over the job's own (each reported): a
        kind with no leader sets them again with v2 values."""
        source = [e.get("name") if isinstance(e, dict) else None for e in node.container.get("env") or []]
        kept: list[dict[str, Any]] = []
        for entry in node.env:
            if entry.get("name") not in names:
                kept.append(entry)
                continue
            index = len(source) - 1 - source[::-1].index(entry["name"])  # the entry that counted
            self.report(
                Severity.WARNING,
                f"{node.path}.env[{index}]",
                "v1-env-overridden",
                f"{entry['name']} is set by the v1 operator over the job's value; not copied (the v2 value "
                "is injected as v1's was)",
            )
        return kept

    def declared_port(self, template: dict[str, Any], default: int) -> int:
        """The containerPort of the port named ``port_name`` on the v1 container, or v1's default."""
        for container in mapping(template.get("spec")).get("containers") or []:
            if isinstance(container, dict) and container.get("name") == self.container_name:
                for port in container.get("ports") or []:
                    if isinstance(port, dict) and port.get("name") == self.port_name:
                        value = port.get("containerPort")
                        if isinstance(value, int) and not isinstance(value, bool):
                            return value
        return default
