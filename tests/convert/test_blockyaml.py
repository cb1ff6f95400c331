"""The block-YAML reader against PyYAML: whenever `blockyaml` answers, it answers exactly what PyYAML's safe
loader does (value, types included, and the document's span), and it never accepts what PyYAML refuses.

Inputs: hand-written cases for each construct, documents generated line by line from a grammar that mixes
what the reader handles with what it leaves to PyYAML (and with errors), generated objects written by
several emitters, generated streams, and the corpus manifests when `FERRYMAN_CORPUS` is set.
"""

from __future__ import annotations

import datetime
import math
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman.convert import blockyaml
from ferryman.convert.emit import dump
from ferryman.convert.manifests import ManifestError, _composed_documents, iter_documents

SETTINGS = settings(
    max_examples=int(os.environ.get("BLOCKYAML_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def typed(value: Any) -> Any:
    """A form of a value in which 1, 1.0 and True differ (Python's == says they are equal)."""
    if isinstance(value, dict):
        return ("map", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("seq", [typed(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def pyyaml(text: str) -> tuple[Any, tuple[int, int]] | None:
    """PyYAML's value and span for a one-document text; None when it has no document; raises on errors."""
    documents = list(_composed_documents(text))
    assert len(documents) <= 1
    return (documents[0].data, documents[0].span) if documents else None


def check(text: str) -> bool:
    """Assert that the reader agrees with PyYAML on `text`; True when the reader answered."""
    try:
        loaded = blockyaml.load(text)
    except blockyaml.NumberOutOfRange:  # a number Kubernetes refuses: refused by PyYAML's reading too
        with pytest.raises(ManifestError):
            pyyaml(text)
        return False
    try:
        expected = pyyaml(text)
    except ManifestError:
        assert loaded is None, f"accepted what PyYAML refuses:\n{text}"
        return False
    if loaded is None:
        return False
    value, start, end = loaded
    assert expected is not None, f"read a document where PyYAML sees none:\n{text}"
    assert typed(value) == typed(expected[0]), text
    assert (start, end) == expected[1], f"span {(start, end)} != {expected[1]}:\n{text!r}"
    return True


READ = [
    "a: 1\nb: two\n",
    "# lead\n\na: 1  # trailing\n# tail\n\n",
    "a:\n  b:\n    c: d\n  e: f\ng: h\n",
    "a:\n- x\n- y\nb: 1\n",
    "a:\n  - x\n  -   y\n",
    "- a: 1\n  b: 2\n- c\n-\n  d: 3\n- - no\n"[:-7],
    "- name: x\n  items:\n  - 1\n  - 2\n- name: y\n",
    "a: yes\nb: No\nc: 0777\nd: 0x1F\ne: 1_000\nf: 1.5\ng: .inf\nh: ~\ni: null\nj: 2026-01-01\n",
    "k: 2026-01-01T00:00:00Z\nl: 1e3\nm: 1.0e+3\nn: -1\no: +1\np: 1:20\nq: true\nr: False\n",
    'a: "quoted: # not a comment"\nb: \'it\'\'s\'\nc: "esc \\" \\\\ \\n \\t \\/ \\b"\nd: \'\'\ne: ""\n',
    "'quoted key': 1\n\"dq: key\": 2\n80: port\ntrue: t\n",
    "a: []\nb: {}\nc: [x, \"y\", 'z', 1, yes, -1]  # c\nd: [ a ,b ]\n",
    "a: plain with spaces\nb: x#y\nc: http://host:80/path\nd: -x\ne: ---\nf: a,b\ng: x :y\n",
    "a: |\n  line 1\n    indented\n\n  line 3\nb: 1\n",
    "a: |-\n  x\n\n\nb: 1\n",
    "a: |+\n  x\n\n\nb: 1\n",
    "a: |\n  x\n  # content\n# comment\nb: |\n  y\n",
    "a: |\n  x\n\n",
    "a: |+\n  x\n\n",
    "a:\nb:\n",
    "a: 1\nb:\n# comment\n\n",
    "- x\n- y\n",
    "a: 1\n  # indented comment\nb: 2\n",
    "key: value   \n",
    'a: ü\nb: 日本\nc: "😀"\n',
    'env:\n- name: A\n  value: "1"\n- name: B\n',
    "a: 1",
]
REFUSED = [
    "a: &x 1\nb: *x\n",
    "<<: {a: 1}\n",
    "a: !!str 1\n",
    "a: >\n  folded\n",
    "a: |2\n  x\n",
    "a: b: c\n",
    "a: 1\n  b: 2\n",
    "a: x\n  continued\n",
    'a: "multi\n  line"\n',
    'a: "\\x41"\n',
    "a:\tb\n",
    "a: [x, [y]]\n",
    "a: {b: 1}\n",
    "? a\n: b\n",
    "- - x\n",
    "  a: 1\n",
    "a: 1\n- b\n",
    "a: =\n",
    "a: 'unterminated\n",
    "a: [x,]\n",
    "plain\n",
    "a:\n\t- x\n",
    "a: x:\n",
    "a:\n  b: |\n    x",
    "- {name: B}\n",
    "-\n  more\n",
    "a:\n  value\n",
]


@pytest.mark.parametrize("text", READ)
def test_reads_what_manifests_use(text: str) -> None:
    assert check(text), f"left to PyYAML:\n{text}"


@pytest.mark.parametrize("text", REFUSED)
def test_leaves_the_rest_to_pyyaml(text: str) -> None:
    assert blockyaml.load(text) is None
    check(text)


INDENTS = st.sampled_from([0, 0, 0, 1, 2, 2, 2, 3, 4, 4, 6])
KEYS = st.sampled_from(
    [
        "a",
        "b",
        "key",
        "nvidia.com/gpu",
        "80",
        "true",
        "~",
        "a b",
        "a#b",
        "a #b",
        "-a",
        "'q'",
        '"d"',
        '"x: y"',
        "<<",
        "a:b",
        "null",
        "1.5",
        "2026-01-01",
        '""',
        "'it''s'",
        "é",
        "a\tb",
        "[k]",
        "a ",
        "a  b",
        "x :y",
    ]
)
VALUES = st.sampled_from(
    [
        "x",
        "yes",
        "No",
        "0777",
        "1_000",
        "0x1F",
        "1e3",
        "1.5",
        ".inf",
        ".NaN",
        "2026-01-01",
        "~",
        "null",
        "=",
        "2026-01-01 10:00:00",
        "a: b",
        "a #c",
        "a#c",
        "-1",
        "- x",
        "-x",
        "x:",
        "http://h:80/p",
        "&a x",
        "*a",
        "!tag x",
        "%x",
        "@x",
        "`x",
        "?x",
        "? x",
        ":x",
        "a  b",
        "tab\there",
        "ü",
        "[a, b]",
        "[]",
        "{}",
        "{a: 1}",
        "[a, [b]]",
        "['x', \"y\"]",
        '"q\\n"',
        '"q\\x41"',
        "'s''s'",
        '"\\u00e9"',
        "|",
        "|-",
        "|+",
        ">",
        "|2",
        '"unterminated',
        "[a,]",
        "[ ]",
        "[a b, c]",
        "[-x, :y]",
        "'",
        '"',
        "x ",
        "1:20",
        "+1",
        "0o17",
        "0b11",
        "[true, ~, 1.0]",
        "[a] # c",
        "|  # c",
        "--- x",
        "...",
        "'a' b",
        '"a"b',
    ]
)
COMMENTS = st.sampled_from(["", "", "", " # c", "  #c:x", "#c", " #"])


GOOD_VALUES = st.sampled_from(
    [
        "x",
        "yes",
        "No",
        "0777",
        "1_000",
        "0x1F",
        "1e3",
        "1.5",
        ".inf",
        "2026-01-01",
        "~",
        "null",
        "-1",
        "-x",
        "http://h:80/p",
        "a  b",
        "ü",
        "[a, b]",
        "[]",
        "{}",
        "['x', \"y\"]",
        '"q\\n"',
        "'s''s'",
        "1:20",
        "+1",
        "[true, ~, 1.0]",
        "a#c",
        '"a: b"',
        "'# x'",
        '""',
        "x # comment",
        "0o17",
        "2026-01-01T00:00:00Z",
    ]
)
GOOD_KEYS = st.sampled_from(["a", "b", "key", "nvidia.com/gpu", "80", "true", "'q'", '"x: y"', "é", "a:b"])
BLOCK_LINES = st.lists(
    st.sampled_from(["text", "# hash", "", "  more", "- x", "a: b", "    ", "\tx", "x\t", "|"]),
    min_size=1,
    max_size=3,
)


@st.composite
def well_formed(draw: st.DrawFn, depth: int = 0, indent: int = 0) -> list[str]:
    """The lines of a block collection at `indent`, drawn as a tree (a mapping's keys differ: a duplicate key
    is refused: tests/convert/test_hostile_manifests.py)."""
    sequence = draw(st.booleans())
    step = draw(st.sampled_from([2, 2, 4, 1]))
    lines: list[str] = []
    used: set[str] = set()
    for _ in range(draw(st.integers(1, 3))):
        head = " " * indent + ("-" + " " * draw(st.sampled_from([1, 1, 3])) if sequence else "")
        if sequence and draw(st.booleans()):  # `- key: value` then the mapping's other keys
            column = len(head)
            inner = draw(well_formed_mapping_lines(depth, column))
            lines.append(head + inner[0][column:])
            lines.extend(inner[1:])
            continue
        key = "" if sequence else f"{draw(GOOD_KEYS.filter(lambda k: k not in used))}:"
        used.add(key[:-1])
        nested = depth < 3 and draw(st.integers(0, 3)) == 0
        if nested:
            child_indent = indent + step if sequence or draw(st.booleans()) else indent
            lines.append(head + key)
            lines.extend(
                draw(well_formed(depth + 1, child_indent if child_indent > indent else indent + step))
            )
        elif draw(st.integers(0, 6)) == 0:
            lines.append(f"{head}{key} {draw(st.sampled_from(['|', '|-', '|+']))}")
            lines.extend(" " * (indent + step) + line if line else line for line in draw(BLOCK_LINES))
        else:
            lines.append(f"{head}{key} {draw(GOOD_VALUES)}".rstrip() if key or sequence else head)
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(st.sampled_from(["", "# c", " " * indent + "# c", "   "])))
    return lines


@st.composite
def well_formed_mapping_lines(draw: st.DrawFn, depth: int, column: int) -> list[str]:
    keys = draw(st.lists(GOOD_KEYS, min_size=1, max_size=3, unique=True))
    return [f"{' ' * column}{key}: {draw(GOOD_VALUES)}" for key in keys]


@st.composite
def chaotic(draw: st.DrawFn) -> str:
    """Documents made line by line from every kind of line, in any order and indentation."""
    lines = []
    for _ in range(draw(st.integers(1, 12))):
        shape = draw(st.sampled_from(["key", "key", "key", "dash", "dash-key", "blank", "comment", "block"]))
        indent = " " * draw(INDENTS)
        if shape == "blank":
            lines.append(draw(st.sampled_from(["", " ", "   "])))
            continue
        if shape == "comment":
            lines.append(f"{indent}# {draw(VALUES)}")
            continue
        if shape == "block":
            lines.extend(" " * draw(INDENTS) + line for line in draw(BLOCK_LINES))
            continue
        dash = draw(st.sampled_from(["- ", "-", "-  "])) if shape.startswith("dash") else ""
        key = f"{draw(KEYS)}{draw(st.sampled_from([':', ': ', ':  ']))}" if shape != "dash" else ""
        value = draw(st.one_of(st.just(""), VALUES))
        separator = "" if not value or not key or key.endswith(" ") else " "
        lines.append(f"{indent}{dash}{key}{separator}{value}{draw(COMMENTS)}")
    return "\n".join(lines) + draw(st.sampled_from(["\n", "\n", "", "\n\n"]))


@st.composite
def documents(draw: st.DrawFn) -> str:
    """Well-formed block documents, the same with one line damaged, and chaotic ones."""
    shape = draw(st.sampled_from(["well-formed", "well-formed", "damaged", "chaotic"]))
    if shape == "chaotic":
        return draw(chaotic())
    lines = draw(well_formed())
    if shape == "damaged":
        index = draw(st.integers(0, len(lines) - 1))
        line = lines[index]
        lines[index] = draw(
            st.sampled_from(
                [
                    " " + line,
                    line[1:],
                    line + ": x",
                    line + " &a",
                    "\t" + line,
                    line.replace(": ", ":"),
                    line + " [",
                    line.replace("- ", "- - "),
                    line + "\n  continued",
                    line + " #",
                ]
            )
        )
    return "\n".join(lines) + draw(st.sampled_from(["\n", "\n", "", "\n\n", "\n# end\n"]))


@SETTINGS
@given(documents())
def test_generated_documents_agree_with_pyyaml(text: str) -> None:
    check(text)


def test_the_grammar_reaches_the_reader() -> None:
    """The generated documents are not all left to PyYAML: the property above checks real answers."""
    answered = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(documents())
    def count(text: str) -> None:
        answered.append(check(text))

    count()
    assert sum(answered) >= 100, sum(answered)


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
    st.sampled_from(
        ["yes", "no", "on", "0777", "1_000", "~", "", " x", "x ", "a: b", "#x", "- x", "\n", "é"]
    ),
    st.dates(),
)
KEY_TEXT = st.one_of(st.text(min_size=1, max_size=8), st.sampled_from(["kind", "80", "true", "a.b/c-d"]))
OBJECTS = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEY_TEXT, children, max_size=4)
    ),
    max_leaves=25,
)


@SETTINGS
@given(
    st.dictionaries(KEY_TEXT, OBJECTS, min_size=1, max_size=5),
    st.sampled_from(["ferryman", "pyyaml-block", "pyyaml-mixed", "pyyaml-indent4"]),
)
def test_objects_written_by_emitters_agree_with_pyyaml(value: dict[str, Any], writer: str) -> None:
    if writer == "ferryman":
        text = dump(value)
    else:
        text = yaml.safe_dump(
            value,
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=None if writer == "pyyaml-mixed" else False,
            indent=4 if writer == "pyyaml-indent4" else 2,
        )
    check(text)


def test_emitted_manifests_are_read_without_pyyaml() -> None:
    """What ferryman itself writes (kubectl's layout) is entirely in the reader's part of YAML."""
    job = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "x"}},
        "spec": {
            "trainer": {
                "command": ["torchrun", "--nproc_per_node=4", "train.py"],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "yes"}],
                "resourcesPerNode": {"limits": {"nvidia.com/gpu": 8}},
                "args": ["set -e\npython train.py\n"],
            },
            "suspend": True,
            "podTemplateOverrides": [],
        },
    }
    assert check(dump(job))


