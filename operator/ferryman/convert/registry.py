"""The one table of v1 job kinds ferryman converts: ``(group, kind) -> converter``.

``convert/manifests.py`` (finding jobs in streams) and the operator's cutover both ask this table. Adding a
kind means a module with a :class:`~ferryman.convert.core.JobConverter` subclass (see ``convert/core.py``
for the interface) and one row here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ferryman.api.kinds import (
    JAXJOB,
    MPIJOB,
    MPIJOB_V1,
    PADDLEJOB,
    PYTORCHJOB,
    TFJOB,
    TRAINJOB,
    XGBOOSTJOB,
    Kind,
)
from ferryman.convert.core import JobConverter, mapping
from ferryman.convert.findings import Finding, Severity
from ferryman.convert.jaxjob import JAXJobConverter
from ferryman.convert.mpijob import MPIJobConverter
from ferryman.convert.options import Conversion, ConvertOptions
from ferryman.convert.paddlejob import PaddleJobConverter
from ferryman.convert.pytorchjob import PyTorchJobConverter
from ferryman.convert.tfjob import TFJobConverter
from ferryman.convert.xgboostjob import XGBoostJobConverter


@dataclass(frozen=True)
class JobKind:
    """A convertible kind: the versions ferryman reads (``kind``'s and ``also``'s; others are reported, not
    converted) and the converter reading them."""

    kind: Kind
    converter: type[JobConverter]
    also: tuple[Kind, ...] = ()

    @property
    def api_versions(self) -> tuple[str, ...]:
        return tuple(k.api_version for k in (self.kind, *self.also))


JOB_KINDS: dict[tuple[str, str], JobKind] = {
    (row.kind.group, row.kind.kind): row
    for row in (
        JobKind(PYTORCHJOB, PyTorchJobConverter),
        JobKind(JAXJOB, JAXJobConverter),
        JobKind(XGBOOSTJOB, XGBoostJobConverter),
        JobKind(TFJOB, TFJobConverter),
        JobKind(PADDLEJOB, PaddleJobConverter),
        JobKind(MPIJOB, MPIJobConverter, also=(MPIJOB_V1,)),
    )
}


class ConversionError(ValueError):
    """The input is not a job of a kind in the table (nor a TrainJob) at all."""


def _group_kind(obj: dict[str, Any]) -> tuple[str, Any]:
    api_version = obj.get("apiVersion")
    group = api_version.split("/", 1)[0] if isinstance(api_version, str) and "/" in api_version else ""
    return group, obj.get("kind")


_KIND_NAMES = frozenset(kind for _, kind in JOB_KINDS)


def job_kind(obj: Any) -> JobKind | None:
    """The table row of a v1 job object (any version of a kind in the table), or None."""
    if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str) or obj["kind"] not in _KIND_NAMES:
        return None
    return JOB_KINDS.get(_group_kind(obj))


def convert_job(obj: dict[str, Any], options: ConvertOptions | None = None) -> Conversion:
    """Convert a v1 job manifest (a parsed YAML/JSON object) into a TrainJob of ``options.trainer_api``.

    A TrainJob passes through unchanged. Raises :class:`ConversionError` only for input that is neither.
    """
    options = options or ConvertOptions()
    if not isinstance(obj, dict):
        raise ConversionError(f"expected a Kubernetes object (a mapping), got {type(obj).__name__}")
    metadata = mapping(obj.get("metadata"))
    name = str(metadata.get("name") or metadata.get("generateName") or "<unnamed>")
    group, kind = _group_kind(obj)
    if (group, kind) == (TRAINJOB.group, TRAINJOB.kind):
        return Conversion(
            source_name=name,
            source_namespace=metadata.get("namespace"),
            trainjob=obj,
            findings=[
                Finding(
                    severity=Severity.INFO,
                    path="kind",
                    code="already-trainjob",
                    message="already a TrainJob; passed through unchanged",
                )
            ],
        )
    row = JOB_KINDS.get((group, kind))
    if row is None:
        known = ", ".join(f"{r.kind.kind} ({', '.join(r.api_versions)})" for r in JOB_KINDS.values())
        raise ConversionError(
            f"{kind or '<no kind>'} {name!r} (apiVersion {obj.get('apiVersion')!r}) is not a job ferryman "
            f"converts: field 'kind' must be one of {known}"
        )
    return row.converter(obj, options).convert()
