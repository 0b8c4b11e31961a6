"""The oversell simulator: the same buyers, batch sync against Stocksync's event path.

A discrete-event simulation, seeded. A merchant sells a catalogue with low stock on
several channels. Buyers arrive on each channel (Poisson, their own rate) and want one
SKU (Zipf-like popularity), one unit mostly. A buyer buys only if the channel shows at
least the quantity wanted; a channel lowers its own listing when it sells (as
marketplaces do), and learns of every other change only through the sync:

- batch sync every T minutes (Channable, Sellbrite, Lengow): at each cycle the tool
  reads the merchant's stock and each channel shows the published quantity after the
  channel's own update latency;
- Stocksync: after every order, each channel shows the new quantity after the event
  path's latency (sampled from `make bench`'s measured distribution) plus the channel's
  own update latency.

Either can run with a buffer rule ("0 when quantity <= 3" by default), evaluated by the
rule engine's own pure code (`rule_engine.domain.rules`), or with the adaptive buffer
(`rule_engine.domain.adaptive`): each channel hides what the SKU is expected to sell while
that channel's listing is stale, from a decayed sales rate per SKU and channel updated on
each order and a window of delays per channel measured from the run's own pushes. An order that the stock cannot
cover is an oversell: the merchant cancels it (one cancelled order, its missing units
counted as oversold) and the stock stays as it was. Units left unsold because of the
buffer: at the end of the day, per SKU, the units still in stock that buyers asked for
while the buffer rule hid them (the smaller of the two).

Every strategy sees exactly the same demand (the same buyers at the same moments), so
the differences come from the sync alone.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from rule_engine.domain.adaptive import AdaptiveBuffer, DecayedRate, DelayWindow, Exposure
from rule_engine.domain.rules import Action, Condition, Funnel, Rule

NAMESPACE = uuid.UUID("6f1d9f0e-5b7a-4c1e-9d8e-2a7e1c3b5d40")


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    share: float  # share of the buyers
    update_latency_s: float  # the channel's own time to show a quantity it accepted

    @property
    def connection_id(self) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, self.name)


# The channels' own update latencies are assumptions (unverified), the same for every
# strategy: Shopify and eBay apply a quantity call at once; Amazon processes listing
# updates asynchronously, typically within minutes; a Mirakl stock import is
# asynchronous and a publisher may call at most once a minute (docs/channels-protocols.md).
DEFAULT_CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec("shopify", 0.25, 1.0),
    ChannelSpec("amazon", 0.40, 120.0),
    ChannelSpec("ebay", 0.20, 5.0),
    ChannelSpec("mirakl", 0.15, 90.0),
)


@dataclass(frozen=True)
class Catalogue:
    skus: int = 2000
    min_stock: int = 1
    max_stock: int = 12
    zipf_s: float = 1.0


@dataclass(frozen=True)
class Demand:
    at: float  # seconds from the start
    channel: int
    sku: int
    quantity: int


@dataclass(frozen=True)
class Scenario:
    seed: int = 42
    hours: float = 24.0
    buyers_per_hour: float = 600.0
    catalogue: Catalogue = Catalogue()
    channels: tuple[ChannelSpec, ...] = DEFAULT_CHANNELS
    # Extra buyers from `flash_start_h` for `flash_hours`: `flash_factor` times the rate in all.
    flash_factor: float = 1.0
    flash_start_h: float = 12.0
    flash_hours: float = 1.0

    def stock(self) -> list[int]:
        rng = random.Random(self.seed * 7919 + 1)
        return [rng.randint(self.catalogue.min_stock, self.catalogue.max_stock) for _ in range(self.catalogue.skus)]

    def demand(self) -> list[Demand]:
        """Buyers on every channel, merged in time order; seeded."""
        rng = random.Random(self.seed)
        weights = [1.0 / (k**self.catalogue.zipf_s) for k in range(1, self.catalogue.skus + 1)]
        cumulative: list[float] = []
        total = 0.0
        for w in weights:
            total += w
            cumulative.append(total)
        horizon = self.hours * 3600
        out = []
        for index, channel in enumerate(self.channels):
            rate = self.buyers_per_hour * channel.share / 3600
            at = rng.expovariate(rate)
            while at < horizon:
                sku = min(bisect.bisect_left(cumulative, rng.random() * total), len(weights) - 1)
                out.append(Demand(at, index, sku, 1 if rng.random() < 0.9 else 2))
                at += rng.expovariate(rate)
        if self.flash_factor > 1.0:
            # A separate stream, so that the steady part is the very same buyers as without the flash.
            flash = random.Random(self.seed * 104729 + 17)
            start, end = self.flash_start_h * 3600, min(horizon, (self.flash_start_h + self.flash_hours) * 3600)
            for index, channel in enumerate(self.channels):
                rate = self.buyers_per_hour * channel.share / 3600 * (self.flash_factor - 1.0)
                at = start + flash.expovariate(rate)
                while at < end:
                    sku = min(bisect.bisect_left(cumulative, flash.random() * total), len(weights) - 1)
                    out.append(Demand(at, index, sku, 1 if flash.random() < 0.9 else 2))
                    at += flash.expovariate(rate)
        out.sort(key=lambda d: (d.at, d.channel))
        return out


@dataclass(frozen=True)
class Strategy:
    name: str
    batch_interval_s: float | None  # None: the event path
    buffer: int | None  # "0 when quantity <= buffer" on every channel; None: no rule
    adaptive: AdaptiveBuffer | None = None  # the adaptive buffer on every channel instead

    def rules(self, channels: Sequence[ChannelSpec]) -> list[Rule]:
        if self.adaptive is not None:
            return [
                Rule(
                    uuid.uuid5(NAMESPACE, "adaptive"),
                    0,
                    Condition("always"),
                    Action("adaptive", 0, self.adaptive),
                    frozenset(c.connection_id for c in channels),
                )
            ]
        if self.buffer is None:
            return []
        return [
            Rule(
                uuid.uuid5(NAMESPACE, f"buffer-{self.buffer}"),
                0,
                Condition("<=", self.buffer),
                Action("set", 0),
                frozenset(c.connection_id for c in channels),
            )
        ]


@dataclass
class Outcome:
    strategy: str
    buyers: int = 0
    orders: int = 0
    units_sold: int = 0
    oversold_units: int = 0
    cancelled_orders: int = 0
    unsold_because_of_buffer: int = 0  # units left at the end that buyers wanted but the rule hid
    turned_away: int = 0  # every buyer who found too little shown
    start_units: int = 0
    end_units: int = 0
    oversells_per_sku: dict[int, int] = field(default_factory=dict)

    def as_row(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "oversells_per_sku"}


class LatencySampler:
    """The event path's latency, drawn from an empirical quantile table (ms)."""

    def __init__(self, quantiles_ms: Sequence[float], grid: Sequence[float], rng: random.Random) -> None:
        self.values = [v / 1000 for v in quantiles_ms]
        self.grid = list(grid)
        self.rng = rng

    def __call__(self) -> float:
        u = self.rng.random() * self.grid[-1]
        i = bisect.bisect_left(self.grid, u)
        if i <= 0:
            return self.values[0]
        lo, hi = self.grid[i - 1], self.grid[i]
        share = (u - lo) / (hi - lo) if hi > lo else 0.0
        return self.values[i - 1] + share * (self.values[i] - self.values[i - 1])


