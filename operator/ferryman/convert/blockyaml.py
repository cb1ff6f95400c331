"""A fast reader for the block-style YAML that manifests are written in, with PyYAML's exact results.

libyaml's parser builds a node object and calls back into Python for every scalar, which makes parsing cost
more than converting. Manifests use a small part of YAML: block mappings and sequences, single-line plain and
quoted scalars, literal blocks, empty and one-line flow sequences, comments. This module reads that part
line by line and returns what PyYAML's safe loader returns, plain scalars resolved by PyYAML's own implicit
resolvers and constructors (YAML 1.1: `yes` is true, `0777` is octal). Anything else in a document (anchors,
aliases, tags, merge keys, folded or multi-line scalars, flow mappings, escapes beyond the common ones,
tabs, unusual indentation, a duplicate key or an error) makes `load` return None, and the caller parses that
document with PyYAML: this reader only ever answers when it is sure. An integer Kubernetes would refuse under
its key (`replicas: 10**30`) raises `NumberOutOfRange` naming the line. `tests/convert/test_blockyaml.py`
checks it against PyYAML on generated and corpus manifests.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from ferryman.api.numbers import integer_problem

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{kind}" for kind in ("null", "bool", "int", "float", "timestamp")
)
_IMPLICIT = {
    first: [*resolvers, *_Loader.yaml_implicit_resolvers.get(None, [])]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
    if first is not None
}
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


class _Unsupported(Exception):
    """The document uses YAML this reader leaves to PyYAML."""


class NumberOutOfRange(ValueError):
    """An integer Kubernetes would refuse under its key (`api.numbers`); `line` is 0-based in the document."""

    def __init__(self, problem: str, line: int = 0) -> None:
        super().__init__(problem)
        self.problem, self.line = problem, line


# A one-line plain scalar in block context: no indicator first; `:` only before a non-space, `#` only after
# a non-space, spaces only between words; no tab.
_PLAIN = r"(?:[^-?:,\[\]{}#&*!|>'\"%@`\s]|[-?:](?=\S))(?:[^\s:#]+|:(?=\S)|#| +(?=[^\s#:]|:\S))*+"
_DOUBLE = r'"(?:[^"\\\n]+|\\["\\/bfnrt])*+"'  # one line, JSON's escapes only
_SINGLE = r"'(?:[^'\n]+|'')*+'"
# Every line of a document, one match each: indentation, `- `, key (quotes kept) with its `: `, then one of
# a plain, double- or single-quoted scalar, or a `|` header, `[]`, `{}` or one-line flow sequence; then
# spaces and a comment. Group 8 takes any other line whole.
_LINE = re.compile(
    rf"^(?:( *)(-(?: +|$))?(?:({_PLAIN}|{_DOUBLE}|{_SINGLE}):(?: +|$))?"
    rf"(?:({_PLAIN})|({_DOUBLE})|({_SINGLE})|(\|[-+]?|\[\]|\{{\}}|\[[^\[\]{{}}]*\]))?"
    r"(?: *(?<![^ ])#.*| *)|(.*))$"
)
_ESCAPES = {f"\\{escape}": value for escape, value in zip('"\\/bfnrt', '"\\/\b\f\n\r\t', strict=True)}
_ESCAPE = re.compile(r"\\.")
# A plain scalar in a flow sequence: no `:` at all, and it also ends at `,`, `[`, `]`, `{` and `}`.
_FLOW_PLAIN = r"(?:[^-?:,\[\]{}#&*!|>'\"%@`\s]|-(?=[^\s,\[\]{}]))(?:[^\s:#,\[\]{}]+|#| +(?=[^\s#,\[\]{}]))*+"
_FLOW_ITEM = re.compile(rf" *(?:({_DOUBLE})|({_SINGLE})|({_FLOW_PLAIN})) *(,|\])")
_MARKER_LINE = re.compile(r"^(?:---|\.\.\.)(?:[ \t].*)?$", re.MULTILINE)
# Line breaks other than \n, byte order marks, and what PyYAML refuses as non-printable.
_UNUSUAL = re.compile(
    "[^\x09\x0a\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)

_TAGS: dict[str, str] = {}  # plain scalar -> its tag; manifests repeat most of their values
_RESOLVED: dict[str, Any] = {}  # plain scalar -> its value
_MISSING = object()


def plain_tag(text: str) -> str:
    """The tag PyYAML's safe loader resolves a plain scalar to (in one lookup for a scalar seen before)."""
    tag = _TAGS.get(text)
    if tag is None:
        tag = next((t for t, regexp in _IMPLICIT.get(text[:1], ()) if regexp.match(text)), _STR_TAG)
        if len(_TAGS) < 65536 and len(text) < 256:
            _TAGS[text] = tag
    return tag


