"""A fast block-style YAML writer for Kubernetes objects (JSON-like data), kubectl's layout.

PyYAML's representer and emitter are pure Python and cost more than the conversion itself; this writer
handles what manifests hold (mappings, sequences, strings, numbers, booleans, null, timestamps) directly,
and hands anything else to PyYAML. Strings are written plain only when PyYAML's own implicit resolvers
read them back as the same string; multi-line strings become literal blocks when that is lossless,
otherwise double-quoted. `yaml.safe_load(dump(x)) == x` holds for every input (see tests).
"""

from __future__ import annotations

import datetime
import json
import math
import re
from functools import lru_cache
from typing import Any

import yaml

_RESOLVERS = yaml.resolver.Resolver.yaml_implicit_resolvers
_PLAIN = re.compile(
    r"(?:[A-Za-z0-9_./$(~+=^\u00a1-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffc]|-(?=[^\s]))"
    r"[^\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]*"
)
_UNSAFE_IN_PLAIN = (": ", " #", "\t")
_BLOCK_SAFE = re.compile(r"[^\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\r]*")
_NOT_PRINTABLE = re.compile(r"[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


class Placeholder(str):
    """A template placeholder standing for a number, written bare (`numNodes: $NUM_NODES`)."""

    __slots__ = ()


class _Fallback(Exception):
    """A value this writer does not handle: the caller uses PyYAML."""


def _quoted(value: str) -> str:
    """Double-quoted, escaping only what YAML cannot hold raw (so astral characters stay as they are)."""
    return _NOT_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False))


@lru_cache(maxsize=8192)
def _string(value: str) -> str:
    """A string as a plain scalar when it reads back as the same string, else double-quoted."""
    return value if _plain_ok(value) else _quoted(value)


def _plain_ok(value: str) -> bool:
    if not _PLAIN.fullmatch(value) or value.endswith((" ", ":")) or any(u in value for u in _UNSAFE_IN_PLAIN):
        return False
    return not any(regexp.match(value) for _, regexp in _RESOLVERS.get(value[0], ()))


def scalar(value: Any, quote_placeholders: bool = False) -> str:
    """One scalar on one line (strings with line breaks are double-quoted here)."""
    if type(value) is str:
        return _quoted(value) if quote_placeholders and "$" in value else _string(value)
    if isinstance(value, str):  # a Placeholder: bare
        return _string(str(value))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        return text.replace("e", ".0e", 1) if "." not in text and "e" in text else text
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ") if value.tzinfo is None else value.isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    raise _Fallback(type(value).__name__)


def _literal(value: str, indent: str) -> list[str] | None:
    """`|` block lines for a multi-line string, or None when a literal block would not read back the same.
    A first line starting with a space or empty gets an explicit indentation indicator (`|2-`)."""
    body = value.rstrip("\n")
    if not body or not _BLOCK_SAFE.fullmatch(value):
        return None
    trailing = len(value) - len(body)
    header = "|-" if trailing == 0 else "|" if trailing == 1 else "|+"
    if value.startswith((" ", "\n")):
        header = f"|2{header[1:]}"
    lines = [indent + line if line else "" for line in body.split("\n")]
    lines.extend("" for _ in range(trailing - 1))
    return [header, *lines]


def _emit(value: Any, indent: str, out: list[str], quote: bool) -> None:
    """Append the lines of a non-empty mapping or sequence, at `indent`. Plain dicts, lists and one-line
    strings, most of a manifest, are written here directly; anything else goes through `_emit_child`."""
    if isinstance(value, dict):
        for key, child in value.items():
            head = f"{indent}{_string(key) if type(key) is str and not quote else scalar(key, quote)}:"
            kind = type(child)
            if kind is str and not quote and "\n" not in child:
                out.append(f"{head} {_string(child)}")
            elif kind is dict and child:
                out.append(head)
                _emit(child, indent + "  ", out, quote)
            else:
                _emit_child(head, child, indent, out, quote, key_in_mapping=True)
    else:
        for child in value:
            kind = type(child)
            if kind is str and not quote and "\n" not in child:
                out.append(f"{indent}- {_string(child)}")
            elif kind is dict and child:
                start = len(out)
                _emit(child, indent + "  ", out, quote)
                out[start] = f"{indent}- {out[start][len(indent) + 2 :]}"
            else:
                _emit_child(f"{indent}-", child, indent, out, quote, key_in_mapping=False)


def _emit_child(
    head: str, child: Any, indent: str, out: list[str], quote: bool, key_in_mapping: bool
) -> None:
    if isinstance(child, dict) and child:
        if key_in_mapping:
            out.append(head)
            _emit(child, indent + "  ", out, quote)
        else:
            start = len(out)
            _emit(child, indent + "  ", out, quote)
            out[start] = f"{head} {out[start][len(indent) + 2 :]}"
    elif isinstance(child, list) and child:
        out.append(head)
        _emit(child, indent if key_in_mapping else indent + "  ", out, quote)
    elif isinstance(child, dict):
        out.append(f"{head} {{}}")
    elif isinstance(child, list):
        out.append(f"{head} []")
    elif isinstance(child, str) and "\n" in child:
        block = _literal(child, indent + "  ")
        if block is None:
            out.append(f"{head} {_quoted(child)}")
        else:
            out.append(f"{head} {block[0]}")
            out.extend(block[1:])
    else:
        out.append(f"{head} {scalar(child, quote)}")


def dump(value: Any, quote_placeholders: bool = False) -> str:
    """One YAML document for `value`, block style, keys in their order. `quote_placeholders` double-quotes
    strings holding `$` (so that envsubst keeps them strings), except :class:`Placeholder` values."""
    try:
        if isinstance(value, (dict, list)) and value:
            out: list[str] = []
            _emit(value, "", out, quote_placeholders)
            return "\n".join(out) + "\n"
        if isinstance(value, (dict, list)):
            return json.dumps(value) + "\n"  # {} or []
        return scalar(value, quote_placeholders) + "\n"
    except _Fallback:
        return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False)
