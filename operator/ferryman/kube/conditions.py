"""Kubernetes conditions (metav1.Condition) as plain dicts, set with the conventions' semantics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool | str,
    reason: str,
    message: str = "",
    *,
    observed_generation: int | None = None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """A new list with the condition `type_` set; `lastTransitionTime` moves only when `status` changes."""
    status_text = status if isinstance(status, str) else ("True" if status else "False")
    previous = next((c for c in conditions if c.get("type") == type_), None)
    if previous is not None and previous.get("status") == status_text:
        transition = previous.get("lastTransitionTime") or now or now_rfc3339()
    else:
        transition = now or now_rfc3339()
    condition: dict[str, Any] = {
        "type": type_,
        "status": status_text,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": transition,
    }
    if observed_generation is not None:
        condition["observedGeneration"] = observed_generation
    others = [c for c in conditions if c.get("type") != type_]
    position = next((i for i, c in enumerate(conditions) if c.get("type") == type_), len(others))
    return [*others[:position], condition, *others[position:]]


def find_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def is_true(conditions: list[dict[str, Any]] | None, type_: str) -> bool:
    condition = find_condition(conditions, type_)
    return condition is not None and condition.get("status") == "True"