def _plain_value(text: str) -> Any:
    """A plain scalar's value, resolved and constructed as PyYAML's safe loader does."""
    value = _RESOLVED.get(text, _MISSING)
    if value is _MISSING:
        tag = plain_tag(text)
        if tag == _STR_TAG:
            value = text
        elif tag in _SCALAR_TAGS:
            value = _CONSTRUCTOR.construct_object(yaml.ScalarNode(tag, text))
        else:
            raise _Unsupported(f"plain scalar {text!r} resolves to {tag}")
        if len(_RESOLVED) < 65536 and len(text) < 256:
            _RESOLVED[text] = value
    return value


def _unescape(match: re.Match[str]) -> str:
    return _ESCAPES[match.group()]


def _quoted(text: str) -> str:
    """The value of a quoted scalar matched by `_DOUBLE` or `_SINGLE` (quotes included)."""
    body = text[1:-1]
    if text[0] == "'":
        return body.replace("''", "'")
    return _ESCAPE.sub(_unescape, body) if "\\" in body else body


def split_stream(text: str) -> list[tuple[int, int]] | None:
    """Where each document of a stream is, as PyYAML counts documents: every `---` line starts one, and text
    before the first is one when it holds more than comments. None when the stream has directives, `...`
    end markers, content on a `---` line or characters PyYAML reads differently (left to PyYAML)."""
    if text.startswith("%") or "\n%" in text or _UNUSUAL.search(text):
        return None
    pieces: list[tuple[int, int]] = []
    start, marked = 0, False
    for marker in _MARKER_LINE.finditer(text):
        line = marker.group()
        if line.startswith("...") or line[3:].lstrip(" \t")[:1] not in ("", "#"):
            return None
        if marked or _has_content(text[start : marker.start()]):
            pieces.append((start, marker.start()))
        start, marked = min(marker.end() + 1, len(text)), True
    if marked or _has_content(text[start:]):
        pieces.append((start, len(text)))
    return pieces


def _has_content(text: str) -> bool:
    return any(line.strip() and not line.lstrip().startswith("#") for line in text.split("\n"))


def load(text: str) -> tuple[Any, int, int] | None:
    """One document's value and the span of its content in `text` (leading and trailing comment and blank
    lines excluded, as PyYAML's node marks give it), or None when the document is PyYAML's to read."""
    if _UNUSUAL.search(text):
        return None
    lines = text.split("\n")
    try:
        found = _build(lines)
    except _Unsupported:
        return None
    if found is None:
        return None
    root, first, last = found
    start = sum(map(len, lines[:first])) + first
    return root, start, min(start + sum(map(len, lines[first : last + 1])) + last + 1 - first, len(text))


# What a line says, read once per distinct line (manifests repeat most of theirs):
# (indentation, length of its `- ` or 0, key or _NO_KEY, kind, scalar value or literal header or flow items)
_Token = tuple[int, int, Any, int, Any]
_SKIP, _SCALAR, _EMPTY, _LITERAL, _FLOW, _EMPTY_MAP = range(6)
_NO_KEY = object()
_TOKENS: dict[str, _Token] = {}


def _token(line: str) -> _Token:
    match = _LINE.match(line)
    assert match is not None  # the last alternative takes any line
    indent, dash, key, plain, double, single, special, other = match.groups()
    if other is not None:
        raise _Unsupported(f"line {line!r}")
    dash_length = len(dash) if dash else 0
    if key is None:
        key_value = _NO_KEY
        if not (dash or plain or double or single or special):
            return 0, 0, _NO_KEY, _SKIP, None  # blank or comment
    elif key[0] in "\"'":
        key_value = _quoted(key)
    else:
        key_value = _plain_value(key)
        if not isinstance(key_value, (str, int)):
            raise _Unsupported(f"key {key!r}")
    if plain is not None:
        kind, value = _SCALAR, _plain_value(plain)
        if value.__class__ is int and key_value is not _NO_KEY:
            problem = integer_problem(key_value, value)
            if problem is not None:
                raise NumberOutOfRange(problem)
    elif double is not None or single is not None:
        kind, value = _SCALAR, _quoted(double or single)
    elif special is None:
        kind, value = _EMPTY, None
    elif special[0] == "|":
        kind, value = _LITERAL, special
    elif special == "{}":
        kind, value = _EMPTY_MAP, None
    else:
        kind, value = _FLOW, () if special == "[]" else tuple(_flow_sequence(special))
    token = (len(indent), dash_length, key_value, kind, value)
    if len(_TOKENS) < 65536 and len(line) < 256:
        _TOKENS[line] = token
    return token


