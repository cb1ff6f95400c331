"""The CRD generator: structural output, Kubernetes extensions carried, and `crds/` kept in sync."""

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from ferryman.api import kinds
from ferryman.api.base import KubeModel
from ferryman.api.crd import CustomResource, SchemaError, crd_manifest, openapi_schema
from ferryman.api.resources import GENERATED_DIRECTORIES, RESOURCES, render_generated

ROOT = Path(__file__).resolve().parents[2]


def walk(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def schema_nodes(schema: dict[str, Any], path: str = "") -> Any:
    """Every schema node (not every dict: `default` values and CEL rules are skipped)."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from schema_nodes(sub, f"{path}.{name}")
    if "items" in schema:
        yield from schema_nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from schema_nodes(schema["additionalProperties"], f"{path}{{}}")


def test_generated_files_are_up_to_date() -> None:
    for path, text in render_generated(ROOT).items():
        assert (ROOT / path).is_file() and (ROOT / path).read_text() == text, (
            f"{path} is stale: run `make crds` and commit the result"
        )
    for directory in GENERATED_DIRECTORIES:
        for path in (ROOT / directory).glob("*.yaml"):
            assert path.relative_to(ROOT) in render_generated(ROOT), f"{path} is not generated any more"


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind.kind)
def test_schemas_are_structural(resource: CustomResource) -> None:
    schema = crd_manifest(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in schema_nodes(schema):
        assert not {"$ref", "$defs", "anyOf", "allOf", "oneOf", "title", "prefixItems"} & node.keys(), path
        assert (
            "type" in node
            or node.get("x-kubernetes-preserve-unknown-fields")
            or node.get("x-kubernetes-int-or-string")
        ), f"{path} has no type"


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind.kind)
def test_crd_carries_status_columns_and_names(resource: CustomResource) -> None:
    crd = crd_manifest(resource)
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert "Ready" in columns and columns[-1] == "Age"
    assert crd["spec"]["names"]["shortNames"]
    assert "ferryman" in crd["spec"]["names"]["categories"]
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_cutover_policy_has_readable_cel_rules() -> None:
    crd = crd_manifest(next(r for r in RESOURCES if r.kind is kinds.CUTOVER_POLICY))
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    messages = [rule["message"] for rule in spec["x-kubernetes-validations"]]
    assert any("v1ControllerRemoved" in message for message in messages)


class Inner(KubeModel):
    some_value: int = Field(default=3, ge=1)
    free: dict[str, Any] = Field(default_factory=dict)


class Outer(KubeModel):
    inner_thing: Inner | None = None
    port: int | str = 80
    labels: dict[str, str] = Field(default_factory=dict)
    anything: Any = None
    ratio: float = Field(default=0.5, gt=0)


def test_generator_rewrites_pydantic_idioms() -> None:
    schema = openapi_schema(Outer)
    inner = schema["properties"]["innerThing"]
    assert inner["nullable"] is True and inner["type"] == "object"
    assert inner["properties"]["someValue"] == {"default": 3, "minimum": 1, "type": "integer"}
    assert inner["properties"]["free"]["x-kubernetes-preserve-unknown-fields"] is True
    assert schema["properties"]["port"]["x-kubernetes-int-or-string"] is True
    assert schema["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    assert schema["properties"]["anything"]["x-kubernetes-preserve-unknown-fields"] is True
    assert schema["properties"]["ratio"]["minimum"] == 0 and schema["properties"]["ratio"]["exclusiveMinimum"]


class Node(BaseModel):
    children: list["Node"] = Field(default_factory=list)


def test_recursive_models_are_refused() -> None:
    with pytest.raises(SchemaError, match="recursive"):
        openapi_schema(Node)


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind.kind)
def test_names_fit_the_label_they_are_the_value_of(resource: CustomResource) -> None:
    root = crd_manifest(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    (rule,) = root["x-kubernetes-validations"]
    assert rule["rule"] == f"size(self.metadata.name) <= {kinds.LABEL_VALUE_MAX_LENGTH}"
    assert resource.label_named_by in rule["message"] and "at most 63 characters" in rule["message"]
