"""Validate emitted objects against the upstream Trainer CRD schemas (pinned, from the Go module proxy).

jsonschema checks types, enums, bounds and required fields; unknown fields, which the API server drops or
rejects under strict field validation, are checked here too. CEL rules are left to the control-plane tests.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema

from ferryman.api.trainer import TrainerAPI
from ferryman.convert.placeholders import is_placeholder
from ferryman_dev import upstream


@cache
def _schema(trainer_api: TrainerAPI, kind: str) -> dict[str, Any]:
    plural = {"TrainJob": 0, "TrainingRuntime": 1, "ClusterTrainingRuntime": 2}[kind]
    (crd,) = upstream.load_documents(upstream.trainer_crds(trainer_api)[plural])
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


@cache
def _validator(trainer_api: TrainerAPI, kind: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_schema(trainer_api, kind))


def schema_errors(obj: dict[str, Any], trainer_api: TrainerAPI, template: bool = False) -> list[str]:
    """Why `obj` (a TrainJob or TrainingRuntime) is not valid for `trainer_api`; empty when it is.

    With `template`, a bare placeholder (`$NUM_NODES`, `$GPUS`) may stand where the schema wants a number or
    a quantity."""
    schema = _schema(trainer_api, obj["kind"])
    errors = []
    for error in _validator(trainer_api, obj["kind"]).iter_errors(obj):
        if template and error.validator in ("type", "pattern") and is_placeholder(error.instance):
            continue
        errors.append(f"{'.'.join(map(str, error.absolute_path))}: {error.message}")
    errors.extend(f"{path}: unknown field" for path in _unknown_fields(schema, obj, obj["kind"]))
    return errors


def _unknown_fields(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, child in value.items():
            if properties is not None and key in properties:
                found.extend(_unknown_fields(properties[key], child, f"{path}.{key}"))
            elif isinstance(additional, dict):
                found.extend(_unknown_fields(additional, child, f"{path}.{key}"))
            elif properties is not None and additional is not True:
                found.append(f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, child in enumerate(value):
            found.extend(_unknown_fields(schema["items"], child, f"{path}[{index}]"))
    return found
