"""The adaptive buffer, pure: how many units to hide from one channel, and the estimators it reads.

A channel C oversells when its listing is stale: another channel sold, the ledger moved,
and C still shows the old quantity until it has applied the new one (its measured delay,
from the order's receipt to the moment C shows the change). The units at risk are the
ones the *other* channels sell during that delay. The adaptive buffer hides exactly that
many from C, at a confidence the merchant chooses:

    hidden(C) = clamp(PoissonQuantile(confidence, sum(rate(c) for c != C) * delay_p95(C)),
                      minimum, maximum)

so a slow channel hides the last units earlier than a fast one, and a SKU that sells
rarely (expected sales during the delay well under 1 - confidence) hides nothing.

- `DecayedRate` is a SKU's sales rate on one channel (units per second), exponentially
  decayed with time constant `tau_s`, updated in O(1) on each order movement: no scan of
  the ledger ever recomputes it. A merchant-set floor (launch, sales day) is applied by
  the caller with `max`.
- `DelayWindow` keeps the last N measured delays of one connection and answers p50 and
  p95, or the configured default until it holds `min_samples`.

Nothing here reads a clock: every moment is passed in, as seconds (any fixed epoch).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

# A Poisson quantile is searched up to this many units; beyond it the clamp decides.
MAX_SEARCHED_UNITS = 10_000


@dataclass(frozen=True)
class DecayedRate:
    """Units per second, decayed with time constant `tau_s` since the last observation.

    After an observation of n units at t, the rate is `rate * exp(-(t - at) / tau) + n / tau`:
    a steady flow of r units per second converges to r, and a SKU that stops selling
    decays to a third of its rate every `tau_s` seconds.
    """

    rate: float = 0.0
    at: float | None = None

    def value_at(self, at: float, tau_s: float) -> float:
        if self.at is None or self.rate == 0.0:
            return 0.0
        return self.rate * math.exp(-max(0.0, at - self.at) / tau_s)

    def observe(self, units: int, at: float, tau_s: float) -> DecayedRate:
        """The rate after `units` sold at `at`; an observation older than the last one decays backwards."""
        if self.at is not None and at < self.at:
            # A late movement: add its weight as it would count at the newer moment.
            return DecayedRate(self.rate + units / tau_s * math.exp(-(self.at - at) / tau_s), self.at)
        return DecayedRate(self.value_at(at, tau_s) + units / tau_s, at)


class DelayWindow:
    """The last `size` measured delays of one connection (seconds); quantiles with a default until warm."""

    def __init__(self, default_s: float, size: int = 200, min_samples: int = 20) -> None:
        if size < 1 or min_samples < 1 or min_samples > size:
            raise ValueError("need 1 <= min_samples <= size")
        self.default_s = default_s
        self.min_samples = min_samples
        self.samples: deque[float] = deque(maxlen=size)
        self._sorted: list[float] | None = None

    def record(self, delay_s: float) -> None:
        self.samples.append(max(0.0, delay_s))
        self._sorted = None

    def extend(self, delays: Iterable[float]) -> None:
        for d in delays:
            self.record(d)

    @property
    def measured(self) -> bool:
        return len(self.samples) >= self.min_samples

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile of the window (q in [0, 1]); the default while too few samples exist."""
        if not self.measured:
            return self.default_s
        if self._sorted is None:
            self._sorted = sorted(self.samples)
        ordered = self._sorted
        rank = max(1, math.ceil(q * len(ordered)))
        return ordered[rank - 1]

    @property
    def p50(self) -> float:
        return self.quantile(0.50)

    @property
    def p95(self) -> float:
        return self.quantile(0.95)


def poisson_quantile(expected: float, confidence: float) -> int:
    """The smallest k with P(X <= k) >= confidence for X ~ Poisson(expected)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    if expected <= 0.0:
        return 0
    term = math.exp(-expected)
    if term == 0.0:  # so many units that the normal approximation is exact enough
        return math.ceil(expected + 4.0 * math.sqrt(expected))
    cumulative = term
    k = 0
    while cumulative < confidence and k < MAX_SEARCHED_UNITS:
        k += 1
        term *= expected / k
        cumulative += term
    return k


# Bounds of the action's parameters (the rules API refuses anything outside them).
MAX_HIDDEN_UNITS = 1_000
MAX_FLOOR_PER_HOUR = 100_000.0


@dataclass(frozen=True)
class AdaptiveBuffer:
    """The rule action's parameters: confidence in percent (50-99.99), bounds on what is
    hidden, and a floor on the SKU's sales rate (units per hour) that the merchant sets for
    a launch or a sales day, when the measured rate cannot know yet (0: none)."""

    confidence_pct: float = 95.0
    minimum: int = 0
    maximum: int = 10
    floor_per_hour: float = 0.0

    def __post_init__(self) -> None:
        if not 50.0 <= self.confidence_pct <= 99.99:
            raise ValueError("confidence_pct must be between 50 and 99.99")
        if not 0 <= self.minimum <= self.maximum <= MAX_HIDDEN_UNITS:
            raise ValueError(f"need 0 <= minimum <= maximum <= {MAX_HIDDEN_UNITS}")
        if not 0.0 <= self.floor_per_hour <= MAX_FLOOR_PER_HOUR:
            raise ValueError(f"floor_per_hour must be between 0 and {MAX_FLOOR_PER_HOUR:g}")

    def rate(self, exposure: Exposure) -> float:
        """Units per second: the measured rate, or the merchant's floor when higher."""
        return max(exposure.total_rate, self.floor_per_hour / 3600)

    def expected(self, exposure: Exposure, connection_id: object) -> float:
        """Units expected to sell while this channel's listing is stale (see `Exposure.expected_elsewhere`)."""
        return self.rate(exposure) * exposure.delay(connection_id)

    def hidden(self, expected_elsewhere: float) -> int:
        units = poisson_quantile(expected_elsewhere, self.confidence_pct / 100)
        return max(self.minimum, min(self.maximum, units))

    def document(self) -> dict[str, float | int]:
        return {
            "confidence_pct": self.confidence_pct,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "floor_per_hour": self.floor_per_hour,
        }


