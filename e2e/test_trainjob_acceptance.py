"""TrainJobs that ferryman emits are accepted by a real apiserver serving each Trainer flavour's CRDs.

Server-side dry-run with strict field validation: the apiserver runs the CRD's structural schema and CEL
rules, and a field the flavour does not know is an error rather than silently pruned.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from ferryman.api.trainer import TrainerAPI
from ferryman.convert.manifests import convert_stream
from ferryman.convert.options import ConvertOptions
from ferryman.convert.registry import convert_job
from ferryman_dev.cluster import ControlPlane, Rejected
from ferryman_dev.upstream import pytorchjob_examples
from tests.convert.strategies import pytorchjobs
from tests.convert.test_job_golden import v1_examples

pytestmark = pytest.mark.cluster

FLAVOURS = [TrainerAPI.V2_1, TrainerAPI.V2_2]
FlavourCluster = Callable[[TrainerAPI], ControlPlane]


def admit(plane: ControlPlane, obj: dict[str, Any]) -> dict[str, Any]:
    """Dry-run create ``obj`` in the ``default`` namespace (its own namespace need not exist here)."""
    obj = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "namespace"}}
    return plane.dry_run_create(obj, namespace="default")


def accept(plane: ControlPlane, job: dict[str, Any], options: ConvertOptions) -> dict[str, Any]:
    """Convert ``job`` and dry-run create what it emits; the admitted TrainJob."""
    conversion = convert_job(job, options)
    assert conversion.trainjob is not None, [str(f) for f in conversion.findings]
    if conversion.runtime is not None:
        admit(plane, conversion.runtime)
    return admit(plane, conversion.trainjob)


@pytest.mark.parametrize("trainer_api", FLAVOURS, ids=str)
@pytest.mark.parametrize("derived_runtime", [False, True], ids=["trainjob", "with-runtime"])
def test_converted_upstream_examples_are_accepted(
    flavour_cluster: FlavourCluster, trainer_api: TrainerAPI, derived_runtime: bool
) -> None:
    plane = flavour_cluster(trainer_api)
    # forced: a job with a blocker (e.g. elastic training) still yields the TrainJob a user would get
    options = ConvertOptions(trainer_api=trainer_api, derived_runtime=derived_runtime, force=True)
    examples = pytorchjob_examples()
    assert examples
    for path, job in examples:
        try:
            admitted = accept(plane, job, options)
        except Rejected as rejected:
            pytest.fail(f"{path.name} ({job['metadata']['name']}): {rejected}")
        assert admitted["kind"] == "TrainJob"
        assert admitted["spec"]["runtimeRef"]["name"]


@pytest.mark.parametrize("trainer_api", FLAVOURS, ids=str)
def test_converted_examples_of_every_v1_kind_are_accepted(
    flavour_cluster: FlavourCluster, trainer_api: TrainerAPI
) -> None:
    """The JAX, XGBoost, TF, Paddle and MPI examples of the pinned modules: what each emits (its derived
    runtime, then the TrainJob) passes the flavour's schema and CEL rules, or the job is blocked whole."""
    plane = flavour_cluster(trainer_api)
    options = ConvertOptions(trainer_api=trainer_api, force=True)
    examples = v1_examples()
    assert {job["kind"] for _, job in examples} == {"JAXJob", "XGBoostJob", "TFJob", "PaddleJob", "MPIJob"}
    admitted = 0
    for name, job in examples:
        conversion = convert_job(job, options)
        if conversion.trainjob is None:
            assert conversion.blocked, name
            continue
        try:
            if conversion.runtime is not None:
                admit(plane, conversion.runtime)
            admit(plane, conversion.trainjob)
        except Rejected as rejected:
            pytest.fail(f"{name}: {rejected}")
        admitted += 1
    assert admitted


SERVER_SET = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")


def as_submitted(job: dict[str, Any]) -> dict[str, Any]:
    """``job`` as a user would apply it: without the fields the server sets, and without status."""
    metadata = {k: v for k, v in job["metadata"].items() if k not in SERVER_SET}
    return {**{k: v for k, v in job.items() if k != "status"}, "metadata": metadata}


