"""Distributed semantics: which launcher starts a job's entrypoint, and what replaces v1's injected env.

Training Operator v1 injects ``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE`` and ``RANK`` into every pod;
Trainer v2 injects only ``PET_*`` variables, which only torchrun reads. An entrypoint that is not started
by torchrun therefore silently stops being distributed unless the converter wraps it in torchrun or
injects the v1 variables with v2 values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
MASTER_PORT = 29500  # the port the torch runtime opens on the node container
V1_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")
RESERVED_ENV = frozenset(
    {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"}
)
TORCHRUN_WRAP = ("torchrun", "--no-python")

_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ash", "ksh"})
_TORCH_LAUNCHER = re.compile(r"\btorchrun\b|\btorch\.distributed\.(?:run|launch)\b")
_OTHER_LAUNCHERS = (
    ("accelerate", re.compile(r"\baccelerate(?:\.commands\.launch|\s+launch)\b")),
    ("deepspeed", re.compile(r"(?:^|[\s;&|(/`])deepspeed(?:\.launcher\.runner)?(?=\s|$)")),
    ("composer", re.compile(r"(?:^|[\s;&|(/`])composer(?=\s)")),
    ("lightning", re.compile(r"\b(?:lightning|fabric)\s+run\b")),
    ("tune", re.compile(r"(?:^|[\s;&|(/`])tune\s+run\b")),
    ("mpi", re.compile(r"(?:^|[\s;&|(/`])(?:mpirun|mpiexec|horovodrun|srun)(?=\s|$)")),
)
_PYTHON = re.compile(r"(?:^|[\s;&|(/`])python[0-9.]*(?=\s|$)")
_V1_ENV_REFERENCE = re.compile(r"(?<![A-Za-z0-9_])(MASTER_ADDR|MASTER_PORT|WORLD_SIZE|RANK)(?![A-Za-z0-9_])")


# "<job>-master-0" / "<job>-worker-<index>"; one pattern for every job (compiling one per job name would
# dominate bulk conversion), the job name is compared in the replacement
_V1_HOST = re.compile(
    r"(?<![A-Za-z0-9-])([A-Za-z0-9][-A-Za-z0-9]*?)-(master|worker)-(\d+|\$\{?\w+\}?|\$\(\w+\))(?![A-Za-z0-9-])",
    re.IGNORECASE,
)


# a rank from the v1 pod host name's index: `${HOSTNAME##*-}`, `${HOSTNAME: -1}`, `$(hostname | cut ...)`
_HOSTNAME_RANK = re.compile(
    r"\$\{HOSTNAME(?:##[^}]*|:\s*-?\d+(?::\d+)?)\}|\$\(\s*hostname\s*\|[^()]*\)|`\s*hostname\s*\|[^`]*`"
)
COMPLETION_INDEX = "${JOB_COMPLETION_INDEX}"  # a node's index, set in every container of an Indexed Job


def hostname_ranks(text: str) -> tuple[str, int]:
    """``text`` with ranks parsed from the host name read from the Job completion index instead (v1 pod
    names ended in the replica index, v2 pod names do not), and how many there were."""
    if "ostname" not in text and "HOSTNAME" not in text:
        return text, 0
    return _HOSTNAME_RANK.subn(COMPLETION_INDEX, text)


class Launch(StrEnum):
    TORCH = "torch"  # torchrun / python -m torch.distributed.run|launch: reads PET_* from v2
    OTHER = "other"  # accelerate, deepspeed, composer, ...: may read the v1 variables
    PLAIN = "plain"  # a python process (or a shell script running one) with no launcher
    OPAQUE = "opaque"  # image entrypoint or a script file: cannot be inspected


@dataclass(frozen=True)
class Entrypoint:
    launch: Launch
    launcher: str | None  # the detected launcher's name
    text: str  # command and args joined, for reference scans


def _basename(token: str) -> str:
    return token.rsplit("/", 1)[-1]


def _strip_env_prefix(tokens: list[str]) -> list[str]:
    """Drop a leading ``env`` and ``NAME=value`` assignments."""
    i = 0
    if tokens and _basename(tokens[0]) == "env":
        i = 1
    while i < len(tokens) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[i]):
        i += 1
    return tokens[i:]


def _classify_text(text: str) -> tuple[Launch, str | None]:
    if _TORCH_LAUNCHER.search(text):
        return Launch.TORCH, "torchrun"
    for name, pattern in _OTHER_LAUNCHERS:
        if pattern.search(text):
            return Launch.OTHER, name
    return Launch.PLAIN if _PYTHON.search(text) else Launch.OPAQUE, None


def classify(command: list[str] | None, args: list[str] | None) -> Entrypoint:
    """Which launcher starts ``command`` + ``args`` (inside ``sh -c`` scripts too)."""
    tokens = [str(t) for t in (command or [])] + [str(t) for t in (args or [])]
    text = " ".join(tokens)
    if not command:
        return Entrypoint(Launch.OPAQUE, None, text)  # args go to the image's entrypoint
    tokens = _strip_env_prefix(tokens)
    if not tokens:
        return Entrypoint(Launch.OPAQUE, None, text)
    head = _basename(tokens[0])
    if head in _SHELLS:
        rest = tokens[1:]
        while rest and rest[0].startswith("-") and "c" not in rest[0]:
            rest = rest[1:]
        if rest and rest[0].startswith("-") and "c" in rest[0]:
            launch, launcher = _classify_text(" ".join(rest[1:]))
            return Entrypoint(launch, launcher, text)
        return Entrypoint(Launch.OPAQUE, None, text)  # a script file
    launch, launcher = _classify_text(" ".join(tokens))
    if launch in (Launch.TORCH, Launch.OTHER):
        return Entrypoint(launch, launcher, text)
    if re.match(r"^python[0-9.]*$", head):
        return Entrypoint(Launch.PLAIN, None, text)
    return Entrypoint(Launch.OPAQUE, None, text)


def add_launcher_argument(trainer: dict[str, Any], argument: str) -> str | None:
    """Put ``argument`` right after the torch launcher in ``trainer``'s command or args (a token of its own,
    or inside a shell script), and say where (``args[1]``); None, changing nothing, unless the launcher is
    named exactly once."""
    places = [
        (key, index, match)
        for key in ("command", "args")
        for index, token in enumerate(trainer.get(key) or [])
        if isinstance(token, str)
        for match in _TORCH_LAUNCHER.finditer(token)
    ]
    if len(places) != 1:
        return None
    key, index, match = places[0]
    tokens = list(trainer[key])
    token = tokens[index]
    if not token[match.end() :] and not any(c.isspace() for c in token):
        tokens.insert(index + 1, argument)  # `torchrun`, `/usr/bin/torchrun`, `-m torch.distributed.run`
    else:
        tokens[index] = f"{token[: match.end()]} {argument}{token[match.end() :]}"
    trainer[key] = tokens
    return f"{key}[{index}]"


def v1_env_references(texts: list[str]) -> list[str]:
    """v1-injected variables (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK) that ``texts`` mention."""
    found: set[str] = set()
    for text in texts:
        if any(name in text for name in ("MASTER_", "WORLD_SIZE", "RANK")):
            found.update(_V1_ENV_REFERENCE.findall(text))
    return [name for name in V1_ENV if name in found]


def master_address(trainjob: str) -> str:
    """The stable host name of node 0 (the v1 master's role) of a TrainJob."""
    return f"{trainjob}-node-0-0.{trainjob}"


def v1_env(trainjob: str, world_size: int | str) -> list[dict[str, Any]]:
    """The variables v1 injected, with v2 naming: node 0 is the master, RANK is the completion index."""
    return [
        {"name": "MASTER_ADDR", "value": master_address(trainjob)},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
        {"name": "WORLD_SIZE", "value": str(world_size)},
        {
            "name": "RANK",
            "valueFrom": {
                "fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}
            },
        },
    ]


class HostRewriter:
    """Rewrites v1 pod host names (``<job>-master-0``, ``<job>-worker-N``) to v2 node host names."""

    def __init__(self, job: str, trainjob: str, has_master: bool) -> None:
        self.job = job
        self.trainjob = trainjob
        self.has_master = has_master

    def rewrite(self, text: str) -> tuple[str, bool, bool]:
        """(rewritten text, whether anything changed, whether an unsafe reference remains)."""
        if self.job.lower() not in text.lower():
            return text, False, False
        unsafe = False

        def replace(match: re.Match[str]) -> str:
            nonlocal unsafe
            if match.group(1).lower() != self.job.lower():
                return match.group(0)  # another job's host
            role, index = match.group(2).lower(), match.group(3)
            if not index.isdigit() or (role == "master" and index != "0"):
                unsafe = True
                return match.group(0)
            node = int(index) + (1 if role == "worker" and self.has_master else 0)
            return f"{self.trainjob}-node-0-{node}.{self.trainjob}"

        new = _V1_HOST.sub(replace, text)
        return new, new != text, unsafe
