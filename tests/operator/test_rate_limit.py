"""The creation rate limit holds across restarts and spec changes: the token bucket is saved in the policy
status and carried on from there, and a changed rate or burst keeps the tokens left."""

from datetime import UTC, datetime

import pytest

from ferryman.api.cutoverpolicy import CutoverPolicyStatus
from ferryman.controller.cutover import TokenBucket

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC).timestamp()


def test_a_restarted_operator_carries_on_from_the_saved_bucket() -> None:
    running = TokenBucket(rate=1.0, burst=10)
    assert running.take(100, T0) == 10  # the first burst
    written = CutoverPolicyStatus(rate_limiter=running.saved()).model_dump(mode="json", by_alias=True)
    assert written["rateLimiter"]["tokens"] == 0

    saved = CutoverPolicyStatus.model_validate(written).rate_limiter
    restarted = TokenBucket.resumed(1.0, 10, saved)
    assert restarted.take(100, T0 + 3) == 3, "only what the rate refilled meanwhile, no fresh burst"
    assert TokenBucket.resumed(1.0, 10, None).take(100, T0) == 10, "a new policy starts full"


def test_a_lowered_rate_or_burst_grants_no_fresh_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=100)
    assert bucket.take(95, T0) == 95
    slower = bucket.retuned(rate=0.1, burst=20)
    assert slower.take(100, T0 + 10) == 6  # the 5 left and 10 s at 0.1/s
    assert slower.take(100, T0 + 20) == 1
    assert slower.wait() == pytest.approx(10.0)


def test_an_idle_pass_leaves_the_saved_state_alone() -> None:
    bucket = TokenBucket(rate=1.0, burst=5)
    bucket.take(2, T0)
    before = bucket.saved()
    assert bucket.take(0, T0 + 100) == 0
    assert bucket.saved() == before, "no status write on passes that create nothing"
    assert bucket.take(10, T0 + 100) == 5
