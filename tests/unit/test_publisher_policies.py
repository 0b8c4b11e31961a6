"""The publisher's policies as pure decisions, without a database or a channel: when a
failed push is tried again (backoff, Retry-After), how fast a connection may call its
channel (pacing), and which calls count towards pausing the connection.

Pausing and resuming themselves are in test_publisher_connection_health.py; the drain
applying all of them against the real database is tests/integration/test_publisher_drain.py.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channel_publisher.adapters.channels import pacing
from channel_publisher.adapters.channels.pacing import CallPacer
from channel_publisher.domain.backoff import retry_delay
from channel_publisher.domain.connection_health import failed_as_a_whole
from channel_publisher.domain.pushes import TransientChannelError

attempts = st.integers(min_value=1, max_value=64)
retry_afters = st.none() | st.floats(min_value=0, max_value=3600, allow_nan=False)


@given(attempts, retry_afters)
def test_a_retry_waits_at_most_the_capped_exponential_backoff_and_never_less_than_retry_after(
    attempt: int, retry_after: float | None
) -> None:
    delay = retry_delay(attempt, retry_after)
    backoff_bound = min(60.0, 0.2 * 2 ** (attempt - 1))
    assert delay >= (retry_after or 0.0)
    assert delay <= max(retry_after or 0.0, backoff_bound)


def test_the_backoff_doubles_per_attempt_until_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # Full jitter draws from [0, bound]: with the draw at its top the bound shows.
    monkeypatch.setattr("channel_publisher.domain.backoff.random.uniform", lambda low, high: high)
    assert [retry_delay(n, None) for n in range(1, 6)] == [0.2, 0.4, 0.8, 1.6, 3.2]
    assert retry_delay(20, None) == 60.0
    assert retry_delay(20, None, cap=5.0) == 5.0


def test_retry_after_beyond_the_cap_is_honoured() -> None:
    assert retry_delay(1, 120.0) == 120.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(pacing, "time", SimpleNamespace(monotonic=clock.monotonic))
    return clock


def test_a_connection_with_a_minimum_interval_waits_that_long_after_each_call(clock: Clock) -> None:
    pacer = CallPacer(None, min_interval_s=60.0)
    assert pacer.ready_in() == 0.0  # no call yet
    asyncio.run(pacer.acquire())
    assert pacer.ready_in() == 60.0
    clock.now += 45
    assert pacer.ready_in() == 15.0
    clock.now += 15
    assert pacer.ready_in() == 0.0


def test_retry_after_holds_every_call_off_until_it_has_passed_and_only_lengthens(clock: Clock) -> None:
    pacer = CallPacer(None)
    pacer.hold_off(30.0)
    assert pacer.ready_in() == 30.0
    pacer.hold_off(5.0)  # a shorter Retry-After does not shorten the hold
    assert pacer.ready_in() == 30.0
    pacer.hold_off(None)
    assert pacer.ready_in() == 30.0
    clock.now += 30
    assert pacer.ready_in() == 0.0


def test_a_call_queued_behind_the_rate_limit_when_retry_after_arrives_fails_fast(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the clock frozen, the Retry-After still holds once acquire() has slept out
    # ready_in(): the call must not go out inside the window, and says how long is left.
    async def no_sleep(_: float) -> None:
        return None

    monkeypatch.setattr(pacing, "asyncio", SimpleNamespace(sleep=no_sleep))

    async def scenario() -> float | None:
        pacer = CallPacer(requests_per_second=1000.0, burst=10)
        await pacer.acquire()
        pacer.hold_off(20.0)
        try:
            await pacer.acquire()
        except TransientChannelError as exc:
            return exc.retry_after
        return None

    assert asyncio.run(scenario()) == 20.0


def test_a_call_fails_as_a_whole_only_when_nothing_was_accepted_and_the_channel_refused_or_everything_retries() -> None:
    assert failed_as_a_whole(sent=3, accepted=0, retrying=3, refused=False)  # 503 for the call
    assert failed_as_a_whole(sent=3, accepted=0, retrying=0, refused=True)  # the call refused (401)
    assert not failed_as_a_whole(sent=3, accepted=1, retrying=2, refused=False)  # one went through
    # Items rejected one by one are the SKUs' problem: the connection is healthy.
    assert not failed_as_a_whole(sent=3, accepted=0, retrying=0, refused=False)
    assert not failed_as_a_whole(sent=3, accepted=0, retrying=2, refused=False)
