"""When to try a failed push again: the channel's Retry-After, or exponential backoff."""

from __future__ import annotations

import random


def retry_delay(attempt: int, retry_after: float | None, *, base: float = 0.2, cap: float = 60.0) -> float:
    """Full-jitter exponential backoff, never sooner than the channel asked."""
    backoff = random.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))
    return max(retry_after or 0.0, backoff)