@pytest.mark.parametrize("trainer_api", FLAVOURS, ids=str)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(job=pytorchjobs())
def test_converted_generated_jobs_are_accepted(
    flavour_cluster: FlavourCluster, trainer_api: TrainerAPI, job: dict[str, Any]
) -> None:
    """Every generated PyTorchJob is valid v1 input and converts to objects the apiserver accepts."""
    plane = flavour_cluster(trainer_api)
    admit(plane, as_submitted(job))
    conversion = convert_job(job, ConvertOptions(trainer_api=trainer_api, force=True))
    assert conversion.trainjob is not None
    if conversion.runtime is not None:
        admit(plane, conversion.runtime)
    admit(plane, conversion.trainjob)


OTHER_FLAVOUR_FIELD = {TrainerAPI.V2_1: "runtimePatches", TrainerAPI.V2_2: "podTemplateOverrides"}


def breakages(trainer_api: TrainerAPI) -> list[tuple[str, Callable[[dict[str, Any]], None], str]]:
    """(what, how to break a valid TrainJob, the apiserver's message) for the flavour."""

    def set_at(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
        *parents, leaf = path.split(".")

        def apply(obj: dict[str, Any]) -> None:
            for key in parents:
                obj = obj.setdefault(key, {})
            obj[leaf] = value

        return apply

    other = OTHER_FLAVOUR_FIELD[trainer_api]
    return [
        (
            "CEL on managedBy",
            set_at("spec.managedBy", "example.com/elsewhere"),
            "ManagedBy must be trainer.kubeflow.org/trainjob-controller",
        ),
        (
            "CEL on the name",
            set_at("metadata.name", "1-starts-with-a-digit"),
            "metadata.name must match RFC 1035 DNS label format",
        ),
        (
            "schema type",
            set_at("spec.trainer.numNodes", "two"),
            "spec.trainer.numNodes in body must be of type integer",
        ),
        ("the other flavour's field", set_at(f"spec.{other}", []), f'unknown field "spec.{other}"'),
    ]


@pytest.mark.parametrize("trainer_api", FLAVOURS, ids=str)
def test_broken_trainjobs_are_rejected_with_the_apiservers_message(
    flavour_cluster: FlavourCluster, trainer_api: TrainerAPI
) -> None:
    plane = flavour_cluster(trainer_api)
    _, job = pytorchjob_examples()[0]
    valid = convert_job(job, ConvertOptions(trainer_api=trainer_api)).trainjob
    assert valid is not None
    admit(plane, valid)
    for what, breakage, message in breakages(trainer_api):
        broken = copy.deepcopy(valid)
        breakage(broken)
        with pytest.raises(Rejected) as rejected:
            admit(plane, broken)
        assert rejected.value.code in (400, 422), what
        assert message in rejected.value.message, what


@pytest.mark.corpus
@pytest.mark.parametrize("trainer_api", FLAVOURS, ids=str)
def test_corpus_conversions_are_accepted(
    flavour_cluster: FlavourCluster, trainer_api: TrainerAPI, corpus_dir: Path
) -> None:
    """The corpus with default options: every job converts but the two whose blocker is justified (a user's
    per-role MASTER_ADDR and RANK, a Master-only ReadWriteOnce claim), and each emitted TrainJob and derived
    runtime is admitted by the apiserver. Templates (envsubst placeholders) are admitted once substituted, so
    only their schema is checked, by tests/convert/test_corpus.py."""
    plane = flavour_cluster(trainer_api)
    options = ConvertOptions(trainer_api=trainer_api)
    statuses: list[str] = []
    for path in sorted((corpus_dir / "pytorchjobs").glob("*.yaml")):
        result = convert_stream(path.read_text(encoding="utf-8"), options)
        statuses += [job.status for job in result.jobs]
        if result.template:
            continue
        for job in result.jobs:
            conversion = job.conversion
            if conversion is None or conversion.trainjob is None:
                continue
            try:
                if conversion.runtime is not None:
                    admit(plane, conversion.runtime)
                metadata = {"name": "wrapped", **(conversion.trainjob.get("metadata") or {})}  # Katib-like
                admitted = admit(plane, {**conversion.trainjob, "metadata": metadata})
            except Rejected as rejected:
                pytest.fail(f"{path.name} ({job.name}): {rejected}")
            assert admitted["kind"] == "TrainJob"
    assert (statuses.count("converted"), len(statuses)) == (23, 25)
