"""The `ferryman verify` report: text for people, JSON (one record per job and a summary) for machines."""

from __future__ import annotations

import json
from typing import Any

from ferryman_dev.verify.run import JobRecord, VerifyReport

_STATUS_TEXT = {
    "equivalent": "equivalent: every rank's pods match",
    "explained": "explained: every difference is announced by a finding of the conversion report",
    "unexplained": "UNEXPLAINED differences",
    "not_converted": "not converted",
    "skipped": "not verified",
    "v1_rejected": "the v1 job itself is rejected by the Training Operator",
}


def render_json(report: VerifyReport) -> str:
    return json.dumps(
        {
            "jobs": [job.as_dict() for job in report.jobs],
            "errors": report.errors,
            "summary": report.summary(),
        },
        indent=2,
        ensure_ascii=False,
        default=str,
    ) + "\n"


def render_text(report: VerifyReport) -> str:
    lines: list[str] = []
    for job in report.jobs:
        lines += _job_lines(job)
    for error in report.errors:
        lines.append(f"{error['file']}: {error['message']}")
    summary = report.summary()
    counts = ", ".join(f"{summary[key]} {key.replace('_', ' ')}" for key in list(summary)[1:])
    lines.append(f"\n{summary['jobs']} job(s): {counts}")
    return "\n".join(lines) + "\n"


def _job_lines(job: JobRecord) -> list[str]:
    where = f"{job.file} [doc {job.document}{', ' + job.location if job.location else ''}]"
    head = f"{job.kind} {job.name or '(unnamed)'} {where}: {_STATUS_TEXT[job.status]}"
    if job.ranks:
        head += f" ({job.ranks} rank(s))"
    lines = [head]
    if job.reason:
        lines.append(f"    {job.reason}")
    for difference in job.differences:
        rank = "job" if difference["rank"] is None else f"rank {difference['rank']}"
        v1, v2 = _show(difference["v1"]), _show(difference["v2"])
        lines.append(f"    {rank} {difference['path']}: v1 {v1} | v2 {v2}")
        explained = difference["explainedBy"]
        lines.append(
            f"        explained by {explained['code']} at {explained['path']}" if explained
            else "        UNEXPLAINED: no finding of the conversion report announces it"
        )
    return lines


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 160 else text[:157] + "..."
