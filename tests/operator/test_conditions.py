from datetime import UTC, datetime

from ferryman.api.base import ConditionStatus, find_condition, is_true, rfc3339, set_condition

T1, T2, T3 = (datetime(2026, 1, 1, 12, minute, tzinfo=UTC) for minute in (1, 2, 3))


def test_transition_time_moves_only_when_status_changes() -> None:
    conditions = set_condition([], "Ready", True, "Planned", "ok", observed_generation=1, at=T1)
    conditions = set_condition(conditions, "Ready", True, "Planned", "still", observed_generation=2, at=T2)
    ready = find_condition(conditions, "Ready")
    assert ready is not None
    assert ready.model_dump(mode="json", by_alias=True) == {
        "type": "Ready",
        "status": "True",
        "reason": "Planned",
        "message": "still",
        "lastTransitionTime": "2026-01-01T12:01:00Z",
        "observedGeneration": 2,
    }
    conditions = set_condition(conditions, "Ready", False, "Failed", observed_generation=3, at=T3)
    ready = find_condition(conditions, "Ready")
    assert ready is not None and ready.last_transition_time == T3 and ready.status is ConditionStatus.FALSE
    assert not is_true(conditions, "Ready")


def test_other_conditions_keep_their_place() -> None:
    conditions = set_condition([], "Ready", False, "A", observed_generation=1, at=T1)
    conditions = set_condition(conditions, "Progressing", True, "B", observed_generation=1, at=T1)
    conditions = set_condition(conditions, "Ready", True, "C", observed_generation=1, at=T1)
    assert [c.type for c in conditions] == ["Ready", "Progressing"]
    assert is_true(conditions, "Ready") and is_true(conditions, "Progressing")


def test_times_are_written_as_metav1_time() -> None:
    assert rfc3339(datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)) == "2026-01-01T12:00:05Z"
