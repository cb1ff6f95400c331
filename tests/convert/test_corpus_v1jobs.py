"""Corpus tier (FERRYMAN_CORPUS): real MPIJob, TFJob, JAXJob, XGBoostJob and PaddleJob manifests from public
repositories (``v1jobs/``, described in its SOURCES.tsv).

Every job converts to objects the upstream Trainer CRD schemas accept or is blocked with reasons, in every
TrainJob flavour with and without derived runtimes; every source fact of a top-level job is carried or
reported; every file's job is found (an embedded one that is not YAML as a blocker saying so).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from ferryman.api.trainer import TrainerAPI
from ferryman.convert.findings import Severity
from ferryman.convert.manifests import convert_stream
from ferryman.convert.options import ConvertOptions
from ferryman.convert.registry import convert_job, job_kind
from tests.convert.facts import uncovered_facts
from tests.convert.test_corpus import emitted_objects
from tests.convert.trainjob_schema import schema_errors

pytestmark = pytest.mark.corpus

def sources(corpus_dir: Path) -> dict[str, str]:
    """file -> the kind SOURCES.tsv says it holds."""
    with (corpus_dir / "v1jobs" / "SOURCES.tsv").open(encoding="utf-8") as table:
        return {row["file"]: row["kind"] for row in csv.DictReader(table, delimiter="\t")}


@pytest.mark.parametrize("trainer_api", list(TrainerAPI))
@pytest.mark.parametrize("derived_runtime", [False, True])
def test_every_job_converts_to_schema_valid_objects_or_is_blocked_with_reasons(
    corpus_dir: Path, trainer_api: TrainerAPI, derived_runtime: bool
) -> None:
    options = ConvertOptions(trainer_api=trainer_api, derived_runtime=derived_runtime)
    kinds = sources(corpus_dir)
    assert len(kinds) >= 20
    for name, kind in kinds.items():
        path = corpus_dir / "v1jobs" / name
        result = convert_stream(path.read_text(encoding="utf-8"), options)
        found = {job.kind for job in result.jobs}
        assert found == {kind}, name
        for obj in emitted_objects(result.text):
            errors = schema_errors(obj, trainer_api, template=result.template)
            assert not errors, f"{name}: {obj['kind']} invalid for {trainer_api}: {errors}"
        for job in result.jobs:
            assert job.status in ("converted", "blocked"), (name, job.status)
            assert all(f.message.strip() and f.code and f.path for f in job.findings), name
            if job.status == "blocked":
                assert any(f.severity is Severity.BLOCKER for f in job.findings), name


def test_nothing_is_dropped_without_a_finding(corpus_dir: Path) -> None:
    """Each top-level job's source facts are in the TrainJob or runtime, or under a finding's path."""
    for path in sorted((corpus_dir / "v1jobs").glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        if "${" in text:
            continue  # an envsubst template: facts are placeholders, checked by the schema test above
        for document in yaml.safe_load_all(text):
            if not isinstance(document, dict) or job_kind(document) is None:
                continue
            conversion = convert_job(document, ConvertOptions(force=True))
            if conversion.trainjob is not None:
                assert uncovered_facts(document, conversion) == [], path.name