def stream_documents(text: str) -> Any:
    """Index, value and span in the stream of each document, or the error's position."""
    try:
        return [
            (d.index, typed(d.data), (d.offset + d.span[0], d.offset + d.span[1]))
            for d in iter_documents(text)
        ]
    except ManifestError as error:
        return ("error", error.line, error.column)


def whole_stream(text: str) -> Any:
    try:
        return [(d.index, typed(d.data), d.span) for d in _composed_documents(text)]
    except ManifestError as error:
        return ("error", error.line, error.column)


SEPARATORS = st.sampled_from(
    ["---\n", "---\n", "--- # c\n", "---  \n", "----\n", "...\n", "--- x\n", "# c\n"]
)


@SETTINGS
@given(st.lists(st.tuples(SEPARATORS, documents()), min_size=1, max_size=4), st.booleans())
def test_streams_split_as_pyyaml_counts_documents(parts: list[tuple[str, str]], lead: bool) -> None:
    text = "".join(separator + document for separator, document in parts)
    if not lead:
        text = text.split("\n", 1)[-1]
    assert stream_documents(text) == whole_stream(text)


@pytest.mark.corpus
def test_corpus_manifests_agree_with_pyyaml(corpus_dir: Path) -> None:
    files = sorted(
        p for p in (corpus_dir / "pytorchjobs").rglob("*") if p.suffix in (".yaml", ".yml", ".json")
    )
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert stream_documents(text) == whole_stream(text), path


def test_values_are_constructed_like_pyyaml() -> None:
    loaded = blockyaml.load("d: 2026-01-02\nt: 2026-01-02T03:04:05Z\nf: -.inf\n")
    assert loaded is not None
    value = loaded[0]
    assert value["d"] == datetime.date(2026, 1, 2)
    assert value["t"] == datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert value["f"] == -math.inf
