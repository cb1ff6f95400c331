from ferryman.kube.conditions import find_condition, is_true, set_condition


def test_transition_time_moves_only_when_status_changes() -> None:
    conditions = set_condition([], "Ready", True, "Planned", "ok", observed_generation=1, now="t1")
    conditions = set_condition(conditions, "Ready", True, "Planned", "still", observed_generation=2, now="t2")
    ready = find_condition(conditions, "Ready")
    assert ready == {
        "type": "Ready",
        "status": "True",
        "reason": "Planned",
        "message": "still",
        "lastTransitionTime": "t1",
        "observedGeneration": 2,
    }
    conditions = set_condition(conditions, "Ready", False, "Failed", now="t3")
    assert find_condition(conditions, "Ready")["lastTransitionTime"] == "t3"  # type: ignore[index]
    assert not is_true(conditions, "Ready")


def test_other_conditions_keep_their_place() -> None:
    conditions = set_condition([], "Ready", False, "A", now="t")
    conditions = set_condition(conditions, "Progressing", True, "B", now="t")
    conditions = set_condition(conditions, "Ready", True, "C", now="t")
    assert [c["type"] for c in conditions] == ["Ready", "Progressing"]
    assert is_true(conditions, "Ready") and is_true(conditions, "Progressing")
