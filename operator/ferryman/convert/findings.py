"""Findings: every source fact a conversion does not carry, with its severity, field path and remedy."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Severity(StrEnum):
    BLOCKER = "blocker"  # the job would run differently; not emitted unless forced
    WARNING = "warning"  # a semantic change the user should know about
    INFO = "info"  # carried in another form, or dropped on purpose (metadata hygiene)


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)

    severity: Severity
    path: str  # source field path, e.g. "spec.pytorchReplicaSpecs.Worker.template.spec.hostNetwork"
    message: str  # what happens and the remedy
    code: str  # stable machine-readable identifier, e.g. "host-network"
