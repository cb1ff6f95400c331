"""Conversion reports: one record per source v1 job, rendered as text for people or JSON for pipelines."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ferryman.convert.findings import Severity
from ferryman.convert.manifests import JobResult

_SEVERITY_ORDER = {Severity.BLOCKER: 0, Severity.WARNING: 1, Severity.INFO: 2}
_GROUP_INFO_FROM = 3  # info findings sharing a code are listed on one line from this many


@dataclass
class FileReport:
    """What happened to one input file: its jobs, or the error that stopped it."""

    file: str
    jobs: list[JobResult] = field(default_factory=list)
    template: bool = False
    error: str | None = None  # why the file could not be converted (parse or I/O error)
    line: int | None = None  # where in the file, 1-based, when known
    column: int | None = None
    written: str | None = None  # where the converted stream went, when it was written to a file


def job_record(file: str, job: JobResult, template: bool = False) -> dict[str, Any]:
    """The JSON record of one source job."""
    conversion = job.conversion
    runtime_ref: dict[str, Any] | None = None
    num_nodes: Any = None
    if conversion is not None and conversion.trainjob is not None:
        spec = conversion.trainjob.get("spec", {})
        runtime_ref = spec.get("runtimeRef")
        num_nodes = spec.get("trainer", {}).get("numNodes")
    derived = conversion.runtime if conversion is not None and job.trainjob_name else None
    return {
        "file": file,
        "document": job.document,
        "location": job.location,
        "wrapper": job.wrapper,
        "kind": job.kind,
        "apiVersion": job.api_version,
        "name": job.name,
        "namespace": job.namespace,
        "status": job.status,
        "trainjob": job.trainjob_name,
        "runtimeRef": runtime_ref,
        "numNodes": num_nodes,
        "derivedRuntime": derived.get("metadata", {}).get("name") if derived else None,
        "template": template,
        "findings": [
            {"severity": str(f.severity), "code": f.code, "path": f.path, "message": f.message}
            for f in sorted(job.findings, key=lambda f: _SEVERITY_ORDER[f.severity])
        ],
    }


def summary(reports: list[FileReport]) -> dict[str, Any]:
    statuses = Counter(job.status for report in reports for job in report.jobs)
    kinds: dict[str, Counter[str]] = {}
    for report in reports:
        for job in report.jobs:
            kinds.setdefault(job.kind, Counter())[job.status] += 1
    severities = Counter(str(f.severity) for report in reports for job in report.jobs for f in job.findings)
    runtimes = {
        (runtime["metadata"].get("namespace"), runtime["metadata"]["name"])
        for report in reports
        for job in report.jobs
        if job.trainjob_name and job.conversion is not None
        for runtime in [job.conversion.runtime]
        if runtime is not None
    }
    return {
        "files": len(reports),
        "errors": sum(1 for report in reports if report.error),
        "jobs": sum(statuses.values()),
        "converted": statuses["converted"],
        "forced": statuses["forced"],
        "blocked": statuses["blocked"],
        "unsupported": statuses["unsupported"],
        "kinds": {
            kind: {"jobs": sum(counts.values()), **{status: counts[status] for status in _STATUS_TEXT}}
            for kind, counts in sorted(kinds.items())
        },
        "derivedRuntimes": len(runtimes),
        "findings": {str(s): severities[str(s)] for s in Severity},
    }


def render_json(reports: list[FileReport]) -> str:
    """The report as one JSON object, each job record on a line of its own (greppable, and written by
    json's C encoder: an indented dump goes through its pure-Python one, slower than converting)."""
    jobs = [_json_line(job_record(r.file, job, r.template)) for r in reports for job in r.jobs]
    errors = [
        _json_line({"file": r.file, "line": r.line, "column": r.column, "message": r.error})
        for r in reports
        if r.error
    ]
    return (
        f'{{\n  "jobs": {_json_array(jobs)},\n  "errors": {_json_array(errors)},\n'
        f'  "summary": {_json_line(summary(reports))}\n}}\n'
    )


def _json_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _json_array(lines: list[str]) -> str:
    return "[\n    " + ",\n    ".join(lines) + "\n  ]" if lines else "[]"


_STATUS_TEXT = {
    "converted": "converted",
    "forced": "converted despite blockers (--force)",
    "blocked": "NOT converted: blocked",
    "unsupported": "NOT converted: unsupported",
}


def render_text(reports: list[FileReport]) -> str:
    lines: list[str] = []
    for report in reports:
        if report.error:
            where = "".join(f":{n}" for n in (report.line, report.column) if n is not None)
            lines.append(f"{report.file}{where}: error: {report.error}")
            continue
        if not report.jobs:
            continue
        header = report.file + ("  (envsubst template)" if report.template else "")
        if report.written and any(job.status in ("converted", "forced") for job in report.jobs):
            header += f"  -> {report.written}"
        elif report.written:
            header += f"  (nothing converted; copied unchanged to {report.written})"
        lines.append(header)
        for job in report.jobs:
            lines.extend(_job_lines(job))
        lines.append("")
    lines.append(_summary_line(summary(reports)))
    return "\n".join(lines) + "\n"


def _job_lines(job: JobResult) -> list[str]:
    name = job.name or "<unnamed>"
    source = f"{job.namespace}/{name}" if job.namespace else name
    where = f"doc {job.document}" + (f", {job.wrapper} {job.location}" if job.location else "")
    line = f"  {job.kind} {source} [{where}]: {_STATUS_TEXT[job.status]}"
    if job.trainjob_name:
        record = job_record("", job)
        details = []
        if record["runtimeRef"]:
            details.append(f"runtime {record['runtimeRef'].get('name')}")
        if record["numNodes"] is not None:
            details.append(f"{record['numNodes']} node(s)")
        if record["derivedRuntime"]:
            details.append(f"derived TrainingRuntime {record['derivedRuntime']}")
        line += f" -> TrainJob {job.trainjob_name}" + (f" ({', '.join(details)})" if details else "")
    lines = [line]
    findings = sorted(job.findings, key=lambda f: _SEVERITY_ORDER[f.severity])
    info_codes = Counter(f.code for f in findings if f.severity is Severity.INFO)
    grouped: set[str] = set()
    for finding in findings:
        if finding.severity is Severity.INFO and info_codes[finding.code] >= _GROUP_INFO_FROM:
            if finding.code not in grouped:  # many alike (metadata hygiene): one line, the details in JSON
                grouped.add(finding.code)
                paths = [f.path for f in findings if f.code == finding.code]
                lines.append(f"    {finding.severity:<7}  {finding.code}  {', '.join(paths)}")
                lines.append(f"             {len(paths)} fields; each reason is in --report json")
            continue
        lines.append(f"    {finding.severity:<7}  {finding.code}  {finding.path}")
        lines.append(f"             {finding.message}")
    return lines


def _summary_line(totals: dict[str, Any]) -> str:
    kinds = ", ".join(f"{counts['jobs']} {kind}" for kind, counts in totals["kinds"].items()) or "0 jobs"
    parts = [f"{kinds} in {totals['files']} file(s): {totals['converted']} converted"]
    if totals["forced"]:
        parts.append(f"{totals['forced']} forced despite blockers")
    parts.append(f"{totals['blocked']} blocked")
    if totals["unsupported"]:
        parts.append(f"{totals['unsupported']} unsupported")
    if totals["derivedRuntimes"]:
        parts.append(f"{totals['derivedRuntimes']} derived TrainingRuntime(s)")
    findings = totals["findings"]
    parts.append(
        f"findings: {findings['blocker']} blocker, {findings['warning']} warning, {findings['info']} info"
    )
    if totals["errors"]:
        parts.append(f"{totals['errors']} file(s) with errors")
    return "; ".join(parts)
