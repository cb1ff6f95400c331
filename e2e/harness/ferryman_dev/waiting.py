"""Polling with a deadline, for the demo and the cluster tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    check: Callable[[], Any],
    what: str,
    timeout: float = 120,
    interval: float = 0.3,
    details: Callable[[], str] | None = None,
) -> Any:
    """The first truthy result of `check`, polled every `interval` seconds; TimeoutError naming `what`
    (and, given `details`, what it says of the state at the deadline)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details else ""
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(interval)
    return result