def _build(lines: list[str]) -> tuple[Any, int, int] | None:
    """The root value, its first line and its last line."""
    tokens, skip, no_key = _TOKENS, _SKIP, _NO_KEY
    root: Any = None
    # Open collections, innermost last: (indentation, container, is a sequence, is an indentless sequence).
    stack: list[tuple[int, Any, bool, bool]] = []
    # An entry with nothing after its `:` or `-`, waiting for a nested block: (container, key, indentation,
    # whether an indentless sequence may follow).
    slot: tuple[Any, Any, int, bool] | None = None
    first = last = -1
    skip_to = 0  # lines of a block scalar already read
    for index, line in enumerate(lines):
        if index < skip_to:
            continue
        token = tokens.get(line)
        if token is None:
            try:
                token = _token(line)
            except NumberOutOfRange as error:
                raise NumberOutOfRange(error.problem, index) from None
        column, dash, key, kind, value = token
        if kind is skip:
            continue
        if not dash and key is no_key:
            raise _Unsupported("a scalar on a line of its own")
        if root is None:
            if column:
                raise _Unsupported("the root is not at column 0")
            root = [] if dash else {}
            stack.append((0, root, bool(dash), False))
            first = index
        if slot is not None:
            container, slot_key, owner, indentless = slot
            slot = None
            if column > owner or (dash and indentless and column == owner):
                nested: Any = [] if dash else {}
                container[slot_key] = nested
                stack.append((column, nested, bool(dash), column == owner))
        if dash:
            top = stack[-1]
            while top[0] > column:
                stack.pop()
                if not stack:
                    raise _Unsupported("indentation")
                top = stack[-1]
            if top[0] != column or not top[2]:
                raise _Unsupported("indentation")
            sequence = top[1]
            if key is not no_key:
                container = {}
                sequence.append(container)
                column += dash
                stack.append((column, container, False, False))
            else:
                container, key = sequence, len(sequence)
                sequence.append(None)
        else:
            top = stack[-1]
            while top[0] > column or (top[3] and top[0] == column):
                stack.pop()
                if not stack:
                    raise _Unsupported("indentation")
                top = stack[-1]
            if top[0] != column or top[2]:
                raise _Unsupported("indentation")
            container = top[1]
            if key in container:
                raise _Unsupported("duplicate key")  # PyYAML's reading names both lines
        if kind == _SCALAR:
            container[key] = value
        elif kind == _EMPTY:
            container[key] = None
            slot = (container, key, column, not dash or container is not sequence)
            last = index
            continue
        elif kind == _LITERAL:
            container[key], skip_to, end = _literal(lines, index, column, value)
            last = end
            continue
        elif kind == _FLOW:
            container[key] = list(value)
        else:
            container[key] = {}
        last = index
    if root is None:
        return None
    return root, first, last


def _flow_sequence(text: str) -> list[Any]:
    """The items of a one-line flow sequence of scalars (`[python, "train.py"]`)."""
    items: list[Any] = []
    position = 1
    while True:
        match = _FLOW_ITEM.match(text, position)
        if match is None:
            raise _Unsupported("flow sequence")
        double, single, plain, delimiter = match.groups()
        items.append(_quoted(double or single) if double or single else _plain_value(plain))
        position = match.end()
        if delimiter == "]":
            if position != len(text):
                raise _Unsupported("flow sequence")
            return items


def _literal(lines: list[str], index: int, indent: int, header: str) -> tuple[str, int, int]:
    """A `|`, `|-` or `|+` block scalar whose lines follow line `index`: its value, the first line after
    it and its last line with content."""
    count = len(lines)
    first = index + 1
    if first >= count:
        raise _Unsupported("block scalar at the end")
    line = lines[first]
    stripped = line.lstrip(" ")
    if not stripped.strip(" \t"):
        raise _Unsupported("block scalar starting with a blank line")
    content = len(line) - len(stripped)
    if content <= indent:
        raise _Unsupported("empty block scalar")
    body: list[str] = []
    end = first
    while end < count:
        line = lines[end]
        stripped = line.lstrip(" ")
        if stripped and len(line) - len(stripped) < content:
            break
        if line[content : content + 1] == "\t":
            raise _Unsupported("tab at the start of a block scalar line")
        body.append(line[content:])
        end += 1
    if end == count:
        if body[-1] != "":
            raise _Unsupported("block scalar without a final line break")
        body.pop()  # the text's final line break is not an empty line
    trailing = 0
    while body and body[-1] == "":
        body.pop()
        trailing += 1
    last = first + len(body) - 1
    while not lines[last].strip():
        last -= 1
    text = "\n".join(body)
    if header == "|-":
        return text, end, last
    if header == "|+":
        return text + "\n" * (trailing + 1), end, last
    return text + "\n", end, last
