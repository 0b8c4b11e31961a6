"""One background loop for every service: run a step until stopped, log a failure, wait.

Every periodic job of the services (pollers, sweeps, the rule schedule, the import
worker, the push scan, drift checks) is a `Periodic`: the runtime starts it with the
other background workers and stops it on shutdown (stocksync_common.runtime).

- A step that fails is logged with the worker's name and tried again at the next tick:
  the database or a channel being down never ends the loop.
- A step that returns True has more work waiting and runs again at once (a backlog is
  worked off without waiting a tick); None or False waits for the next tick.
- `wake()` runs the step now instead of at the next tick; a wake that arrives while the
  step runs is kept, so the step runs once more after it.
- `request_stop()` ends the loop after the step in flight; it never cancels a step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from stocksync_common.runtime import BackgroundWorker

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[bool | None]]


class Periodic(BackgroundWorker):
    """Runs `step` every `interval_s` seconds (sooner when woken) until asked to stop."""

    def __init__(self, name: str, interval_s: float, step: Step) -> None:
        super().__init__(name, self._loop, self._stop)
        self.interval_s = interval_s
        self.step = step
        self._stopping = False
        self._wake = asyncio.Event()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def wake(self) -> None:
        self._wake.set()

    def _stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                more = await self.step()
            except Exception:
                log.exception("background step failed; retrying", extra={"worker": self.name})
                more = False
            if more or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
