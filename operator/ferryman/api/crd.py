"""CustomResourceDefinitions generated from pydantic models: the models are the source of truth.

`openapi_schema(model)` turns a model's JSON schema into a *structural* OpenAPI v3 schema as the apiserver
requires it: `$ref`s inlined, `anyOf [X, null]` rewritten to `nullable`, titles stripped, int-or-string
unions marked, free-form objects marked `x-kubernetes-preserve-unknown-fields`. Kubernetes extensions
(`x-kubernetes-validations` CEL rules, list types) come from `json_schema_extra` on models and fields.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ferryman.api.kinds import CUSTOM_RESOURCE_DEFINITION, LABEL_VALUE_MAX_LENGTH, Kind

_DROPPED_KEYS = {"title", "examples", "discriminator", "readOnly", "writeOnly", "deprecated"}
_KNOWN_FORMATS = {"int32", "int64", "float", "double", "byte", "date", "date-time", "duration", "uri"}


class SchemaError(ValueError):
    """A model cannot be expressed as a structural schema."""


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def manifest(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            column["description"] = self.description
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclass(frozen=True)
class CustomResource:
    """Everything a CRD says about one kind, besides the schema its models give."""

    kind: Kind
    spec: type[BaseModel]
    status: type[BaseModel] | None = None
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("ferryman",)
    printer_columns: tuple[PrinterColumn, ...] = ()
    description: str = ""
    spec_required: bool = True
    label_named_by: str = ""  # the label whose value is each object's name: names fit a label value


def name_fits_label(kind: str, label: str) -> dict[str, Any]:
    """The root CEL rule keeping a kind's names within a label value's length (63), naming why."""
    return cel(
        (
            f"size(self.metadata.name) <= {LABEL_VALUE_MAX_LENGTH}",
            f"metadata.name: a {kind} name is at most {LABEL_VALUE_MAX_LENGTH} characters, since it is "
            f"the value of the {label} label on every object the {kind} creates",
        )
    )


def cel(*rules: tuple[str, str]) -> dict[str, Any]:
    """`json_schema_extra` carrying CEL `x-kubernetes-validations`, each a (rule, readable message) pair."""
    return {"x-kubernetes-validations": [{"rule": rule, "message": message} for rule, message in rules]}


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model (camelCase, as serialised by alias)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    return _structural(raw, definitions, stack=())


def _structural(node: dict[str, Any], defs: dict[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
    node = copy.deepcopy(node)
    if "$ref" in node:
        name = node.pop("$ref").rsplit("/", 1)[-1]
        if name in stack:
            raise SchemaError(f"recursive model {name!r} cannot be a structural schema")
        target = _structural(defs[name], defs, (*stack, name))
        node = {**target, **{k: v for k, v in node.items() if k != "default"}, **_scalar_default(node)}
        return _structural_keys(node, defs, stack)
    if "allOf" in node:
        parts = node.pop("allOf")
        if len(parts) != 1:
            raise SchemaError("allOf with more than one member is not structural")
        return _structural({**parts[0], **node}, defs, stack)
    if "anyOf" in node:
        node = _collapse_any_of(node, defs, stack)
    return _structural_keys(node, defs, stack)


def _collapse_any_of(node: dict[str, Any], defs: dict[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
    members = node.pop("anyOf")
    non_null = [m for m in members if m.get("type") != "null"]
    nullable = len(non_null) != len(members)
    types = {m.get("type") for m in non_null}
    if len(non_null) == 1:
        merged = {**_structural(non_null[0], defs, stack), **node}
    elif types == {"integer", "string"} and all(set(m) <= {"type", "pattern"} for m in non_null):
        merged = {**node, "x-kubernetes-int-or-string": True}
    else:
        raise SchemaError(f"union of {sorted(map(str, types))} cannot be a structural schema")
    if nullable:
        merged["nullable"] = True
        if merged.get("default", 0) is None:
            del merged["default"]
    return merged


def _scalar_default(node: dict[str, Any]) -> dict[str, Any]:
    default = node.get("default")
    return {"default": default} if isinstance(default, str | int | float | bool) else {}


def _structural_keys(node: dict[str, Any], defs: dict[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs, stack) for name, sub in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs, stack)
        elif key == "prefixItems":
            raise SchemaError("fixed-length tuples cannot be a structural schema; use tuple[X, ...]")
        elif key == "additionalProperties":
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif value is not False:
                out[key] = _structural(value, defs, stack)
        elif key == "const":
            out["enum"] = [value]
        elif key == "format":
            if value in _KNOWN_FORMATS:
                out[key] = value
        elif key == "default":
            out.update(_scalar_default(node))
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out[key.replace("exclusive", "").lower()] = value
            out[key] = True
        else:
            out[key] = value
    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def crd_manifest(resource: CustomResource) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of one kind."""
    kind = resource.kind
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": openapi_schema(resource.spec),
    }
    if resource.status is not None:
        properties["status"] = openapi_schema(resource.status)
    root: dict[str, Any] = {"type": "object", "properties": properties}
    if resource.description:
        root["description"] = resource.description
    if resource.spec_required:
        root["required"] = ["spec"]
    if resource.label_named_by:
        root.update(name_fits_label(kind.kind, resource.label_named_by))
    version: dict[str, Any] = {
        "name": kind.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": root},
    }
    if resource.status is not None:
        version["subresources"] = {"status": {}}
    columns = [*resource.printer_columns, PrinterColumn("Age", ".metadata.creationTimestamp", "date")]
    version["additionalPrinterColumns"] = [column.manifest() for column in columns]
    names: dict[str, Any] = {
        "kind": kind.kind,
        "listKind": f"{kind.kind}List",
        "plural": kind.plural,
        "singular": kind.kind.lower(),
    }
    if resource.short_names:
        names["shortNames"] = list(resource.short_names)
    if resource.categories:
        names["categories"] = list(resource.categories)
    return {
        "apiVersion": CUSTOM_RESOURCE_DEFINITION.api_version,
        "kind": CUSTOM_RESOURCE_DEFINITION.kind,
        "metadata": {"name": kind.crd_name},
        "spec": {
            "group": kind.group,
            "names": names,
            "scope": "Namespaced" if kind.namespaced else "Cluster",
            "versions": [version],
        },
    }

