"""The TrainJob API flavour a cluster serves, read from the installed TrainJob CRD's schema."""

from __future__ import annotations

from typing import Any

from ferryman.api.kinds import TRAINJOB
from ferryman.api.trainer import TrainerAPI


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
