"""The "nothing is dropped silently" check: every source fact is carried into the output or reported.

A fact is a scalar leaf of the source object with its field path (empty maps and lists say nothing). It counts
as carried when its value (and, for a map entry, its key) appears in the emitted TrainJob or runtime, and
as reported when a finding's path is the fact's path or one of its ancestors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ferryman.convert.options import Conversion

# maps whose keys are data (a label's key is as much a fact as its value)
_DATA_MAPS = {"labels", "annotations", "nodeSelector", "limits", "requests"}
_REPLICAS = re.compile(r"spec\.\w+ReplicaSpecs\.(?i:master|chief|worker)\.replicas")
# Facts whose value v2 expresses differently without loss: the container each v1 kind requires is v2's
# `node`; OnFailure is v1's and JobSet's default restart policy.
_EQUIVALENT = (
    *(
        (re.compile(r".*\.containers\[\d+\]\.name"), name)
        for name in ("pytorch", "jax", "xgboost", "tensorflow", "paddle")
    ),
    (re.compile(r"spec\.\w+ReplicaSpecs\.\w+\.restartPolicy"), "OnFailure"),
)


def leaves(value: Any, path: str = "", key: str | None = None) -> Iterator[tuple[str, str | None, Any]]:
    """(path, map key or None for a list item, value) of every leaf."""
    if isinstance(value, dict) and value:
        for child_key, child in value.items():
            yield from leaves(child, f"{path}.{child_key}" if path else str(child_key), str(child_key))
    elif isinstance(value, list) and value:
        for index, child in enumerate(value):
            yield from leaves(child, f"{path}[{index}]")
    else:
        yield path, key, value


def _norm(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, dict | list) else str(value)


def _index(*objects: Any) -> tuple[set[str], set[str]]:
    keys: set[str] = set()
    values: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            keys.update(str(k) for k in value)
            if not value:
                values.add("{}")
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            if not value:
                values.add("[]")
            for child in value:
                walk(child)
        else:
            values.add(_norm(value))

    for obj in objects:
        walk(obj)
    return keys, values


def _covered(path: str, prefixes: list[str]) -> bool:
    return any(
        path == p or (path.startswith(p) and path[len(p) : len(p) + 1] in (".", "[")) for p in prefixes
    )


_CONTAINER = re.compile(r"\.template\.spec\.(initContainers|containers)\[(\d+)\]")


def _same_container(path: str, lead: Any, worker: Any) -> str:
    """`path` (relative to a replica) of a container of replica spec `lead`, as the path of `worker`'s
    container of the same name: the converter matches the roles' containers by name, not position."""
    match = _CONTAINER.match(path)
    if match is None:
        return path

    def names(replica: Any) -> list[Any]:
        template = replica.get("template") if isinstance(replica, dict) else None
        spec = template.get("spec") if isinstance(template, dict) else None
        listed = spec.get(match.group(1)) if isinstance(spec, dict) else None
        if not isinstance(listed, list):
            return []
        return [c.get("name") if isinstance(c, dict) else None for c in listed]

    ours, theirs, index = names(lead), names(worker), int(match.group(2))
    name = ours[index] if index < len(ours) else None
    if name is None or name not in theirs:
        return path
    return f"{path[: match.start(2)]}{theirs.index(name)}{path[match.end(2) :]}"


def uncovered_facts(source: dict[str, Any], conversion: Conversion) -> list[str]:
    """Paths of source facts that are neither in the output nor under a finding's path."""
    prefixes = [f.path for f in conversion.findings]
    keys, values = _index(conversion.trainjob, conversion.runtime)
    trainer = ((conversion.trainjob or {}).get("spec") or {}).get("trainer") or {}
    spec = source.get("spec") or {}
    field = next((key for key in spec if str(key).endswith("ReplicaSpecs")), "pytorchReplicaSpecs")
    replicas = {k.lower(): k for k in spec.get(field) or {}}
    lead_key, worker_key = replicas.get("master") or replicas.get("chief"), replicas.get("worker")
    master, worker = f"spec.{field}.{lead_key}", f"spec.{field}.{worker_key}"
    roles = spec.get(field) if isinstance(spec.get(field), dict) else {}
    missing = []
    for path, key, value in leaves(source):
        if value in ({}, [], None) or path in ("apiVersion", "kind") or _covered(path, prefixes):
            continue
        # a Master template (or restart policy) equal to the Worker's is converted and reported once, as
        # the Worker's (a container as the Worker's container of the same name); where they differ, the
        # converter reports the Master's own path
        if "worker" in replicas and path.startswith(master + "."):
            moved = _same_container(path[len(master) :], roles.get(lead_key), roles.get(worker_key))
            if _covered(worker + moved, prefixes):
                continue
        if _REPLICAS.fullmatch(path) and "numNodes" in trainer:
            continue  # summed into numNodes; test_job_mapping checks the sum
        if any(pattern.fullmatch(path) and value == same for pattern, same in _EQUIVALENT):
            continue
        data_key = key is not None and path[: -len(key) - 1].rsplit(".", 1)[-1] in _DATA_MAPS
        if _norm(value) in values and (not data_key or key in keys):
            continue
        missing.append(path)
    return missing
