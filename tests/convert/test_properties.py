"""Properties over generated schema-valid PyTorchJobs: total, faithful, deterministic, pure."""

from __future__ import annotations

import copy
import os
from functools import cache
from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman.api.trainer import LauncherStrategy, TrainerAPI
from ferryman.api.trainjob import parse_trainjob
from ferryman.convert.options import ConvertOptions
from ferryman.convert.registry import convert_job
from ferryman_dev import upstream
from tests.convert.facts import uncovered_facts
from tests.convert.strategies import pytorchjobs, trainjobs
from tests.convert.trainjob_schema import schema_errors

options = st.builds(
    ConvertOptions,
    trainer_api=st.sampled_from(list(TrainerAPI)),
    launcher=st.sampled_from(list(LauncherStrategy)),
    derived_runtime=st.booleans(),
    force=st.booleans(),
)
# FERRYMAN_PROPERTY_EXAMPLES raises the example count for a deeper local run (default keeps the suite fast).
EXAMPLES = int(os.environ.get("FERRYMAN_PROPERTY_EXAMPLES", "50"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(job=pytorchjobs(), opts=options)
def test_never_raises_and_every_fact_is_carried_or_reported(
    job: dict[str, Any], opts: ConvertOptions
) -> None:
    before = copy.deepcopy(job)
    conversion = convert_job(job, opts)
    assert job == before, "the source object was modified"
    if conversion.trainjob is None:
        assert conversion.blocked and not opts.force
        return
    assert uncovered_facts(job, conversion) == []
    _poison(conversion.trainjob)
    assert job == before, "the TrainJob shares mutable parts with the source"


def _poison(value: Any) -> None:
    """Overwrite every map and list in place."""
    if isinstance(value, dict):
        for key in list(value):
            _poison(value[key])
            value[key] = "poisoned"
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _poison(item)
            value[index] = "poisoned"


@SETTINGS
@given(job=pytorchjobs(), opts=options)
def test_emitted_objects_validate_against_the_flavours_crd(job: dict[str, Any], opts: ConvertOptions) -> None:
    conversion = convert_job(job, ConvertOptions(**{**opts.__dict__, "force": True}))
    assert conversion.trainjob is not None
    assert schema_errors(conversion.trainjob, opts.trainer_api) == []
    parse_trainjob(conversion.trainjob, opts.trainer_api)
    if conversion.runtime is not None:
        assert schema_errors(conversion.runtime, opts.trainer_api) == []


@settings(max_examples=25, deadline=None)
@given(job=pytorchjobs(), opts=options)
def test_deterministic(job: dict[str, Any], opts: ConvertOptions) -> None:
    first = convert_job(job, opts)
    second = convert_job(copy.deepcopy(job), opts)
    assert first == second


@settings(max_examples=20, deadline=None)
@given(job=trainjobs(), opts=options)
def test_trainjob_passes_through_unchanged(job: dict[str, Any], opts: ConvertOptions) -> None:
    before = copy.deepcopy(job)
    conversion = convert_job(job, opts)
    assert conversion.trainjob == before
    assert not conversion.blocked


_scalars = (
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["", "x", "$N", "pytorch", "Master"])
)
_keys = st.sampled_from(
    ["Master", "Worker", "replicas", "template", "spec", "containers", "name", "env", "x"]
)
_shallow = _scalars | st.lists(_scalars, max_size=3) | st.dictionaries(_keys, _scalars, max_size=3)
json_values = _shallow | st.lists(_shallow, max_size=3) | st.dictionaries(_keys, _shallow, max_size=4)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(job=pytorchjobs(), junk=json_values, where=st.integers(0, 5), opts=options)
def test_malformed_jobs_are_reported_not_raised(job: dict[str, Any], junk: Any, where: int, opts) -> None:
    """Schema-invalid PyTorchJobs (hand-edited manifests) become blockers, never exceptions."""
    replicas = job["spec"]["pytorchReplicaSpecs"]
    replica = next(iter(replicas.values()))
    targets = [
        (job, "spec"),
        (job["spec"], "pytorchReplicaSpecs"),
        (replicas, next(iter(replicas))),
        (replica, "template"),
        (replica["template"], "spec"),
        (replica["template"]["spec"]["containers"][0], "env"),
    ]
    parent, key = targets[where]
    parent[key] = junk
    conversion = convert_job(job, opts)
    assert conversion.trainjob is not None or conversion.blocked
    if conversion.trainjob is not None:
        assert uncovered_facts(job, conversion) == []


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(job=pytorchjobs())
def test_generated_jobs_are_schema_valid(job: dict[str, Any]) -> None:
    """The strategy's promise: every generated job passes the pinned v1 PyTorchJob CRD schema."""
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in _v1_validator().iter_errors(job)]
    assert errors == []


@cache
def _v1_validator() -> jsonschema.Draft7Validator:
    (crd,) = upstream.load_documents(upstream.pytorchjob_crd())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"])


def test_a_pod_template_spec_that_is_not_a_mapping_is_a_blocker() -> None:
    """Found by the property above: `template: {spec: true}` with a sidecar check that assumed a mapping."""
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "bad", "namespace": "team"},
        "spec": {"pytorchReplicaSpecs": {"Worker": {"replicas": 2, "template": {"spec": True}}}},
    }
    conversion = convert_job(job, ConvertOptions())
    assert conversion.blocked
    assert any(f.path == "spec.pytorchReplicaSpecs.Worker.template.spec" for f in conversion.findings)


PYTORCH = {"name": "pytorch", "image": "example/train:1"}
LOGGER = {"name": "logger", "image": "busybox:1"}


def reordered(master: str, master_pytorch: dict[str, Any], worker: str) -> dict[str, Any]:
    """A PyTorchJob whose Master lists [pytorch, logger] and whose Workers list [logger, pytorch]."""
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "a"},
        "spec": {
            "pytorchReplicaSpecs": {
                master: {"template": {"spec": {"containers": [master_pytorch, LOGGER]}}},
                worker: {"template": {"spec": {"containers": [LOGGER, PYTORCH]}}},
            }
        },
    }


def test_a_sidecar_both_roles_run_in_another_order_is_reported_once() -> None:
    """Found by the first property: a Master and Workers running the same sidecar, listed in another order,
    share one sidecar blocker (at the Worker's container of that name) when no runtime is derived."""
    job = reordered("master", PYTORCH, "worker")
    conversion = convert_job(job, ConvertOptions(derived_runtime=False, force=True))
    sidecars = [f.path for f in conversion.findings if f.code == "sidecar"]
    assert sidecars == ["spec.pytorchReplicaSpecs.worker.template.spec.containers[0]"]
    assert uncovered_facts(job, conversion) == []


def test_a_difference_in_a_container_listed_in_another_order_names_the_masters_own_container() -> None:
    """Found by the first property: the Master's finding named the Worker's index, another container."""
    job = reordered("Master", {**PYTORCH, "resources": {"limits": {"cpu": "1"}}}, "Worker")
    conversion = convert_job(job, ConvertOptions(force=True))
    merged = {f.path for f in conversion.findings if f.code.startswith("replica-templates")}
    assert "spec.pytorchReplicaSpecs.Master.template.spec.containers[0].resources" in merged, merged
    assert uncovered_facts(job, conversion) == []
