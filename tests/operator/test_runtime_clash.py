"""A TrainingRuntime under a derived runtime's name is used only when ferryman derived it with the same
content (controller/cutover.runtime_clash); the cluster test is e2e/test_operator_runtime_clash.py."""

import copy
from typing import Any

from ferryman.api.kinds import DERIVED_FROM_ANNOTATION
from ferryman.controller.cutover import runtime_clash
from ferryman.convert.runtime import named_runtime

STORED: dict[str, Any] = named_runtime("ml", "torch-distributed", {"mlPolicy": {"numNodes": 1}}, "torch")


def test_the_derived_runtime_itself_is_used() -> None:
    live = copy.deepcopy(STORED)
    live["metadata"].update(resourceVersion="7", labels={**live["metadata"]["labels"], "team": "a"})
    assert runtime_clash(live, STORED) is None


def test_a_runtime_ferryman_did_not_derive_is_a_clash() -> None:
    live = copy.deepcopy(STORED)
    del live["metadata"]["annotations"][DERIVED_FROM_ANNOTATION]
    clash = runtime_clash(live, STORED)
    assert clash is not None and "did not derive it" in clash
    assert f"TrainingRuntime ml/{STORED['metadata']['name']}" in clash


def test_other_content_is_a_clash_naming_where() -> None:
    changed = copy.deepcopy(STORED)
    changed["spec"]["mlPolicy"]["numNodes"] = 4
    clash = runtime_clash(changed, STORED)
    assert clash is not None and "differs at spec.mlPolicy.numNodes" in clash
    added = copy.deepcopy(STORED)
    added["spec"]["mlPolicy"]["hostile"] = True  # a field the derived runtime does not set
    clash = runtime_clash(added, STORED)
    assert clash is not None and "other content" in clash
