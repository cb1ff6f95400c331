"""TrainJob creations that follow the live CutoverPolicy and its rate limit.

A pass keeps up to IN_FLIGHT creations under way at once, each started only when the bucket grants it a
token, so the apiserver's round trips overlap instead of holding the rate. Meanwhile a watch on the policy
(from the version the pass planned) follows its spec: once its generation moves (a lowered rate, a new mode,
selector or option) or the policy goes, no further creation starts; those under way end and are counted, and
the pass is planned again at once under the new spec. So a change made while a long pass runs holds from the
next creation, not after the pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import kopf

from ferryman.controller.context import OperatorContext
from ferryman.controller.cutover import Decision, JobPlan, PolicyState
from ferryman.kube.resources import CutoverPolicy

IN_FLIGHT = 10  # creations under way at once; a spec change lets these end and starts no other
WAIT_SECONDS = 1.0  # a pass waits while IN_FLIGHT tokens (or the burst, or what is left) come this soon
PASS_SECONDS = 20.0  # and it ends after this long (the next re-plans every job and writes the whole status)
REPLAN_DELAY = 0.5  # seconds before a pass ended by a spec change is run again

Create = Callable[[JobPlan, Decision], Coroutine[Any, Any, str | None]]


@dataclass
class CreationWindow:
    """The creations a pass may make, started as the live policy's rate limit grants them, waiting for
    tokens while IN_FLIGHT of them (or the burst, or what is left) come within WAIT_SECONDS, until
    PASS_SECONDS are over: at a high rate one pass creates for long, since between passes the bucket holds no
    more than its burst. `granted` counts those started."""

    ctx: OperatorContext
    state: PolicyState
    policy: dict[str, Any]
    creations: list[tuple[JobPlan, Decision]]
    granted: int = 0
    until: float = field(default_factory=lambda: time.monotonic() + PASS_SECONDS)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    why: str = ""  # how the live policy changed, once `changed` is set

    async def run(self, create: Create, progress: Callable[[], Awaitable[None]]) -> list[str]:
        """Create what the rate limit grants (`progress` is awaited after each start) until the live policy
        changes; once every creation under way has ended, the names `create` returned."""
        if not self.creations:
            return []
        slots = asyncio.Semaphore(IN_FLIGHT)
        started: list[asyncio.Task[str | None]] = []
        failed = False

        def ended(task: asyncio.Task[str | None]) -> None:
            nonlocal failed
            failed = failed or task.cancelled() or task.exception() is not None
            slots.release()

        following = asyncio.create_task(self._follow_live_spec())
        try:
            for plan, decision in self.creations:
                await slots.acquire()
                if failed or self.changed.is_set() or not await self._token():
                    break
                self.granted += 1
                task = asyncio.create_task(create(plan, decision))
                task.add_done_callback(ended)
                started.append(task)
                await progress()
        finally:
            results = await asyncio.gather(*started, return_exceptions=True)
            following.cancel()
            await asyncio.wait([following])  # its watch's connection closed
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            raise errors[0]
        return [name for name in results if isinstance(name, str)]

    def raise_if_changed(self) -> None:
        """kopf.TemporaryError when the pass ended at a change of the live policy: plan again at once."""
        if self.changed.is_set():
            raise kopf.TemporaryError(self.why, delay=REPLAN_DELAY)

    async def _token(self) -> bool:
        """Take a token, waiting for it while the pass may; False when the pass should end."""
        bucket = self.state.bucket
        assert bucket is not None
        while not bucket.take(1, time.time()):
            left = len(self.creations) - self.granted
            wanted = (min(IN_FLIGHT, bucket.burst, left) - bucket.tokens) / bucket.rate
            if wanted > WAIT_SECONDS or time.monotonic() + wanted > self.until:
                return False
            with contextlib.suppress(TimeoutError):  # the next token, unless the spec changes first
                await asyncio.wait_for(self.changed.wait(), bucket.wait())
            if self.changed.is_set():
                return False
        return True

    async def _follow_live_spec(self) -> None:
        """Watch the policy from the version planned; set `changed` at a new generation or its deletion (or
        if the watch fails: the spec can no longer be followed, so the pass is planned again)."""
        metadata = self.policy["metadata"]
        name, planned = metadata["name"], metadata.get("generation")
        try:
            async for event, live in self.ctx.client.watch(
                CutoverPolicy, fields={"metadata.name": name}, resource_version=metadata["resourceVersion"]
            ):
                if event == "DELETED":
                    self.why = f"CutoverPolicy {name} was deleted"
                elif (live.metadata and live.metadata.generation) != planned:
                    self.why = f"CutoverPolicy {name} changed during the pass; planning again under it"
                else:
                    continue
                break
        except Exception as error:  # the pass ends and is planned again, from a new watch
            self.why = f"lost the watch on CutoverPolicy {name} during the pass ({type(error).__name__})"
        self.changed.set()