@dataclass(frozen=True)
class Exposure:
    """For one SKU at one moment: each channel's sales rate (units/s) and each channel's delay (s).

    `delays` holds the p95 delay per connection; a connection without one uses `default_delay_s`.
    """

    rates: Mapping[object, float]
    delays: Mapping[object, float]
    default_delay_s: float = 120.0

    @classmethod
    def of_total(cls, total_rate: float, delays: Mapping[object, float], default_delay_s: float) -> Exposure:
        """An exposure from the SKU's total rate (all the decision reads of the rates)."""
        return cls({None: total_rate}, delays, default_delay_s)

    def delay(self, connection_id: object) -> float:
        return self.delays.get(connection_id, self.default_delay_s)

    @cached_property
    def total_rate(self) -> float:
        return sum(self.rates.values())

    def rate_elsewhere(self, connection_id: object) -> float:
        return max(0.0, self.total_rate - self.rates.get(connection_id, 0.0))

    def expected_elsewhere(self, connection_id: object) -> float:
        """Units sold while this channel's listing is stale: the other channels' sales, and its own.

        Its own count too: a quantity computed before the channel's own sale and applied
        after it overwrites the channel's decrement, so that sale is at risk as well.
        """
        return self.total_rate * self.delay(connection_id)


NO_EXPOSURE = Exposure({}, {})


@dataclass(frozen=True)
class Estimation:
    """How the service estimates: the rate's time constant and the delay until one is measured."""

    tau_s: float = 1800.0
    default_delay_s: float = 120.0


# A rate below this many units per hour counts as none (its row can be dropped): the
# rounding of `rate_per_hour` below makes it 0 anyway.
NEGLIGIBLE_PER_HOUR = 0.0005


def rate_per_hour(rate_per_s: float) -> float:
    """The rate as decisions read it: units per hour, rounded to 3 decimals, so that the event
    path and a re-evaluation (which computes it in SQL) decide from the same figure."""
    return round(rate_per_s * 3600, 3)


def sale_of(causation_id: str, channel_types: Iterable[str], before: int | None, after: int) -> tuple[str, int] | None:
    """The channel (its type) and units of a sale, from a stock change's causation and levels.

    An order movement's causation id starts with its channel type (`shopify:<order>:<line>:
    placed`); the units sold are the drop of the available quantity since the last version
    applied (a cancel or a shipment does not lower it). Anything else (an adjustment, an
    import, a first sight of the SKU) is no sale. The decision reads only the SKU's total
    rate, so which of a merchant's connections of one type sold does not matter.
    """
    if before is None or after >= before:
        return None
    channel, _, rest = causation_id.partition(":")
    if channel not in channel_types or not rest:
        return None
    return channel, before - after


NOTHING_HIDDEN = "adaptive buffer hid nothing: too few sales elsewhere while this channel is stale"


def explain(hidden: int, exposure: Exposure, connection_id: object, buffer: AdaptiveBuffer) -> str:
    """The sentence a push carries: what was hidden and from which figures."""
    if hidden == 0 and buffer.minimum == 0:
        return NOTHING_HIDDEN
    per_hour = buffer.rate(exposure) * 3600
    floor = " (the merchant's floor)" if buffer.floor_per_hour / 3600 > exposure.total_rate else ""
    return (
        f"adaptive buffer hid {hidden}: the SKU sells {per_hour:.2f} units/h{floor}, this channel shows a "
        f"change after {exposure.delay(connection_id):.0f} s (p95), "
        f"{buffer.expected(exposure, connection_id):.2f} units expected meanwhile, "
        f"{buffer.confidence_pct:g}% confidence, bounds {buffer.minimum}-{buffer.maximum}"
    )
