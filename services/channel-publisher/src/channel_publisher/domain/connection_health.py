"""A connection's health, pure: when its pushes wait, and what a channel call does to it.

A connection whose calls fail as a whole (every item of the call: the channel down,
credentials refused) `pause_after_failures` times in a row is paused for
`pause_duration_s`: its quantities keep coalescing and nothing is sent. It is paused
unless `resume_at` has passed; then it tries again by itself, and the first call that
does not fail as a whole clears the failures and the pause. A failure while paused
(the trial call after `resume_at`) pauses it again from then, keeping when the pause began.

The push queue's statements (adapters/push_store.py, DUE_SQL and TAKE_SQL) select
due rows with the same rule, `ACCEPTS_PUSHES_SQL`, so that a paused connection's rows
are not even read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# `accepts_pushes` in SQL, over a connection row `c` and the time parameter `{now}`.
ACCEPTS_PUSHES_SQL = "(c.paused_at IS NULL OR c.resume_at <= {now})"


@dataclass(frozen=True)
class ConnectionHealth:
    paused_at: datetime | None = None
    resume_at: datetime | None = None
    consecutive_failures: int = 0

    def accepts_pushes(self, now: datetime) -> bool:
        """Paused unless resume_at has passed."""
        return self.paused_at is None or (self.resume_at is not None and self.resume_at <= now)


@dataclass(frozen=True)
class HealthChange:
    after: ConnectionHealth
    pause_reason: str | None  # set when this call paused the connection
    resumed: bool  # the connection was paused and a call went through

    @property
    def paused(self) -> bool:
        return self.pause_reason is not None


def failed_as_a_whole(*, sent: int, accepted: int, retrying: int, refused: bool) -> bool:
    """Whether a call of `sent` items failed as a whole: nothing was accepted, and the
    channel refused the call (`refused`) or every item must be retried. Items rejected
    one by one are the SKUs' problem, not the connection's."""
    return accepted == 0 and (refused or retrying == sent)


def after_call(
    health: ConnectionHealth,
    *,
    failed_whole: bool,
    now: datetime,
    pause_after_failures: int,
    pause_duration_s: float,
    last_error: str,
) -> HealthChange:
    """What one channel call does to the connection's health."""
    if not failed_whole:
        return HealthChange(ConnectionHealth(), None, resumed=health.paused_at is not None)
    failures = health.consecutive_failures + 1
    if failures < pause_after_failures:
        return HealthChange(ConnectionHealth(health.paused_at, health.resume_at, failures), None, resumed=False)
    paused = ConnectionHealth(health.paused_at or now, now + timedelta(seconds=pause_duration_s), failures)
    reason = f"{failures} failed calls in a row; last: {last_error}"[:2000]
    return HealthChange(paused, reason, resumed=False)
