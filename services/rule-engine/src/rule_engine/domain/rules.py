"""Rules, pure: for one channel and one SKU, what quantity the channel should show.

Rules form an ordered funnel: the available quantity enters the first applicable rule
(lowest position), each rule whose scope and condition match transforms the quantity,
and the next rule sees the result. The condition is tested on the quantity as it
enters the rule. The result is an integer, never below 0.

A rule applies to a channel and a SKU when it is enabled, in force at that moment
(its period and weekly windows, in its time zone), and its channel and product scopes
match. Nothing here reads a clock: the moment is always passed in.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from rule_engine.domain.adaptive import NO_EXPOSURE, AdaptiveBuffer, Exposure, explain

ConditionOp = Literal["<=", "<", ">=", ">", "==", "between", "always"]
ActionType = Literal["set", "subtract", "cap", "percent", "allocate"]
# The adaptive buffer: reads the SKU's sales rate and each channel's display delay (domain.adaptive).
AdaptiveActionType = Literal["adaptive"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A decision keeps the reasons of its first adaptive rules only, as many as an event carries.
MAX_REASONS = 20


@dataclass(frozen=True)
class Condition:
    op: ConditionOp
    value: int | None = None
    upper: int | None = None  # for "between", inclusive

    def holds(self, quantity: int) -> bool:
        v = self.value if self.value is not None else 0
        match self.op:
            case "always":
                return True
            case "<=":
                return quantity <= v
            case "<":
                return quantity < v
            case ">=":
                return quantity >= v
            case ">":
                return quantity > v
            case "==":
                return quantity == v
            case "between":
                upper = self.upper if self.upper is not None else v
                return v <= quantity <= upper
        raise ValueError(f"unknown condition {self.op!r}")


@dataclass(frozen=True)
class Action:
    type: ActionType | AdaptiveActionType
    value: int = 0
    # For "adaptive" only: the confidence and bounds of the units hidden (`domain.adaptive`).
    adaptive: AdaptiveBuffer | None = None

    def __post_init__(self) -> None:
        if (self.type == "adaptive") != (self.adaptive is not None):
            raise ValueError("an adaptive action, and only one, carries its AdaptiveBuffer")

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Action:
        """An action as stored: `{"type", "value"}`, plus the adaptive buffer's parameters."""
        if document["type"] == "adaptive":
            return cls(
                "adaptive",
                0,
                AdaptiveBuffer(
                    float(document.get("confidence_pct", 95.0)),
                    int(document.get("minimum", 0)),
                    int(document.get("maximum", 10)),
                    float(document.get("floor_per_hour", 0.0)),
                ),
            )
        return cls(document["type"], document.get("value", 0))

    def apply(self, quantity: int, hidden: int = 0) -> int:
        match self.type:
            case "set":
                return self.value
            case "subtract":
                return quantity - self.value
            case "cap":
                return min(quantity, self.value)
            case "percent":
                # Rounded down: never publish a unit that is not there.
                return math.floor(max(quantity, 0) * self.value / 100)
            case "allocate":
                # A fixed number of units reserved for this channel, whatever the stock.
                return self.value
            case "adaptive":
                # `hidden` comes from `adaptive_hidden`: the units other channels may sell meanwhile.
                return quantity - hidden
        raise ValueError(f"unknown action {self.type!r}")


@dataclass(frozen=True)
class ProductAttributes:
    """What the catalogue says about a SKU; compared case-insensitively by filters."""

    brand: str | None = None
    category: str | None = None
    tags: frozenset[str] = frozenset()

    @classmethod
    def of(cls, brand: str | None, category: str | None, tags: Iterable[str]) -> ProductAttributes:
        return cls(
            brand.casefold() if brand else None,
            category.casefold() if category else None,
            frozenset(t.casefold() for t in tags),
        )


NO_ATTRIBUTES = ProductAttributes()


