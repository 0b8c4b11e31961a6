"""A connection's display delay, pure: the time from an order's receipt to the moment the
channel shows the new quantity, summarised over a sliding window, and when to announce it.

Quantiles are nearest-rank over the last samples (the rule engine's `DelayWindow` reads
them the same way); until `min_samples` exist the configured default stands in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@dataclass(frozen=True)
class DisplayDelay:
    p50_s: float
    p95_s: float
    samples: int
    measured: bool

    @classmethod
    def of(cls, samples: Sequence[float], default_s: float, min_samples: int) -> DisplayDelay:
        if len(samples) < min_samples or not samples:
            return cls(default_s, default_s, len(samples), False)
        ordered = sorted(samples)
        return cls(nearest_rank(ordered, 0.50), nearest_rank(ordered, 0.95), len(samples), True)


def should_announce(
    delay: DisplayDelay,
    announced_p95_s: float | None,
    announced_at: datetime | None,
    now: datetime,
    *,
    min_change: float,
    min_interval: timedelta,
) -> bool:
    """Announce a measured delay the first time, then only when its p95 moved by more than
    `min_change` (a fraction, and at least a second) and `min_interval` has passed since the
    last announcement: each announcement re-evaluates the merchant's adaptive SKUs."""
    if not delay.measured:
        return False
    if announced_p95_s is None or announced_at is None:
        return True
    moved = abs(delay.p95_s - announced_p95_s)
    return moved >= max(1.0, min_change * announced_p95_s) and now - announced_at >= min_interval


def next_read_in(reads: int, interval_s: float, max_interval_s: float = 30.0) -> float:
    """When a probe reads the channel again: every `interval_s` at first, slower as it waits.

    The measurement's resolution is this period, so a fast channel is read often and a
    channel that takes minutes costs a read every `max_interval_s` at most."""
    return min(max_interval_s, interval_s * (1 + reads // 10))
