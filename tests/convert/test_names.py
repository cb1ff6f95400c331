"""TrainJob names: RFC 1035, at most 48 characters, shortened deterministically with a hash suffix."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.convert.findings import Severity
from ferryman.convert.names import MAX_NAME_LENGTH, is_rfc1035_label, shorten, trainjob_name


def test_short_valid_name_is_kept() -> None:
    assert trainjob_name("mnist") == ("mnist", None)
    assert trainjob_name("a" * 48) == ("a" * 48, None)


def test_long_name_is_shortened_with_a_stable_suffix() -> None:
    source = "bert-large-pretraining-with-a-very-long-descriptive-name-v2"
    name, finding = trainjob_name(source)
    assert len(name) == MAX_NAME_LENGTH and is_rfc1035_label(name)
    assert name.startswith("bert-large-pretraining")
    assert trainjob_name(source)[0] == name  # deterministic
    assert trainjob_name(source + "x")[0] != name  # the suffix tells similar names apart
    assert finding is not None and finding.severity is Severity.WARNING and finding.path == "metadata.name"
    assert source in finding.message and name in finding.message


@pytest.mark.parametrize(
    ("source", "expected"), [("My.Job", "my-job"), ("9lives", "j-9lives"), ("a_b", "a-b")]
)
def test_invalid_characters_are_replaced(source: str, expected: str) -> None:
    name, finding = trainjob_name(source)
    assert name == expected and finding is not None


def test_placeholder_name_is_kept_and_reported() -> None:
    name, finding = trainjob_name("${JOB_NAME}")
    assert name == "${JOB_NAME}"
    assert finding is not None and finding.code == "name-placeholder"


def test_shorten_never_ends_with_a_dash() -> None:
    assert not shorten("a" * 38 + "-" * 20, 48).split("-")[0].endswith("-")
    assert len(shorten("x" * 100, 63)) == 63


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=80))
def test_any_name_becomes_a_valid_label(source: str) -> None:
    name, finding = trainjob_name(source)
    if "$" in source and finding is not None and finding.code == "name-placeholder":
        return
    assert is_rfc1035_label(name, MAX_NAME_LENGTH)
    assert (finding is None) == (name == source)