@dataclass(frozen=True)
class AttributeFilter:
    """A product filter on catalogue attributes; every non-empty criterion must hold.

    An include list keeps products whose attribute is in it (for tags: that carry at
    least one of them); an exclude list drops products whose attribute is in it (for
    tags: that carry any of them). A product the catalogue has not described matches
    no include list and passes every exclude list. Values are stored casefolded.
    """

    brands: frozenset[str] = frozenset()
    exclude_brands: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    exclude_categories: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    exclude_tags: frozenset[str] = frozenset()

    @property
    def is_empty(self) -> bool:
        return not (
            self.brands
            or self.exclude_brands
            or self.categories
            or self.exclude_categories
            or self.tags
            or self.exclude_tags
        )

    @property
    def attributes(self) -> frozenset[str]:
        """The catalogue attributes this filter reads: some of "brand", "category", "tags"."""
        read = {
            "brand": self.brands or self.exclude_brands,
            "category": self.categories or self.exclude_categories,
            "tags": self.tags or self.exclude_tags,
        }
        return frozenset(name for name, criteria in read.items() if criteria)

    def matches(self, product: ProductAttributes) -> bool:
        if self.brands and product.brand not in self.brands:
            return False
        if self.exclude_brands and product.brand in self.exclude_brands:
            return False
        if self.categories and product.category not in self.categories:
            return False
        if self.exclude_categories and product.category in self.exclude_categories:
            return False
        if self.tags and not (self.tags & product.tags):
            return False
        return not (self.exclude_tags and self.exclude_tags & product.tags)


@dataclass(frozen=True)
class WeeklyWindow:
    """Local wall-clock hours on some weekdays; an end at or before the start runs past midnight."""

    days: frozenset[Weekday]
    start: time
    end: time

    def occurrences(self, first_day: datetime, days: int, zone: ZoneInfo) -> Iterable[tuple[datetime, datetime]]:
        """(start, end) as aware datetimes for windows starting on `days` local days from `first_day`."""
        for offset in range(days):
            day = (first_day + timedelta(days=offset)).date()
            if WEEKDAYS[day.weekday()] not in self.days:
                continue
            start = datetime.combine(day, self.start, zone)
            end_day = day if self.end > self.start else day + timedelta(days=1)
            yield start, datetime.combine(end_day, self.end, zone)


@dataclass(frozen=True)
class Schedule:
    """When a rule is in force: inside [starts_at, ends_at) and, if any, inside a weekly window."""

    starts_at: datetime | None = None
    ends_at: datetime | None = None
    weekly_windows: tuple[WeeklyWindow, ...] = ()
    time_zone: str = "UTC"

    @property
    def is_always(self) -> bool:
        return self.starts_at is None and self.ends_at is None and not self.weekly_windows

    def in_force(self, at: datetime) -> bool:
        if self.starts_at is not None and at < self.starts_at:
            return False
        if self.ends_at is not None and at >= self.ends_at:
            return False
        if not self.weekly_windows:
            return True
        return any(start <= at < end for start, end in self._windows_around(at))

    def next_change(self, after: datetime) -> datetime | None:
        """The first moment after `after` at which `in_force` may change, if any."""
        candidates = [b for b in (self.starts_at, self.ends_at) if b is not None and b > after]
        for start, end in self._windows_around(after):
            candidates.extend(b for b in (start, end) if b > after and self._within_period(b))
        return min(candidates, default=None)

    def _within_period(self, at: datetime) -> bool:
        return (self.starts_at is None or at > self.starts_at) and (self.ends_at is None or at < self.ends_at)

    def _windows_around(self, at: datetime) -> Iterable[tuple[datetime, datetime]]:
        zone = ZoneInfo(self.time_zone)
        # From yesterday (a window running past midnight) to a week ahead.
        first_day = at.astimezone(zone) - timedelta(days=1)
        for window in self.weekly_windows:
            yield from window.occurrences(first_day, 9, zone)


ALWAYS = Schedule()


@dataclass(frozen=True)
class Rule:
    rule_id: uuid.UUID
    position: int
    condition: Condition
    action: Action
    # Empty means every connection of the merchant.
    connection_ids: frozenset[uuid.UUID] = frozenset()
    # Empty means every product (before the attribute filter).
    skus: frozenset[str] = frozenset()
    enabled: bool = True
    product_filter: AttributeFilter = AttributeFilter()
    schedule: Schedule = ALWAYS

    def in_force(self, at: datetime | None) -> bool:
        return self.enabled and (at is None or self.schedule.in_force(at))


@dataclass(frozen=True)
class Decision:
    quantity: int
    rule_ids: tuple[uuid.UUID, ...] = field(default=())
    # Why a rule that depends on more than the quantity (the adaptive buffer) did what it did.
    reasons: tuple[str, ...] = field(default=())


