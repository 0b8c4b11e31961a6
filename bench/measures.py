"""Pure measures over what a run recorded: percentiles, sync windows, throughput.

The sync window of an order (what the benchmark reports): the time from the load
generator sending the order's webhook until every channel shows, for every SKU of the
order, a quantity at or below what it should show once the ledger has applied that
order and every order sent before it. Several orders of one SKU can be coalesced into
one push; this measure gives each of them its own window, ending at the first push
that covers it. Orders are taken in send order, so an order overtaken by a later one
(two connections, a few milliseconds apart) can be covered a little early; at the
rates measured that is within a millisecond or two.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of values sorted ascending."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarise(values: Iterable[float]) -> dict[str, float]:
    ordered = sorted(values)
    out: dict[str, float] = {"count": float(len(ordered))}
    for name, q in PERCENTILES:
        out[name] = percentile(ordered, q)
    out["max"] = ordered[-1] if ordered else math.nan
    out["mean"] = sum(ordered) / len(ordered) if ordered else math.nan
    return out


@dataclass(frozen=True)
class ChannelSeries:
    """One channel's accepted quantities for one SKU, in the order it received them."""

    times: list[float]
    running_min: list[float]  # negated, so that it is ascending and bisectable

    @classmethod
    def of(cls, changes: Sequence[tuple[float, int]]) -> ChannelSeries:
        times, negated = [], []
        lowest = math.inf
        for received_at, quantity in changes:
            lowest = min(lowest, quantity)
            times.append(received_at)
            negated.append(-lowest)
        return cls(times, negated)

    def first_at_or_below(self, quantity: int) -> float | None:
        index = bisect.bisect_left(self.running_min, -quantity)
        return self.times[index] if index < len(self.times) else None


def order_windows(
    orders: Sequence[tuple[float, Sequence[tuple[str, int]]]],
    start_available: dict[str, int],
    channels: Mapping[str, Mapping[str, Sequence[tuple[float, int]]]],
    expected_on: Callable[[str, str, int], int],
) -> list[float | None]:
    """Sync window (seconds) per order; None where some channel never showed it.

    `orders`: (sent_at, lines) in send order; `channels`: channel -> sku -> (received_at,
    quantity) in arrival order; `expected_on(channel, sku, available)` is what the
    channel should show for that available (the merchant's rules applied).
    """
    series = {c: {sku: ChannelSeries.of(ch) for sku, ch in per_sku.items()} for c, per_sku in channels.items()}
    consumed: dict[str, int] = {}
    windows: list[float | None] = []
    for sent_at, lines in orders:
        latest: float | None = sent_at
        for sku, quantity in lines:
            consumed[sku] = consumed.get(sku, 0) + quantity
            available = start_available[sku] - consumed[sku]
            for channel, per_sku in series.items():
                target = expected_on(channel, sku, available)
                seen = per_sku[sku].first_at_or_below(target) if sku in per_sku else None
                if seen is None:
                    latest = None
                    break
                if latest is not None:
                    latest = max(latest, seen)
            if latest is None:
                break
        windows.append(None if latest is None else latest - sent_at)
    return windows


def throughput(sent_at: Sequence[float], answered_at: Sequence[float]) -> float:
    """Accepted orders per second from the first send to the last answer."""
    if not sent_at:
        return 0.0
    span = max(answered_at) - min(sent_at)
    return len(sent_at) / span if span > 0 else math.nan
