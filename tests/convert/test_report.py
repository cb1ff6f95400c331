"""Report rendering: JSON records per source job, and the text report."""

from __future__ import annotations

import json

from ferryman.convert.findings import Finding, Severity
from ferryman.convert.manifests import JobResult
from ferryman.convert.options import Conversion
from ferryman.convert.report import FileReport, job_record, render_json, render_text


def trainjob(name: str) -> dict[str, object]:
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name},
        "spec": {"runtimeRef": {"name": "torch-distributed"}, "trainer": {"numNodes": 4}},
    }


WARNING = Finding(
    severity=Severity.WARNING, path="spec.runPolicy.backoffLimit", message="no backoffLimit", code="b"
)
BLOCKER = Finding(
    severity=Severity.BLOCKER, path="spec.x.hostNetwork", message="host network", code="host-network"
)
INFO = Finding(severity=Severity.INFO, path="metadata.uid", message="dropped", code="metadata-dropped")


def converted() -> JobResult:
    conversion = Conversion("bert", "nlp", trainjob("bert-renamed"), findings=[INFO, WARNING])
    return JobResult(0, "", None, "PyTorchJob", "kubeflow.org/v1", "bert", "nlp", conversion, [INFO, WARNING])


def blocked() -> JobResult:
    conversion = Conversion("gpt", None, None, findings=[BLOCKER])
    return JobResult(
        2,
        "spec.components[0].template",
        "AppWrapper",
        "TFJob",
        "kubeflow.org/v1",
        "gpt",
        "research",
        conversion,
        [BLOCKER],
    )


def forced() -> JobResult:
    conversion = Conversion("gpt", None, trainjob("gpt"), findings=[BLOCKER])
    return JobResult(0, "", None, "PyTorchJob", "kubeflow.org/v1", "gpt", None, conversion, [BLOCKER])


def test_job_record_fields() -> None:
    record = job_record("jobs/bert.yaml", converted())
    assert record == {
        "file": "jobs/bert.yaml",
        "document": 0,
        "location": "",
        "wrapper": None,
        "kind": "PyTorchJob",
        "apiVersion": "kubeflow.org/v1",
        "name": "bert",
        "namespace": "nlp",
        "status": "converted",
        "trainjob": "bert-renamed",
        "runtimeRef": {"name": "torch-distributed"},
        "numNodes": 4,
        "derivedRuntime": None,
        "template": False,
        "findings": [
            {
                "severity": "warning",
                "code": "b",
                "path": "spec.runPolicy.backoffLimit",
                "message": "no backoffLimit",
            },
            {"severity": "info", "code": "metadata-dropped", "path": "metadata.uid", "message": "dropped"},
        ],
    }


def test_blocked_and_forced_records() -> None:
    record = job_record("w.yaml", blocked())
    assert (record["status"], record["trainjob"], record["runtimeRef"]) == ("blocked", None, None)
    assert (record["document"], record["wrapper"], record["location"]) == (
        2,
        "AppWrapper",
        "spec.components[0].template",
    )
    assert job_record("f.yaml", forced())["status"] == "forced"


def test_json_report_is_one_record_per_job_with_errors_and_summary() -> None:
    reports = [
        FileReport("a.yaml", [converted(), blocked()]),
        FileReport("b.yaml", [forced()], template=True),
        FileReport("chart.yaml", error="not valid YAML", line=3, column=7),
        FileReport("empty.yaml"),
    ]
    document = json.loads(render_json(reports))
    assert [(r["file"], r["name"]) for r in document["jobs"]] == [
        ("a.yaml", "bert"),
        ("a.yaml", "gpt"),
        ("b.yaml", "gpt"),
    ]
    assert document["jobs"][2]["template"] is True
    assert document["errors"] == [{"file": "chart.yaml", "line": 3, "column": 7, "message": "not valid YAML"}]
    assert document["summary"] == {
        "files": 4,
        "errors": 1,
        "jobs": 3,
        "converted": 1,
        "forced": 1,
        "blocked": 1,
        "unsupported": 0,
        "kinds": {
            "PyTorchJob": {"jobs": 2, "converted": 1, "forced": 1, "blocked": 0, "unsupported": 0},
            "TFJob": {"jobs": 1, "converted": 0, "forced": 0, "blocked": 1, "unsupported": 0},
        },
        "derivedRuntimes": 0,
        "findings": {"blocker": 2, "warning": 1, "info": 1},
    }


def test_text_report() -> None:
    reports = [
        FileReport("a.yaml", [converted(), blocked()], written="out/a.yaml"),
        FileReport("chart.yaml", error="not valid YAML", line=3, column=7),
        FileReport("no-jobs.yaml"),
    ]
    text = render_text(reports)
    lines = text.splitlines()
    assert lines[0] == "a.yaml  -> out/a.yaml"
    assert lines[1] == (
        "  PyTorchJob nlp/bert [doc 0]: converted -> TrainJob bert-renamed "
        "(runtime torch-distributed, 4 node(s))"
    )
    assert lines[2].split() == ["warning", "b", "spec.runPolicy.backoffLimit"]  # most severe first
    assert lines[3].strip() == "no backoffLimit"
    assert (
        "  TFJob research/gpt [doc 2, AppWrapper spec.components[0].template]: NOT converted: blocked"
        in lines
    )
    assert "chart.yaml:3:7: error: not valid YAML" in lines
    assert "no-jobs.yaml" not in text
    assert lines[-1] == (
        "1 PyTorchJob, 1 TFJob in 3 file(s): 1 converted; 1 blocked; findings: 1 blocker, 1 warning, 1 info; "
        "1 file(s) with errors"
    )


def test_many_info_findings_with_one_code_share_a_line() -> None:
    dropped = [
        Finding(
            severity=Severity.INFO, path=f"metadata.{key}", message=f"{key} dropped", code="metadata-dropped"
        )
        for key in ("uid", "resourceVersion", "generation")
    ]
    conversion = Conversion("bert", "nlp", trainjob("bert"), findings=[*dropped, WARNING])
    job = JobResult(
        0, "", None, "PyTorchJob", "kubeflow.org/v1", "bert", "nlp", conversion, [*dropped, WARNING]
    )
    lines = render_text([FileReport("a.yaml", [job])]).splitlines()
    assert lines[2].split()[:2] == ["warning", "b"]
    assert (
        lines[4]
        == "    info     metadata-dropped  metadata.uid, metadata.resourceVersion, metadata.generation"
    )
    assert lines[5].strip() == "3 fields; each reason is in --report json"
    assert len(json.loads(render_json([FileReport("a.yaml", [job])]))["jobs"][0]["findings"]) == 4
