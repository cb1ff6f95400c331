"""TrainJob names: RFC 1035 labels short enough for JobSet's pod names, shortened deterministically."""

from __future__ import annotations

import hashlib
import re

from ferryman.convert.findings import Finding, Severity
from ferryman.convert.placeholders import contains_placeholder, contains_second_stage

# JobSet rejects a JobSet whose longest pod name "<name>-node-<jobIdx>-<podIdx>-<5 random>" exceeds 63
# characters; with the torch runtime's "node" job and up to 10 nodes that leaves 48 for the TrainJob name.
MAX_NAME_LENGTH = 48
_HASH_LENGTH = 8
_INVALID = re.compile(r"[^a-z0-9-]+")
_RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def is_rfc1035_label(name: str, max_length: int = 63) -> bool:
    return len(name) <= max_length and _RFC1035.match(name) is not None


def shorten(name: str, max_length: int, digest_of: str | None = None) -> str:
    """``name`` cut to ``max_length`` with a stable hash suffix of ``digest_of`` (default: ``name``)."""
    if len(name) <= max_length:
        return name
    digest = hashlib.sha256((digest_of or name).encode()).hexdigest()[:_HASH_LENGTH]
    head = name[: max_length - _HASH_LENGTH - 1].rstrip("-") or "j"
    return f"{head}-{digest}"


def trainjob_name(
    source: str, path: str = "metadata.name", max_length: int = MAX_NAME_LENGTH, job: str = "node"
) -> tuple[str, Finding | None]:
    """A TrainJob name for a v1 job named ``source``, and a finding when it had to change. ``job``: the
    runtime's longest replicated job name, whose pod names ``max_length`` leaves room for."""
    if contains_placeholder(source) or contains_second_stage(source):
        return source, Finding(
            severity=Severity.INFO,
            path=path,
            code="name-placeholder",
            message=(
                f"name {source!r} is a template placeholder and was kept; after substitution it must be an "
                f"RFC 1035 label of at most {max_length} characters"
            ),
        )
    if is_rfc1035_label(source, max_length):
        return source, None
    cleaned = _INVALID.sub("-", source.lower()).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"j-{cleaned}".rstrip("-")
    name = shorten(cleaned, max_length, digest_of=source)
    reason = (
        f"longer than {max_length} characters (JobSet pod names '<name>-{job}-0-<i>-<suffix>' fit 63)"
        if len(source) > max_length
        else "not an RFC 1035 label"
    )
    return name, Finding(
        severity=Severity.WARNING,
        path=path,
        code="name-changed",
        message=(
            f"TrainJob is named {name!r} instead of {source!r}: the name is {reason}; update anything that "
            f"refers to the job by name"
        ),
    )