class Funnel:
    """The merchant's rules in force at one moment, ordered once, evaluated for many SKUs.

    Building it filters by schedule and sorts; evaluating a SKU first keeps the rules
    whose product scope matches, then runs them per channel.

    A SKU's decisions depend only on its available quantity, the catalogue attributes
    some rule filters on (`filtered_attributes`) and, if a rule lists it (`named_skus`),
    the SKU itself. SKUs that agree on those share their decisions, so a re-evaluation
    of 100,000 SKUs evaluates once per distinct input (`decisions`), not once per SKU.
    """

    def __init__(self, rules: Iterable[Rule], at: datetime | None) -> None:
        self.rules = sorted((r for r in rules if r.in_force(at)), key=lambda r: (r.position, str(r.rule_id)))
        self.needs_attributes = any(not r.product_filter.is_empty for r in self.rules)
        self.filtered_attributes: frozenset[str] = frozenset().union(*(r.product_filter.attributes for r in self.rules))
        self.named_skus: frozenset[str] = frozenset().union(*(r.skus for r in self.rules))

    def for_product(self, sku: str, product: ProductAttributes = NO_ATTRIBUTES) -> list[Rule]:
        return [
            r
            for r in self.rules
            if (not r.skus or sku in r.skus) and (r.product_filter.is_empty or r.product_filter.matches(product))
        ]

    @property
    def is_adaptive(self) -> bool:
        """Whether some rule in force reads sales rates and delays (its decisions are per SKU)."""
        return any(r.action.type == "adaptive" for r in self.rules)

    @staticmethod
    def decide_with(
        product_rules: Sequence[Rule], connection_id: uuid.UUID, available: int, exposure: Exposure = NO_EXPOSURE
    ) -> Decision:
        quantity = available
        decided_by: tuple[uuid.UUID, ...] = ()
        reasons: tuple[str, ...] = ()
        for rule in product_rules:
            if (not rule.connection_ids or connection_id in rule.connection_ids) and rule.condition.holds(quantity):
                hidden = 0
                if rule.action.adaptive is not None:
                    hidden = rule.action.adaptive.hidden(rule.action.adaptive.expected(exposure, connection_id))
                    if len(reasons) < MAX_REASONS:  # what an event carries (ChannelQuantityChanged)
                        reasons = (*reasons, explain(hidden, exposure, connection_id, rule.action.adaptive))
                quantity = rule.action.apply(quantity, hidden)
                decided_by = (*decided_by, rule.rule_id)
        return Decision(max(0, int(quantity)), decided_by, reasons)

    def decide(
        self,
        connection_id: uuid.UUID,
        sku: str,
        available: int,
        product: ProductAttributes = NO_ATTRIBUTES,
        exposure: Exposure = NO_EXPOSURE,
    ) -> Decision:
        return self.decide_with(self.for_product(sku, product), connection_id, available, exposure)

    def decisions(
        self,
        connection_ids: Sequence[uuid.UUID],
        available: int,
        product: ProductAttributes = NO_ATTRIBUTES,
        named_sku: str | None = None,
        exposure: Exposure = NO_EXPOSURE,
    ) -> tuple[Decision, ...]:
        """One decision per connection for every SKU with these inputs.

        `named_sku` is the SKU when it is in `named_skus`, else None: a SKU that no rule
        lists gets only the rules without a SKU list, whatever its name.
        """
        product_rules = [
            r
            for r in self.rules
            if (not r.skus or (named_sku is not None and named_sku in r.skus))
            and (r.product_filter.is_empty or r.product_filter.matches(product))
        ]
        return tuple(self.decide_with(product_rules, c, available, exposure) for c in connection_ids)


def channel_quantity(
    rules: Sequence[Rule],
    connection_id: uuid.UUID,
    sku: str,
    available: int,
    product: ProductAttributes = NO_ATTRIBUTES,
    at: datetime | None = None,
    exposure: Exposure = NO_EXPOSURE,
) -> Decision:
    """One SKU on one channel; `at` None ignores schedules (every enabled rule is in force).

    `exposure` carries the SKU's sales rates and the channels' delays for an adaptive buffer.
    """
    return Funnel(rules, at).decide(connection_id, sku, available, product, exposure)
