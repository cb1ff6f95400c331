"""Handlers that call the API server. Failures that pass (kube.client.transient: the API server unreachable
for a moment, a connection it dropped, an answer saying "try again") are retried with one warning line, never
a traceback: by kopf where kopf retries (timers, change handlers), here where it does not (event handlers, and
the tasks they start). At exit, the operator's cleanup cancels those under way before its client closes."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import kopf

from ferryman.controller.context import context
from ferryman.kube.client import describe_api_failure, transient

RETRY_DELAY = 2.0  # seconds
ATTEMPTS_IN_PLACE = 5  # about 10 s: an API server away longer is an outage, logged as a failure

T = TypeVar("T")
Handler = Callable[..., Awaitable[Any]]


def api_handler(handler: Handler) -> Handler:
    """A kopf handler calling the API server: a transient failure becomes kopf.TemporaryError, and the
    handler is listed in `OperatorContext.handling` while it runs (kopf leaves a timer still running at exit
    orphaned, not cancelled: cleanup cancels it)."""

    @functools.wraps(handler)
    async def handle(**kwargs: Any) -> Any:
        handling, task = context(kwargs["memo"]).handling, asyncio.current_task()
        assert task is not None
        handling.add(task)
        try:
            return await handler(**kwargs)
        except Exception as error:
            if not transient(error):
                raise
            message = f"{describe_api_failure(error)}; retrying"
            raise kopf.TemporaryError(message, delay=RETRY_DELAY) from error
        finally:
            handling.discard(task)

    return handle


async def retried_in_place(
    attempt: Callable[[], Awaitable[T]], what: str, logger: logging.Logger | kopf.Logger
) -> T:
    """`attempt()`, again after a transient failure, up to ATTEMPTS_IN_PLACE times in all."""
    for _ in range(ATTEMPTS_IN_PLACE - 1):
        try:
            return await attempt()
        except Exception as error:
            if not transient(error):
                raise
            logger.warning(f"{what}: {describe_api_failure(error)}; retrying in {RETRY_DELAY:g} s")
        await asyncio.sleep(RETRY_DELAY)
    return await attempt()
