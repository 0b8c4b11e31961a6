"""How fast a connection may call its channel: a rate (aiolimiter), a minimum interval
between calls (Mirakl: once a minute), and the pause a Retry-After imposes.

One pacer per connection lives as long as the adapter, so the limits hold across batches.
The publisher asks `ready_in()` before taking rows, so a connection that must wait does
not hold row locks while it waits; short waits inside a batch go through `acquire()`.
"""

from __future__ import annotations

import asyncio
import time

from aiolimiter import AsyncLimiter

from channel_publisher.domain.pushes import TransientChannelError


class CallPacer:
    def __init__(self, requests_per_second: float | None, burst: int = 1, min_interval_s: float = 0.0) -> None:
        self._limiter = (
            AsyncLimiter(max(1, burst), max(1, burst) / requests_per_second) if requests_per_second else None
        )
        self._min_interval = min_interval_s
        self._last_call: float | None = None
        self._held_until = 0.0

    def ready_in(self) -> float:
        """Seconds until a call is allowed by the minimum interval and any Retry-After."""
        now = time.monotonic()
        wait = self._held_until - now
        if self._min_interval and self._last_call is not None:
            wait = max(wait, self._last_call + self._min_interval - now)
        return max(0.0, wait)

    async def acquire(self) -> None:
        delay = self.ready_in()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._limiter is not None:
            await self._limiter.acquire()
            # Calls queued behind the limiter when a Retry-After arrived must not go out
            # inside that window: they fail fast and their rows wait outside the transaction.
            held = self._held_until - time.monotonic()
            if held > 0:
                raise TransientChannelError("held off by the channel's Retry-After", held)
        self._last_call = time.monotonic()

    def hold_off(self, seconds: float | None) -> None:
        """The channel said to come back later: no call before then."""
        if seconds:
            self._held_until = max(self._held_until, time.monotonic() + seconds)


class Paced:
    """An adapter whose readiness is its connection's pacer's: the publisher takes no rows
    for it while `ready_in()` is above zero."""

    pacer: CallPacer

    def ready_in(self) -> float:
        return self.pacer.ready_in()
