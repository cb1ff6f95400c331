"""One pod template for every v2 node from a leader role's (a PyTorchJob Master's) and the workers' templates.

Every TrainJob node runs one template, but most real differences between roles are additive or depend only on
the rank. The superset of both templates is taken where that is harmless on every node, with a finding naming
each differing key; the rest is a blocker naming the key and both values:

* pod labels and annotations: the union (a key both set differently keeps the workers' value);
* env vars one role sets and the other does not use: the union; ``RANK`` or ``MASTER_ADDR`` set per role by
  the user blocks (no single template can be right), a ``*_RANK`` literal (``0`` on the leader) becomes the
  node's own rank;
* rank literals in command and args (``--node_rank=0`` / ``--node_rank=1``) become ``$(PET_NODE_RANK)``;
* extra container capabilities, ports and tolerations: the union; an affinity or node selector contained in
  the other role's: the larger one;
* a volume only one role mounts: added for every node, unless it is a claim that is not known to be
  ``ReadWriteMany``/``ReadOnlyMany`` (a ``ReadWriteOnce`` claim cannot be mounted by every node);
* lifecycle hooks only the leader has: run on node 0 only (an exec hook guarded by the Job completion index).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from ferryman.convert.findings import Finding, Severity
from ferryman.convert.launcher import COMPLETION_INDEX_ANNOTATION

# (namespace, claim name) -> access modes, for the claims a conversion can see
ClaimModes = Mapping[tuple[str | None, str], tuple[str, ...]]
SHARED_ACCESS_MODES = frozenset({"ReadWriteMany", "ReadOnlyMany"})
ROLE_ENV = frozenset({"RANK", "MASTER_ADDR"})  # the user's per-role values: no single template is right
NODE_RANK = "$(PET_NODE_RANK)"  # Kubernetes expands it in command and args: the torch runtime injects it
_RANK_ENV = re.compile(r"^(?:\w+_)?(?:NODE|MACHINE|GROUP)_RANK$")
_RANK_LITERAL = re.compile(r"(--(?:node|machine)[_-]rank|--rank)([=\s\x00]+)(\d+)\b")
_RANK_GUARD = 'if [ "${JOB_COMPLETION_INDEX:-0}" = 0 ]; then exec "$0" "$@"; fi'
_RANK_FIELD = {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}}


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if not isinstance(value, str) else value


def _contains(big: Any, small: Any) -> bool:
    """Whether ``small`` is structurally part of ``big`` (maps by key, lists item by item, equal scalars)."""
    if isinstance(big, dict) and isinstance(small, dict):
        return all(key in big and _contains(big[key], value) for key, value in small.items())
    if isinstance(big, list) and isinstance(small, list):
        return all(any(_contains(b, s) for b in big) for s in small)
    return bool(big == small)


def _by(items: Any, key: str) -> dict[Any, Any] | None:
    """A list of maps keyed by ``key`` (None when it is not one, or keys repeat)."""
    if not isinstance(items, list) or not all(isinstance(i, dict) and key in i for i in items):
        return None
    out = {item[key]: item for item in items}
    return out if len(out) == len(items) else None


_CONTAINER_INDEX = re.compile(r"template\.spec\.containers\[(\d+)\]")


class TemplateMerge:
    """Merges ``lead`` (at ``lead_path``) into ``rest`` (at ``rest_path``), reporting each difference."""

    def __init__(
        self,
        lead_path: str,
        rest_path: str,
        container: str,
        claims: ClaimModes,
        namespace: str | None,
    ) -> None:
        self.lead_path = lead_path
        self.rest_path = rest_path
        self.container = container
        self.claims = claims
        self.namespace = namespace
        self.findings: list[Finding] = []
        self.lead_index: dict[int, int] = {}  # a container's index in `rest` -> its index in `lead`

    def merge(self, lead: dict[str, Any], rest: dict[str, Any]) -> dict[str, Any]:
        """The template every node runs: ``rest`` with what ``lead`` adds."""
        lead, rest = _without_timestamp(lead), _without_timestamp(rest)
        if lead == rest:
            return rest
        merged = {**rest}
        for key in sorted(set(lead) | set(rest)):
            if key == "metadata":
                merged[key] = self.metadata(_map(lead.get(key)), _map(rest.get(key)))
            elif key == "spec" and isinstance(lead.get(key), dict) and isinstance(rest.get(key), dict):
                merged[key] = self.pod(lead[key], rest[key])
            elif lead.get(key) != rest.get(key):
                self.differ(f"template.{key}", lead.get(key), rest.get(key))
        return merged

    # -- findings -----------------------------------------------------------------------------------

    def warn(self, path: str, message: str) -> None:
        self.findings.append(
            Finding(
                severity=Severity.WARNING,
                path=self.on_lead(path),
                code="replica-templates-merged",
                message=f"{message}; every TrainJob node runs one pod template, the union of both roles'",
            )
        )

    def on_lead(self, path: str) -> str:
        """``path`` (relative, indexing ``rest``'s containers) in ``lead``: the same container, by name, may
        be listed at another index there."""
        match = _CONTAINER_INDEX.match(path)
        if match is None:
            return f"{self.lead_path}.{path}"
        index = self.lead_index[int(match.group(1))]
        return f"{self.lead_path}.{path[: match.start(1)]}{index}{path[match.end(1) :]}"

    def rewritten(self, path: str, what: str) -> None:
        """The Worker's own value at ``path`` changed as well (its rank literal is the node's rank now)."""
        self.findings.append(
            Finding(
                severity=Severity.INFO,
                path=f"{self.rest_path}.{path}",
                code="replica-templates-merged",
                message=f"the Worker's {what} becomes each node's own rank",
            )
        )

    def differ(self, path: str, lead: Any, rest: Any, why: str = "") -> None:
        self.findings.append(
            Finding(
                severity=Severity.BLOCKER,
                path=self.on_lead(path),
                code="replica-templates-differ",
                message=f"Master and Worker differ at {path} (Master {_short(lead)}, Worker {_short(rest)})"
                + (f": {why}" if why else "")
                + "; every TrainJob node runs one pod template and no single one is right for both. Make "
                "them equal, e.g. decide per role in the entrypoint from the node rank (PET_NODE_RANK)",
            )
        )

    # -- pod metadata and spec ----------------------------------------------------------------------

    def metadata(self, lead: dict[str, Any], rest: dict[str, Any]) -> dict[str, Any]:
        merged = {**rest}
        for key in sorted(set(lead) | set(rest)):
            if key in ("labels", "annotations"):
                ours, theirs = _map(lead.get(key)), _map(rest.get(key))
                added = [k for k in ours if k not in theirs]
                other = [k for k in ours if k in theirs and ours[k] != theirs[k]]
                only_rest = [k for k in theirs if k not in ours]
                if added or other or only_rest:
                    merged[key] = {**ours, **theirs}
                    parts = []
                    if added:
                        parts.append(f"Master-only {key} {', '.join(added)} are set on every node")
                    if only_rest:
                        parts.append(f"Worker-only {key} {', '.join(only_rest)} are set on node 0 too")
                    if other:
                        parts.append(f"{', '.join(other)}: the Worker's value on every node, node 0 too")
                    self.warn(f"template.metadata.{key}", "; ".join(parts))
            elif lead.get(key) != rest.get(key):
                self.differ(f"template.metadata.{key}", lead.get(key), rest.get(key))
        return merged

    def pod(self, lead: dict[str, Any], rest: dict[str, Any]) -> dict[str, Any]:
        merged = {**rest}
        handlers: dict[str, Callable[[str, Any, Any], Any]] = {
            "containers": self.containers,
            "volumes": self.volumes,
            "tolerations": self.union,
            "affinity": self.larger,
            "nodeSelector": self.larger,
        }
        for key in sorted(set(lead) | set(rest)):
            if lead.get(key) == rest.get(key):
                continue
            path = f"template.spec.{key}"
            handler = handlers.get(key)
            if handler is None:
                self.differ(path, lead.get(key), rest.get(key))
                continue
            value = handler(path, lead.get(key), rest.get(key))
            if value is not None:
                merged[key] = value
        return merged

    def union(self, path: str, lead: Any, rest: Any) -> Any:
        lead, rest = lead or [], rest or []
        if not isinstance(lead, list) or not isinstance(rest, list):
            self.differ(path, lead, rest)
            return None
        merged = [*rest, *(item for item in lead if item not in rest)]
        extra = [item for item in lead if item not in rest] + [item for item in rest if item not in lead]
        self.warn(path, f"{path.rsplit('.', 1)[-1]} of either role apply to every node ({_short(extra)})")
        return merged

    def larger(self, path: str, lead: Any, rest: Any) -> Any:
        key = path.rsplit(".", 1)[-1]
        if _contains(rest, lead or {}):
            self.warn(path, f"the Master's {key} is part of the Worker's, which every node gets")
            return rest
        if _contains(lead, rest or {}):
            self.warn(path, f"the Worker's {key} is part of the Master's, which every node gets")
            return lead
        self.differ(path, lead, rest, f"neither {key} contains the other")
        return None

    def volumes(self, path: str, lead: Any, rest: Any) -> Any:
        ours, theirs = _by(lead or [], "name"), _by(rest or [], "name")
        if ours is None or theirs is None:
            self.differ(path, lead, rest)
            return None
        merged = list(rest or [])
        for name, volume in ours.items():
            if name in theirs:
                if theirs[name] != volume:
                    self.differ(path, volume, theirs[name], f"volume {name} is defined differently")
                continue
            if self.shareable(path, volume, "Master"):
                merged.append(volume)
        for name, volume in theirs.items():
            if name not in ours:
                self.shareable(path, volume, "Worker")
        return merged

    def shareable(self, path: str, volume: dict[str, Any], role: str) -> bool:
        claim = _map(volume.get("persistentVolumeClaim")).get("claimName")
        if claim is None:
            self.warn(path, f"the {role}-only volume {volume.get('name')} is mounted on every node")
            return True
        modes = self.claims.get((self.namespace, str(claim)))
        if modes is not None and SHARED_ACCESS_MODES & set(modes):
            self.warn(
                path,
                f"the {role}-only volume {volume.get('name')} (claim {claim}, {'/'.join(modes)}) is mounted "
                "on every node",
            )
            return True
        known = f"claim {claim} is {'/'.join(modes)}" if modes else f"claim {claim}'s access mode is unknown"
        self.findings.append(
            Finding(
                severity=Severity.BLOCKER,
                path=self.on_lead(path),
                code="role-volume",
                message=f"only the {role} mounts volume {volume.get('name')} and {known}: every TrainJob "
                "node runs one template, and a ReadWriteOnce claim cannot be mounted by all of them. Use a "
                "ReadWriteMany claim (the operator reads claims from the cluster) or mount it on both roles",
            )
        )
        return False

    # -- containers ---------------------------------------------------------------------------------

    def containers(self, path: str, lead: Any, rest: Any) -> Any:
        ours, theirs = _by(lead or [], "name"), _by(rest or [], "name")
        if ours is None or theirs is None or set(ours) != set(theirs):
            self.differ(path, lead, rest, "the roles run different containers")
            return None
        merged = []
        self.lead_index = {index: list(ours).index(name) for index, name in enumerate(theirs)}
        for index, (name, container) in enumerate(theirs.items()):
            if container == ours[name]:
                merged.append(container)
            elif name == self.container:
                merged.append(self.trainer(f"{path}[{index}]", ours[name], container))
            else:
                self.differ(f"{path}[{index}]", ours[name], container, f"sidecar {name} differs")
                merged.append(container)
        return merged

    def trainer(self, path: str, lead: dict[str, Any], rest: dict[str, Any]) -> dict[str, Any]:
        merged = {**rest}
        for key in sorted(set(lead) | set(rest)):
            ours, theirs = lead.get(key), rest.get(key)
            if ours == theirs:
                continue
            kpath = f"{path}.{key}"
            if key == "env":
                merged[key] = self.env(kpath, ours or [], theirs or [])
            elif key in ("command", "args"):
                value = _rank_merge(ours, theirs)
                if value is None:
                    self.differ(kpath, ours, theirs)
                else:
                    merged[key] = value
                    self.warn(kpath, f"rank literals in {key} become the node's own rank, {NODE_RANK}")
                    self.rewritten(kpath, f"rank literal in {key}")
            elif key == "ports":
                value = self.union(kpath, ours, theirs)
                if value is not None:
                    merged[key] = value
            elif key == "volumeMounts":
                value = self.mounts(kpath, ours, theirs)
                if value is not None:
                    merged[key] = value
            elif key == "securityContext":
                value = self.capabilities(kpath, _map(ours), _map(theirs))
                if value is not None:
                    merged[key] = value
            elif key == "lifecycle" and theirs is None:
                merged[key] = self.lead_hooks(kpath, _map(ours))
            else:
                self.differ(kpath, ours, theirs)
        return merged

    def env(self, path: str, lead: list[Any], rest: list[Any]) -> list[Any]:
        ours, theirs = _by(lead, "name"), _by(rest, "name")
        if ours is None or theirs is None:
            self.differ(path, lead, rest)
            return rest
        merged = dict(theirs)
        added: list[str] = []
        ranks: list[str] = []
        for name in [*ours, *(n for n in theirs if n not in ours)]:
            mine, other = ours.get(name), theirs.get(name)
            if mine == other:
                continue
            if name in ROLE_ENV:
                self.differ(
                    path,
                    mine,
                    other,
                    f"{name} is set per role by the user (v1 replaced it with its own value; v2 sets none)",
                )
            elif (
                _RANK_ENV.match(name)
                and mine is not None
                and other is not None
                and mine.get("value") == "0"
                and str(other.get("value", "")).isdigit()
            ):
                merged[name] = {"name": name, "valueFrom": _RANK_FIELD}
                ranks.append(name)
            elif mine is None or other is None:
                merged[name] = mine or other
                added.append(f"{name} ({'Master' if other is None else 'Worker'} only)")
            else:
                self.differ(path, mine, other, f"{name} has another value on each role")
        if added:
            self.warn(path, f"env vars only one role sets are set on every node: {', '.join(added)}")
        if ranks:
            self.warn(path, f"{', '.join(ranks)} (0 on the Master) become each node's rank (its index)")
            self.rewritten(path, ", ".join(ranks))
        return list(merged.values())

    def mounts(self, path: str, lead: Any, rest: Any) -> Any:
        ours, theirs = _by(lead or [], "mountPath"), _by(rest or [], "mountPath")
        if ours is None or theirs is None or any(theirs[p] != m for p, m in ours.items() if p in theirs):
            self.differ(path, lead, rest, "the same path mounts different volumes")
            return None
        return [*(rest or []), *(m for p, m in ours.items() if p not in theirs)]

    def capabilities(self, path: str, lead: dict[str, Any], rest: dict[str, Any]) -> Any:
        strip = {k: v for k, v in lead.items() if k != "capabilities"}
        if strip != {k: v for k, v in rest.items() if k != "capabilities"}:
            self.differ(path, lead, rest)
            return None
        ours, theirs = _map(lead.get("capabilities")), _map(rest.get("capabilities"))
        if ours.get("drop") != theirs.get("drop"):
            self.differ(f"{path}.capabilities.drop", ours.get("drop"), theirs.get("drop"))
            return None
        mine, other = list(ours.get("add") or []), list(theirs.get("add") or [])
        added = [c for c in mine if c not in other] + [c for c in other if c not in mine]
        self.warn(f"{path}.capabilities.add", f"capabilities one role adds ({', '.join(added)}) are on all")
        return {**rest, "capabilities": {**theirs, "add": [*other, *(c for c in mine if c not in other)]}}

    def lead_hooks(self, path: str, hooks: dict[str, Any]) -> dict[str, Any] | None:
        guarded: dict[str, Any] = {}
        for event, handler in hooks.items():
            command = _map(_map(handler).get("exec")).get("command")
            if not isinstance(command, list) or not command:
                self.differ(f"{path}.{event}", handler, None, "only an exec hook can be limited to node 0")
                return None
            guarded[event] = {**handler, "exec": {"command": ["sh", "-c", _RANK_GUARD, *command]}}
        self.warn(path, f"the Master's {', '.join(hooks)} hook runs on node 0 only (guarded by its rank)")
        return guarded


def _rank_merge(lead: Any, rest: Any) -> list[Any] | None:
    """``lead`` with its rank literals as the node's rank, when that is all that tells the two apart."""
    if not isinstance(lead, list) or not isinstance(rest, list) or len(lead) != len(rest):
        return None
    ours, theirs = "\x00".join(map(str, lead)), "\x00".join(map(str, rest))
    if not _RANK_LITERAL.search(ours) or any(m.group(3) != "0" for m in _RANK_LITERAL.finditer(ours)):
        return None
    rewritten = _RANK_LITERAL.sub(lambda m: f"{m.group(1)}{m.group(2)}{NODE_RANK}", ours)
    if rewritten != _RANK_LITERAL.sub(lambda m: f"{m.group(1)}{m.group(2)}{NODE_RANK}", theirs):
        return None
    return rewritten.split("\x00")


def _without_timestamp(template: dict[str, Any]) -> dict[str, Any]:
    """A pod template without what v1 dumps carry per replica (``creationTimestamp: null``)."""
    meta = template.get("metadata")
    if isinstance(meta, dict) and "creationTimestamp" in meta:
        return {**template, "metadata": {k: v for k, v in meta.items() if k != "creationTimestamp"}}
    return template


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _short(value: Any) -> str:
    text = "unset" if value is None else _text(value)
    return text if len(text) <= 120 else f"{text[:117]}..."
