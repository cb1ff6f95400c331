"""The fast YAML writer reads back as exactly what it was given."""

from __future__ import annotations

import datetime
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.convert.emit import Placeholder, dump

TRICKY = st.sampled_from(
    [
        "",
        " ",
        "-",
        "--x",
        "- x",
        "? x",
        ": x",
        "x:",
        "a: b",
        "a #b",
        "#c",
        "yes",
        "No",
        "on",
        "~",
        "null",
        "1",
        "0x1F",
        "1_000",
        "1e3",
        ".5",
        ".inf",
        "=",
        "<<",
        "'q'",
        '"q"',
        "@x",
        "`x`",
        "%x",
        "!x",
        "&x",
        "*x",
        "|",
        ">",
        "[a]",
        "{a}",
        "a,b",
        "2026-01-01",
        "2026-01-01T00:00:00Z",
        "\t",
        "x\t",
        "a\nb",
        "a\n",
        "a\n\n",
        "\na",
        " a\nb",
        "a \nb",
        "a\r\nb",
        "\u2028",
        "\x85",
        "\ufeff",
        "中文",
        "é:",
        "$VAR",
        "${VAR}",
        "$(VAR)",
        "---",
        "...",
        "a\x7fb",
    ]
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TRICKY, st.text(max_size=12)
)
DATA = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(TRICKY, st.text(max_size=6), st.integers()), children, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(DATA)
def test_reads_back_unchanged(value: Any) -> None:
    assert yaml.safe_load(dump(value)) == value


@settings(max_examples=40, deadline=None)
@given(DATA)
def test_template_mode_reads_back_unchanged(value: Any) -> None:
    assert yaml.safe_load(dump(value, quote_placeholders=True)) == value


def test_layout_matches_kubectl() -> None:
    obj = {
        "metadata": {"name": "x", "labels": {}},
        "spec": {"containers": [{"name": "a", "args": ["--epochs=1", "3", "yes"]}], "empty": []},
        "script": "echo 1\necho 2\n",
    }
    assert dump(obj) == (
        "metadata:\n  name: x\n  labels: {}\nspec:\n  containers:\n  - name: a\n    args:\n    - --epochs=1\n"
        "    - '3'\n    - 'yes'\n  empty: []\nscript: |\n  echo 1\n  echo 2\n".replace("'3'", '"3"').replace(
            "'yes'", '"yes"'
        )
    )


def test_placeholders_in_template_mode() -> None:
    out = dump(
        {"numNodes": Placeholder("$NUM_NODES"), "image": "${IMAGE}", "cmd": "a\n$X\n"},
        quote_placeholders=True,
    )
    assert out == 'numNodes: $NUM_NODES\nimage: "${IMAGE}"\ncmd: |\n  a\n  $X\n'


def test_timestamps_and_other_types() -> None:
    stamp = datetime.datetime(2018, 12, 16, 21, 39, 9, tzinfo=datetime.UTC)
    assert yaml.safe_load(dump({"t": stamp, "d": datetime.date(2026, 1, 2)})) == {
        "t": stamp,
        "d": datetime.date(2026, 1, 2),
    }
    assert yaml.safe_load(dump({"b": b"\x00\x01"})) == {"b": b"\x00\x01"}  # handed to PyYAML
