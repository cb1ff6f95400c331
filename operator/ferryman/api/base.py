"""Building blocks shared by ferryman's custom resources: camelCase models, label selectors, conditions."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ferryman.api.crd import cel


class KubeModel(BaseModel):
    """A Kubernetes-shaped model: camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class StatusModel(BaseModel):
    """A status model: camelCase, and tolerant of fields written by newer operator versions."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class LabelSelectorRequirement(KubeModel):
    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "self.operator in ['In', 'NotIn'] ? size(self.values) > 0 : size(self.values) == 0",
                "operators In and NotIn need at least one value; Exists and DoesNotExist take none",
            )
        )
    )

    key: str = Field(min_length=1, max_length=317)
    operator: SelectorOperator
    values: list[str] = Field(default_factory=list, max_length=256)


class LabelSelector(KubeModel):
    """A Kubernetes label selector; an empty selector matches everything."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, max_length=32)

    def matches(self, labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        if any(labels.get(key) != value for key, value in self.match_labels.items()):
            return False
        for requirement in self.match_expressions:
            present = requirement.key in labels
            value = labels.get(requirement.key)
            op = requirement.operator
            if op is SelectorOperator.IN and value not in requirement.values:
                return False
            if op is SelectorOperator.NOT_IN and present and value in requirement.values:
                return False
            if op is SelectorOperator.EXISTS and not present:
                return False
            if op is SelectorOperator.DOES_NOT_EXIST and present:
                return False
        return True


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """metav1.Condition."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: datetime
    observed_generation: int | None = None


def conditions_field() -> list[Condition]:
    """A `conditions` list: a list-map keyed by type, as Kubernetes conventions ask."""
    return Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


def now() -> datetime:
    """The current time as Kubernetes stores it (metav1.Time: UTC, whole seconds)."""
    return datetime.now(UTC).replace(microsecond=0)


def rfc3339(moment: datetime) -> str:
    """`moment` as metav1.Time writes it: ``2026-01-01T12:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def find_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: list[Condition], type_: str) -> bool:
    condition = find_condition(conditions, type_)
    return condition is not None and condition.status is ConditionStatus.TRUE


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str = "",
    *,
    observed_generation: int | None,
    at: datetime,
) -> list[Condition]:
    """A new list with the condition `type_` set in its place; `lastTransitionTime` moves only when `status`
    changes, to `at`."""
    status_value = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    previous = find_condition(conditions, type_)
    unchanged = previous is not None and previous.status is status_value
    condition = Condition(
        type=type_,
        status=status_value,
        reason=reason,
        message=message[:32768],
        last_transition_time=previous.last_transition_time if previous is not None and unchanged else at,
        observed_generation=observed_generation,
    )
    others = [c for c in conditions if c.type != type_]
    position = next((i for i, c in enumerate(conditions) if c.type == type_), len(others))
    return [*others[:position], condition, *others[position:]]