_ORDER, _SHOW, _CYCLE, _REVIEW = 0, 1, 2, 3


@dataclass(frozen=True)
class AdaptiveSettings:
    """How the simulated rule engine estimates, as the service does (`docs/rules.md`)."""

    rate_tau_s: float = 1800.0  # the sales rate's time constant
    default_delay_s: float = 120.0  # a connection's delay until it has `min_samples` measurements
    delay_window: int = 200
    min_samples: int = 20
    review_after_s: float = 300.0  # a SKU that hides units is re-evaluated at most this often
    # The rates start from the day before (the same traffic, another seed), as a rule engine
    # that has run for a day knows them; False starts every rate at 0.
    warm_rates: bool = True


def simulate(
    scenario: Scenario,
    strategy: Strategy,
    latency: LatencySampler | None = None,
    settings: AdaptiveSettings = AdaptiveSettings(),
) -> Outcome:
    """Run the scenario's demand through one strategy."""
    if strategy.batch_interval_s is None and latency is None:
        raise ValueError("the event path needs a latency sampler")
    channels = scenario.channels
    rules = strategy.rules(channels)
    funnel = Funnel(rules, None)  # the rule engine's own evaluation; the rules have no schedule
    stock = scenario.stock()
    version = [0] * len(stock)
    # The adaptive buffer's estimators: a decayed sales rate per SKU and channel, updated on
    # each order; a window of measured delays per channel, from the order's receipt to the
    # moment the channel shows the change.
    rates: dict[int, list[DecayedRate]] = {}
    delays = [DelayWindow(settings.default_delay_s, settings.delay_window, settings.min_samples) for _ in channels]
    connection_ids = [c.connection_id for c in channels]
    if strategy.adaptive is not None and settings.warm_rates:
        yesterday = replace(scenario, seed=scenario.seed + 100_000, flash_factor=1.0)
        shift = scenario.hours * 3600
        for demand in yesterday.demand():
            sku_rates = rates.setdefault(demand.sku, [DecayedRate() for _ in channels])
            sku_rates[demand.channel] = sku_rates[demand.channel].observe(
                demand.quantity, demand.at - shift, settings.rate_tau_s
            )

    def exposure_of(sku: int, now: float) -> Exposure | None:
        if strategy.adaptive is None:
            return None
        sku_rates = rates.get(sku)
        return Exposure(
            {cid: r.value_at(now, settings.rate_tau_s) for cid, r in zip(connection_ids, sku_rates, strict=True)}
            if sku_rates
            else {},
            {cid: d.p95 for cid, d in zip(connection_ids, delays, strict=True)},
            settings.default_delay_s,
        )

    def publish(channel: int, sku: int, now: float, exposure: Exposure | None = None) -> int:
        if strategy.adaptive is not None and exposure is None:
            exposure = exposure_of(sku, now)
        if exposure is None:
            return funnel.decide(connection_ids[channel], str(sku), stock[sku]).quantity
        return funnel.decide(connection_ids[channel], str(sku), stock[sku], exposure=exposure).quantity

    shown = [[publish(c, s, 0.0) for s in range(len(stock))] for c in range(len(channels))]
    shown_version = [[0] * len(stock) for _ in channels]
    published = [[shown[c][s] for s in range(len(stock))] for c in range(len(channels))]
    outcome = Outcome(strategy.name, start_units=sum(stock))
    events: list[tuple[float, int, int, tuple[float, ...]]] = []
    seq = 0

    def push(at: float, kind: int, data: tuple[float, ...]) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, data))

    for demand in scenario.demand():
        push(demand.at, _ORDER, (demand.channel, demand.sku, demand.quantity))
    dirty: set[int] = set()
    hidden_wanted: dict[int, int] = {}  # units buyers wanted while the rule hid units in stock
    review_due: set[int] = set()
    if strategy.batch_interval_s is not None:
        tick = strategy.batch_interval_s
        while tick < scenario.hours * 3600:
            push(tick, _CYCLE, ())
            tick += strategy.batch_interval_s

    def tell_channels(at: float, sku: int, only_changed: bool) -> None:
        assert latency is not None
        delay = latency()
        hides = False
        exposure = exposure_of(sku, at)
        for c in range(len(channels)):
            quantity = publish(c, sku, at, exposure)
            hides = hides or quantity < stock[sku]
            if only_changed and quantity == published[c][sku]:
                continue
            published[c][sku] = quantity
            push(at + delay + channels[c].update_latency_s, _SHOW, (c, sku, quantity, version[sku], at))
        if strategy.adaptive is not None and hides and sku not in review_due:
            # Bounded re-evaluation: a decaying rate may publish more, checked once per interval.
            review_due.add(sku)
            push(at + settings.review_after_s, _REVIEW, (sku,))

    def changed(at: float, sku: int) -> None:
        """The ledger moved (an order, or an oversold order and its cancellation)."""
        version[sku] += 1
        if strategy.batch_interval_s is not None:
            dirty.add(sku)
            return
        tell_channels(at, sku, only_changed=False)

    while events:
        at, _, kind, data = heapq.heappop(events)
        if kind == _ORDER:
            channel, sku, quantity = (int(x) for x in data)
            outcome.buyers += 1
            if shown[channel][sku] < quantity:
                outcome.turned_away += 1
                if rules and stock[sku] >= quantity and publish(channel, sku, at) < quantity:
                    hidden_wanted[sku] = hidden_wanted.get(sku, 0) + quantity
                continue
            shown[channel][sku] -= quantity  # a channel lowers its own listing when it sells
            outcome.orders += 1
            if strategy.adaptive is not None:
                sku_rates = rates.setdefault(sku, [DecayedRate() for _ in channels])
                sku_rates[channel] = sku_rates[channel].observe(quantity, at, settings.rate_tau_s)
            if stock[sku] >= quantity:
                stock[sku] -= quantity
                outcome.units_sold += quantity
            else:
                outcome.cancelled_orders += 1
                missing = quantity - max(stock[sku], 0)
                outcome.oversold_units += missing
                outcome.oversells_per_sku[sku] = outcome.oversells_per_sku.get(sku, 0) + missing
            changed(at, sku)
        elif kind == _SHOW:
            channel, sku, quantity, ver = (int(x) for x in data[:4])
            delays[channel].record(at - data[4])
            if ver >= shown_version[channel][sku]:
                shown[channel][sku] = quantity
                shown_version[channel][sku] = ver
        elif kind == _REVIEW:
            sku = int(data[0])
            review_due.discard(sku)
            tell_channels(at, sku, only_changed=True)
        else:  # a batch cycle reads the stock now; each channel shows it after its own latency
            for sku in sorted(dirty):
                for c in range(len(channels)):
                    push(at + channels[c].update_latency_s, _SHOW, (c, sku, publish(c, sku, at), version[sku], at))
            dirty.clear()
    outcome.end_units = sum(stock)
    # Units still in stock at the end that buyers wanted but the buffer hid from them.
    outcome.unsold_because_of_buffer = sum(min(stock[sku], wanted) for sku, wanted in hidden_wanted.items())
    return outcome


