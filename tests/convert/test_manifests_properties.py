"""Properties of manifest streams over generated PyTorchJobs, in every stream shape.

Whatever the jobs and however they are laid out (documents, a List, wrapped, YAML or JSON), conversion never
raises, leaves everything that is not a job untouched, emits exactly the jobs it reports as converted, and
converting its own output changes nothing more.
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman.api.trainer import TrainerAPI
from ferryman.convert.emit import dump
from ferryman.convert.manifests import convert_stream
from ferryman.convert.options import ConvertOptions
from tests.convert.strategies import pytorchjobs, trainjobs

EXAMPLES = int(os.environ.get("FERRYMAN_PROPERTY_EXAMPLES", "15"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONFIGMAP = "# keep me\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}  # and me\ndata: {a: '1'}\n"


def wrap(job: dict[str, Any], shape: str) -> dict[str, Any]:
    if shape == "appwrapper":
        return {
            "apiVersion": "workload.codeflare.dev/v1beta2",
            "kind": "AppWrapper",
            "metadata": {"name": "aw"},
            "spec": {"components": [{"template": job}]},
        }
    if shape == "argo":
        template = {"name": "submit", "resource": {"action": "create", "manifest": dump(job)}}
        return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "spec": {"templates": [template]}}
    return job


def kinds(value: Any) -> list[str]:
    """Kinds of every object in a document, embedded manifests included."""
    found = []
    if isinstance(value, dict):
        if "kind" in value and "apiVersion" in value:
            found.append(value["kind"])
        for child in value.values():
            found.extend(kinds(child))
    elif isinstance(value, list):
        for child in value:
            found.extend(kinds(child))
    elif isinstance(value, str) and "\nkind:" in "\n" + value:
        found.extend(kinds(yaml.safe_load(value)))
    return found


@SETTINGS
@given(
    jobs=st.lists(pytorchjobs(), min_size=1, max_size=3),
    trainjob=trainjobs(),
    shape=st.sampled_from(["documents", "list", "appwrapper", "argo"]),
    api=st.sampled_from(list(TrainerAPI)),
    derived_runtime=st.booleans(),
)
def test_stream_properties(
    jobs: list[dict[str, Any]], trainjob: dict[str, Any], shape: str, api: TrainerAPI, derived_runtime: bool
) -> None:
    options = ConvertOptions(trainer_api=api, derived_runtime=derived_runtime)
    if shape == "list":
        body = [dump({"apiVersion": "v1", "kind": "List", "items": jobs})]
    else:
        body = [dump(wrap(job, shape)) for job in jobs]
    text = "---\n".join([CONFIGMAP, *body, dump(trainjob)])

    result = convert_stream(text, options)

    assert len(result.jobs) == len(jobs)
    assert result.text.startswith(CONFIGMAP + "---\n")  # untouched, comments and all
    assert result.text.endswith(dump(trainjob))  # a TrainJob passes through unchanged
    converted = sum(job.status == "converted" for job in result.jobs)
    emitted = [kind for doc in yaml.safe_load_all(result.text) for kind in kinds(doc)]
    assert emitted.count("TrainJob") == converted + 1
    assert emitted.count("PyTorchJob") == len(jobs) - converted
    derived = {  # jobs needing the same settings share one derived runtime (its name is its content's hash)
        (j.conversion.runtime["metadata"].get("namespace"), j.conversion.runtime["metadata"]["name"])
        for j in result.jobs
        if j.conversion is not None and j.conversion.runtime is not None and j.status == "converted"
    }
    assert emitted.count("TrainingRuntime") == len(derived)
    again = convert_stream(result.text, options)
    assert again.text == result.text
    assert [j.status for j in again.jobs] == [j.status for j in result.jobs if j.status != "converted"]
    assert convert_stream(text, options).text == result.text  # deterministic


@SETTINGS
@given(job=pytorchjobs())
def test_json_streams_stay_json(job: dict[str, Any]) -> None:
    result = convert_stream(json.dumps(job, indent=4), ConvertOptions(force=True))
    written = json.loads(result.text)
    if result.jobs[0].conversion.runtime is None:
        assert written["kind"] == "TrainJob"
    else:  # a List: the derived runtime, then the TrainJob
        assert [item["kind"] for item in written["items"]] == ["TrainingRuntime", "TrainJob"]
