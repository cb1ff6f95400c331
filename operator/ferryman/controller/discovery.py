"""What a cluster serves, read from installed CRDs: the TrainJob API flavour, and the v1 job kinds (in
which version: MPIJob is kubeflow.org/v2beta1 from mpi-operator or v1 from the Training Operator)."""

from __future__ import annotations

from typing import Any

from ferryman.api.kinds import TRAINJOB, Kind
from ferryman.api.trainer import TrainerAPI
from ferryman.convert.registry import JOB_KINDS

# CRD name -> the versions of that kind ferryman converts
_V1_JOB_CRDS: dict[str, tuple[Kind, ...]] = {
    row.kind.crd_name: (row.kind, *row.also) for row in JOB_KINDS.values()
}


def is_v1_job_crd(name: str | None) -> bool:
    return name in _V1_JOB_CRDS


def served_job_kind(crd: dict[str, Any]) -> Kind | None:
    """The version of a v1 job kind's CRD that is served and that ferryman converts, if any."""
    known = _V1_JOB_CRDS.get((crd.get("metadata") or {}).get("name", ""), ())
    served = {v.get("name") for v in (crd.get("spec") or {}).get("versions") or [] if v.get("served")}
    return next((kind for kind in known if kind.version in served), None)


def served_trainer_api(crd: dict[str, Any]) -> TrainerAPI | None:
    """v2.2+ has `spec.runtimePatches`, v2.1 `spec.podTemplateOverrides`, v2.0 `spec.podSpecOverrides`."""
    for version in (crd.get("spec") or {}).get("versions") or []:
        if not version.get("served") or version.get("name") != TRAINJOB.version:
            continue
        schema = ((version.get("schema") or {}).get("openAPIV3Schema") or {}).get("properties") or {}
        spec_fields = ((schema.get("spec") or {}).get("properties") or {}).keys()
        if "runtimePatches" in spec_fields:
            return TrainerAPI.V2_2
        if "podTemplateOverrides" in spec_fields:
            return TrainerAPI.V2_1
        if "podSpecOverrides" in spec_fields:
            return TrainerAPI.V2_0
    return None