ADAPTIVE = AdaptiveBuffer(confidence_pct=99.99, minimum=0, maximum=10)


def strategies(
    intervals_min: Sequence[float] = (5, 15, 60), buffer: int = 3, adaptive: AdaptiveBuffer | None = ADAPTIVE
) -> list[Strategy]:
    out = []
    for minutes in intervals_min:
        out.append(Strategy(f"batch every {minutes:g} min", minutes * 60, None))
        out.append(Strategy(f"batch every {minutes:g} min + buffer {buffer}", minutes * 60, buffer))
    out.append(Strategy("Stocksync events", None, None))
    out.append(Strategy(f"Stocksync events + buffer {buffer}", None, buffer))
    if adaptive is not None:
        out.append(Strategy(f"Stocksync events + adaptive buffer {adaptive.confidence_pct:g}%", None, None, adaptive))
    return out


def default_latency_table() -> tuple[list[float], list[float]]:
    """A log-normal event path with median 100 ms and p99 about 400 ms (when no bench result exists)."""
    grid = [q / 2 for q in range(1, 199)] + [99.5, 99.9]
    median, sigma = 100.0, 0.6
    from statistics import NormalDist

    normal = NormalDist()
    return [median * math.exp(sigma * normal.inv_cdf(q / 100)) for q in grid], grid
