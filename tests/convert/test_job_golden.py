"""Golden conversions of the upstream v1 examples (pinned, from the Go module proxy) and of hand-written jobs.

Each golden file holds, per TrainJob flavour, the emitted TrainJob, the derived runtime (by default; none
with ``derived_runtime=False``) and the findings as ``severity code path``. Regenerate after an intended
change with ``FERRYMAN_UPDATE_GOLDEN=1 pytest tests/convert/test_job_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferryman.api.trainer import TrainerAPI
from ferryman.api.trainjob import parse_trainjob
from ferryman.convert.options import ConvertOptions
from ferryman.convert.registry import convert_job
from ferryman_dev import upstream
from tests.convert.facts import uncovered_facts
from tests.convert.trainjob_schema import schema_errors

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"
UPDATE = os.environ.get("FERRYMAN_UPDATE_GOLDEN") == "1"


class _NoAliases(yaml.SafeDumper):
    """Golden files spell every value out, even one the converter shares between two places."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# the examples of the other kinds ferryman converts: (module, version, {kind: examples/<directory>})
EXAMPLES = (
    (
        upstream.TRAINING_OPERATOR_MODULE,
        upstream.TRAINING_OPERATOR_VERSION,
        {"JAXJob": "jax", "XGBoostJob": "xgboost", "TFJob": "tensorflow", "PaddleJob": "paddlepaddle"}
        | {"MPIJob": "mpi"},
    ),
    ("github.com/kubeflow/mpi-operator", "v0.8.0", {"MPIJob": "v2beta1"}),  # the pin of e2e/bins
)

# blockers after which no TrainJob is emitted, even forced: the flavour has no runtime for the kind (JAX
# before v2.2, ...) or the topology has no v2 equivalent (TFJob parameter servers, PaddleJob's Master, ...)
WHOLE_JOB_BLOCKERS = {"no-runtime", "no-v2-equivalent", "elastic-policy", "mpi-implementation"}


def v1_examples() -> list[tuple[str, dict[str, Any]]]:
    """(``<directory>-<path below it>``, job) of every JAXJob, XGBoostJob, ... the pinned modules ship under
    ``examples/<directory>``."""
    found = []
    for module, version, kinds in EXAMPLES:
        examples = upstream.module_dir(module, version) / "examples"
        for kind, directory in kinds.items():
            for path in sorted((examples / directory).rglob("*.yaml")):
                name = "-".join(path.relative_to(examples / directory).with_suffix("").parts)
                prefix = "mpi-operator" if "mpi-operator" in module else directory
                found.extend(
                    (f"{prefix}-{name}", doc)
                    for doc in upstream.load_documents(path)
                    if doc.get("kind") == kind
                )
    return found


def _cases() -> list[Any]:
    cases = [
        pytest.param(f"upstream-{name}", doc, False, id=f"upstream/{name}")
        for name, doc in [
            *((path.stem, doc) for path, doc in upstream.pytorchjob_examples()),
            *v1_examples(),
        ]
    ]
    for path in sorted((DATA / "jobs").glob("*.yaml")):
        (doc,) = upstream.load_documents(path)
        cases.append(pytest.param(path.stem, doc, path.stem == "templated", id=path.stem))
    return cases


def _record(job: dict[str, Any], template: bool) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for api in TrainerAPI:
        for derived_runtime in (True, False):
            options = ConvertOptions(
                trainer_api=api, derived_runtime=derived_runtime, force=True, template=template
            )
            conversion = convert_job(job, options)
            if conversion.trainjob is None:  # the job as a whole has no v2 equivalent, even forced
                blockers = {f.code for f in conversion.findings if f.severity.value == "blocker"}
                assert blockers & WHOLE_JOB_BLOCKERS
            else:
                assert schema_errors(conversion.trainjob, api, template=template) == []
                if not template:
                    parse_trainjob(conversion.trainjob, api)
                assert uncovered_facts(job, conversion) == []
            if conversion.runtime is not None:
                assert schema_errors(conversion.runtime, api) == []
            record[f"{api.value}{'' if derived_runtime else ' no-derived-runtime'}"] = {
                "blocked": conversion.blocked,
                "trainjob": conversion.trainjob,
                "runtime": conversion.runtime,
                "findings": [f"{f.severity.value} {f.code} {f.path}" for f in conversion.findings],
            }
    return record


@pytest.mark.parametrize(("name", "job", "template"), _cases())
def test_golden(name: str, job: dict[str, Any], template: bool) -> None:
    record = _record(job, template)
    golden = GOLDEN / f"{name}.yaml"
    if UPDATE:
        golden.write_text(yaml.dump(record, Dumper=_NoAliases, sort_keys=False, width=110), encoding="utf-8")
    assert golden.exists(), f"no golden file {golden}; run with FERRYMAN_UPDATE_GOLDEN=1"
    assert record == yaml.safe_load(golden.read_text(encoding="utf-8"))
