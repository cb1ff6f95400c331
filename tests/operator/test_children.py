"""Children are recognised by ownerReference and label, never by name (issue #14, item 8)."""

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from ferryman.api.base import find_condition
from ferryman.api.kinds import MIGRATION_LABEL, MODE_LABEL, SOURCE_UID_LABEL
from ferryman.controller.migration import CHILD_CLASH_REASON, clash_conditions
from ferryman.controller.serving import mirror_status
from ferryman.kube.builders import build_config_map, build_worker_rbac
from ferryman.kube.children import ChildClash, is_child

MIGRATION = {
    "apiVersion": "ferryman.dev/v1alpha1",
    "kind": "ExperimentMigration",
    "metadata": {"name": "vision", "namespace": "ml", "uid": "uid-vision"},
}
OTHER = {**MIGRATION, "metadata": {**MIGRATION["metadata"], "uid": "uid-recreated"}}


def foreign(**metadata: Any) -> dict[str, Any]:
    return {"kind": "ServiceAccount", "metadata": {"name": "vision-worker", "namespace": "ml", **metadata}}


def test_what_the_operator_builds_is_its_child() -> None:
    built = [*build_worker_rbac(MIGRATION), build_config_map("vision-spec", "ml", {}, MIGRATION, {})]
    built[-1]["metadata"]["labels"][MIGRATION_LABEL] = "vision"
    assert all(is_child(child, MIGRATION, MIGRATION_LABEL) for child in built)
    assert not any(is_child(child, OTHER, MIGRATION_LABEL) for child in built)  # same name, another uid


def test_a_name_or_a_label_alone_is_not_a_child() -> None:
    label = {"labels": {MIGRATION_LABEL: "vision"}}
    reference = {"ownerReferences": [{"uid": "uid-vision", "controller": True}]}
    assert not is_child(foreign(), MIGRATION, MIGRATION_LABEL)
    assert not is_child(foreign(**label), MIGRATION, MIGRATION_LABEL)  # anyone can set a label
    assert not is_child(foreign(**reference), MIGRATION, MIGRATION_LABEL)
    other_label = {"labels": {MIGRATION_LABEL: "other"}}
    assert not is_child(foreign(**reference, **other_label), MIGRATION, MIGRATION_LABEL)
    not_controller = {"ownerReferences": [{"uid": "uid-vision", "controller": False}]}
    assert not is_child(foreign(**not_controller, **label), MIGRATION, MIGRATION_LABEL)
    assert is_child(foreign(**reference, **label), MIGRATION, MIGRATION_LABEL)


def test_a_clash_names_the_object_and_stalls_the_migration() -> None:
    clash = ChildClash(foreign(), MIGRATION_LABEL)
    assert str(clash).startswith("ServiceAccount ml/vision-worker already exists and is not ferryman's")
    assert MIGRATION_LABEL in str(clash)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    conditions = clash_conditions([], str(clash), 2, at)
    stalled, ready = find_condition(conditions, "Stalled"), find_condition(conditions, "Ready")
    assert stalled is not None and stalled.status == "True" and stalled.reason == CHILD_CLASH_REASON
    assert ready is not None and ready.status == "False" and "ml/vision-worker" in ready.message
    later = clash_conditions(conditions, str(clash), 2, datetime(2026, 1, 2, tzinfo=UTC))
    assert find_condition(later, "Stalled").last_transition_time == at  # type: ignore[union-attr]


def test_a_trainjob_claiming_a_pytorchjob_by_name_does_not_write_its_status() -> None:
    """A TrainJob labelled takeover with an ownerReference naming a PyTorchJob, but not its uid and source
    label, does not make the operator write that PyTorchJob's status (nothing reaches the client)."""
    pytorchjob = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "net", "namespace": "ml", "uid": "uid-net"},
        "status": {},
    }
    reference = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": "net", "controller": True}
    claims = {
        "forged uid": ({"uid": "other"}, {SOURCE_UID_LABEL: "uid-net"}),
        "no source label": ({"uid": "uid-net"}, {}),
        "the takeover": ({"uid": "uid-net"}, {SOURCE_UID_LABEL: "uid-net"}),
    }
    for claim, (reference_uid, labels) in claims.items():
        trainjob = {
            "metadata": {
                "name": "net",
                "namespace": "ml",
                "labels": {MODE_LABEL: "takeover", **labels},
                "ownerReferences": [{**reference, **reference_uid}],
            },
            "status": {"conditions": [{"type": "Complete", "status": "True"}]},
        }
        indexes = {
            "trainjobs": {("ml", "net"): [trainjob]},
            "v1jobs": {("PyTorchJob", "ml", "net"): [pytorchjob]},
        }
        write = mirror_status(NO_CLIENT, "ml", "net", {**indexes, "jobsets": {}}, logging.getLogger())
        if claim == "the takeover":  # the real Takeover TrainJob's status is written
            with pytest.raises(AssertionError, match="wrote to the API server"):
                asyncio.run(write)
        else:
            asyncio.run(write)


class _NoClient:
    @property
    def client(self) -> None:
        raise AssertionError("the operator wrote to the API server")


NO_CLIENT: Any = _NoClient()
