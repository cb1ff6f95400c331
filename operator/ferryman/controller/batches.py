"""TrainJob creations in batches that follow the live CutoverPolicy.

Before each batch the policy is read from the API server: if its spec changed (a lowered rate, a new mode,
selector or option), the pass ends there and is planned again at once under the new spec. So a change made
while a long pass runs takes effect at the next batch, not after the pass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import kopf
from lightkube import ApiError

from ferryman.controller.context import OperatorContext
from ferryman.controller.cutover import Decision, JobPlan, PolicyState
from ferryman.kube.resources import CutoverPolicy

BATCH_SIZE = 10  # creations between two reads of the live policy
WAIT_SECONDS = 1.0  # a pass waits this long at most for a batch's tokens; a longer wait ends it
PASS_SECONDS = 20.0  # and it ends after this long (the next re-plans every job and writes the whole status)
REPLAN_DELAY = 0.5  # seconds before a pass ended by a spec change is run again


@dataclass
class CreationBatches:
    """The creations a pass may make, yielded in batches as the live policy's rate limit grants them (the
    next batch is granted once the caller is done with this one), waiting for tokens while each wait is
    under WAIT_SECONDS, until PASS_SECONDS are over: at a high rate one pass creates for long, since between
    passes the bucket holds no more than its burst. `granted` counts those yielded. Raises
    kopf.TemporaryError when the policy's spec changed."""

    ctx: OperatorContext
    state: PolicyState
    policy: dict[str, Any]
    creations: list[tuple[JobPlan, Decision]]
    granted: int = 0
    until: float = field(default_factory=lambda: time.monotonic() + PASS_SECONDS)

    async def __aiter__(self) -> AsyncIterator[list[tuple[JobPlan, Decision]]]:
        while self.granted < len(self.creations):
            await self._follow_live_spec()
            assert self.state.bucket is not None
            wanted = min(BATCH_SIZE, len(self.creations) - self.granted)
            allowed = self.state.bucket.take(wanted, time.time())
            if allowed:
                self.granted += allowed
                yield self.creations[self.granted - allowed : self.granted]
            if allowed < wanted:  # wait for a batch's worth of tokens (or what is left), within the pass
                bucket, left = self.state.bucket, len(self.creations) - self.granted
                wait = (min(BATCH_SIZE, bucket.burst, left) - bucket.tokens) / bucket.rate
                if wait > WAIT_SECONDS or time.monotonic() + wait > self.until:
                    return
                await asyncio.sleep(wait)

    async def _follow_live_spec(self) -> None:
        name = self.policy["metadata"]["name"]
        try:
            live = (await self.ctx.client.get(CutoverPolicy, name)).to_dict()
        except ApiError as error:
            if error.status.code == 404:
                raise kopf.TemporaryError(f"CutoverPolicy {name} was deleted", delay=REPLAN_DELAY) from error
            raise
        if live["metadata"].get("generation") != self.policy["metadata"].get("generation"):
            message = f"CutoverPolicy {name} changed during the pass; planning again with its new spec"
            raise kopf.TemporaryError(message, delay=REPLAN_DELAY)
