"""Corpus tier (FERRYMAN_CORPUS): real PyTorchJob manifests from public repositories.

Every PyTorchJob converts to a TrainJob valid against the upstream CRD schema of each flavour, or is blocked
with reasons; templated (Helm) files give a parse error naming the line; nothing crashes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferryman.api.trainer import TrainerAPI
from ferryman.cli.convert import run_convert
from ferryman.convert.findings import Severity
from ferryman.convert.manifests import ManifestError, _find_jobs, convert_stream, iter_documents
from ferryman.convert.options import ConvertOptions
from ferryman.convert.registry import convert_job
from tests.convert.facts import uncovered_facts
from tests.convert.trainjob_schema import schema_errors

pytestmark = pytest.mark.corpus


def manifests(corpus_dir: Path) -> list[Path]:
    files = sorted((corpus_dir / "pytorchjobs").glob("*.yaml"))
    assert files, f"no manifests under {corpus_dir / 'pytorchjobs'}"
    return files


def emitted_objects(text: str) -> list[dict[str, Any]]:
    """Every TrainJob and TrainingRuntime in a converted stream, embedded ones included."""
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("kind") in ("TrainJob", "TrainingRuntime") and "trainer.kubeflow.org" in str(
                value.get("apiVersion")
            ):
                found.append(value)
                return
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)
        elif isinstance(value, str) and "kind: TrainJob" in value:
            walk(yaml.safe_load(value))

    for document in yaml.safe_load_all(text):
        walk(document)
    return found


@pytest.mark.parametrize("trainer_api", list(TrainerAPI))
@pytest.mark.parametrize("derived_runtime", [False, True])
def test_every_job_converts_to_a_schema_valid_trainjob_or_is_blocked_with_reasons(
    corpus_dir: Path, trainer_api: TrainerAPI, derived_runtime: bool
) -> None:
    options = ConvertOptions(trainer_api=trainer_api, derived_runtime=derived_runtime)
    jobs = 0
    for path in manifests(corpus_dir):
        source = path.read_text(encoding="utf-8")
        result = convert_stream(source, options)
        jobs += len(result.jobs)
        emitted = emitted_objects(result.text)
        trainjobs = [obj for obj in emitted if obj["kind"] == "TrainJob"]
        assert len(trainjobs) == sum(job.status == "converted" for job in result.jobs), path.name
        for obj in emitted:
            errors = schema_errors(obj, trainer_api, template=result.template)
            assert not errors, f"{path.name}: {obj['kind']} invalid for {trainer_api}: {errors}"
        for job in result.jobs:
            assert job.status in ("converted", "blocked"), (path.name, job.status)
            for finding in job.findings:
                assert finding.message.strip() and finding.code and finding.path, (path.name, finding)
            if job.status == "blocked":
                blockers = [f for f in job.findings if f.severity is Severity.BLOCKER]
                assert blockers, f"{path.name}: blocked without a blocker"
        if not result.jobs:
            assert result.text == source
        left = [(job.document, job.location) for job in convert_stream(result.text, options).jobs]
        blocked = [(job.document, job.location) for job in result.jobs if job.status == "blocked"]
        assert left == blocked, path.name
    assert jobs >= 20


def test_conversion_is_deterministic_and_sources_are_untouched(corpus_dir: Path) -> None:
    for path in manifests(corpus_dir):
        source = path.read_text(encoding="utf-8")
        first = convert_stream(source, ConvertOptions(derived_runtime=True))
        second = convert_stream(source, ConvertOptions(derived_runtime=True))
        assert first.text == second.text, path.name


def test_unconverted_documents_survive_byte_for_byte(corpus_dir: Path) -> None:
    """Documents without a PyTorchJob keep their exact text, comments and all."""
    for path in manifests(corpus_dir):
        source = path.read_text(encoding="utf-8")
        result = convert_stream(source, ConvertOptions())
        converted_docs = {job.document for job in result.jobs if job.status == "converted"}
        if not converted_docs:
            continue
        before = [d for d in yaml.safe_load_all(source)]
        after = [d for d in yaml.safe_load_all(result.text) if d.get("kind") != "TrainingRuntime"]  # derived
        assert len(after) == len(before), path.name
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            if index not in converted_docs:
                assert json.dumps(old, default=str) == json.dumps(new, default=str), (path.name, index)


def test_templated_helm_files_give_a_parse_error_naming_the_line(corpus_dir: Path) -> None:
    templated = sorted((corpus_dir / "pytorchjobs" / "templated").glob("*.yaml"))
    assert templated
    for path in templated:
        with pytest.raises(ManifestError) as raised:
            convert_stream(path.read_text(encoding="utf-8"), ConvertOptions())
        assert raised.value.line is not None and raised.value.line >= 1, path.name
        assert "Helm" in raised.value.message


def test_cli_over_the_whole_corpus(corpus_dir: Path, tmp_path: Path) -> None:
    """Parse errors in the templated files exit 2 but every other file is still converted and written."""
    out = tmp_path / "out"
    report_path = tmp_path / "report.json"
    with report_path.open("w") as report:
        code = run_convert(
            [str(corpus_dir / "pytorchjobs")],
            ConvertOptions(),
            output=out,
            report_format="json",
            stdout=report,
        )
    assert code == 2
    report_data = json.loads(report_path.read_text())
    assert {Path(e["file"]).parent.name for e in report_data["errors"]} == {"templated"}
    assert all(e["line"] for e in report_data["errors"])
    written = {p.name for p in out.rglob("*.yaml")}
    assert written == {p.name for p in manifests(corpus_dir)}


@pytest.mark.parametrize("trainer_api", list(TrainerAPI))
def test_no_fact_is_dropped_without_a_finding(corpus_dir: Path, trainer_api: TrainerAPI) -> None:
    """Every scalar of every corpus job (wrapped ones too) is in the emitted objects or under a finding."""
    checked = 0
    for path in manifests(corpus_dir):
        text = path.read_text(encoding="utf-8")
        template = convert_stream(text, ConvertOptions()).template
        options = ConvertOptions(trainer_api=trainer_api, force=True, template=template)
        for document in iter_documents(text):
            for found in _find_jobs(document):
                obj = found.obj
                if not (obj.get("metadata") or {}).get("name"):
                    obj = {**obj, "metadata": {**(obj.get("metadata") or {}), "name": "wrapped"}}
                conversion = convert_job(obj, options)
                assert uncovered_facts(obj, conversion) == [], (path.name, found.path)
                checked += 1
    assert checked == 25
