"""envsubst-style placeholders (``$VAR``, ``${VAR}``) that a templated manifest leaves in place of values."""

from __future__ import annotations

import re

_PLACEHOLDER = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*(?:[:?=+-][^}]*)?\})")
_WHOLE = re.compile(rf"^\s*(?:{_PLACEHOLDER.pattern})\s*$")


def contains_placeholder(value: object) -> bool:
    """Whether a string holds at least one envsubst placeholder."""
    return isinstance(value, str) and "$" in value and _PLACEHOLDER.search(value) is not None


def is_placeholder(value: object) -> bool:
    """Whether a value is exactly one placeholder, e.g. ``$NUM_NODES`` or ``${NUM_NODES}``."""
    return isinstance(value, str) and "$" in value and _WHOLE.match(value) is not None


_SECOND_STAGE = re.compile(r"\{\{[^{}]*\}\}")  # filled in later by Argo, Katib or another workflow tool


def contains_second_stage(value: object) -> bool:
    """Whether a string holds a ``{{...}}`` placeholder another tool fills in (Argo, Katib, Helm)."""
    return isinstance(value, str) and "{{" in value and _SECOND_STAGE.search(value) is not None
