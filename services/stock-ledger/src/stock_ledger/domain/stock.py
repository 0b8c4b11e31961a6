"""The stock model of docs/design.md section 3, pure: what each movement does to a SKU.

available = on_hand - reserved.

Order lines converge whatever the order of their movements. A line keeps the totals
the channel reported per kind (placed, cancelled, shipped, returned); what it reserves
is derived from those totals, `max(0, placed - cancelled - shipped)`, never kept as a
running counter. Sums commute, so a cancellation or a shipment that arrives before its
order ends at the same numbers as one that arrives after it.

on_hand follows a watermark: it is the last applied snapshot (an absolute count that
the merchant's ERP took at `as_of`) plus every on_hand movement that happened after
`as_of`. A movement that happened at or before the watermark is already counted by the
snapshot, so it changes only what is reserved; a snapshot older than the watermark is
stale and changes nothing.

A marketplace order is a fact and is never refused: available may go below zero,
which is an oversell the merchant must see.

What a transaction's stock changes call for (`plan_stock_changes`), stated once here:
a change of on_hand or reserved gets a new version and one StockChanged; a change that
takes available below zero opens an oversell (OversellDetected, for the new shortfall
only: `oversold_units`); one that brings available back to zero or more closes the
SKU's open oversells. A bundle's row (domain/bundles.py) is derived from its
components: it opens and closes no oversell, its component's does.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from stocksync_common.contracts import Event, OrderMovement, OversellDetected, StockChanged

SkuKey = tuple[uuid.UUID, str, str]
"""(merchant_id, sku, location): the key of one stock row."""


@dataclass(frozen=True)
class StockLevel:
    on_hand: int = 0
    reserved: int = 0
    version: int = 0
    # as_of of the last applied snapshot: movements up to it are in on_hand already.
    watermark: datetime | None = None

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def moved(self, delta_on_hand: int, delta_reserved: int) -> StockLevel:
        return replace(self, on_hand=self.on_hand + delta_on_hand, reserved=self.reserved + delta_reserved)

    def counts_on_hand_of(self, occurred_at: datetime) -> bool:
        """Whether a movement at `occurred_at` is missing from the last snapshot."""
        return self.watermark is None or occurred_at > self.watermark


@dataclass(frozen=True, kw_only=True)
class LineTotals:
    """Totals the ledger has applied for one order line, per movement kind. Unlike
    order-ingest's `EmittedLine` they are not clamped: a cancellation may arrive before
    its order, and what the line reserves is derived."""

    placed: int = 0
    cancelled: int = 0
    shipped: int = 0
    returned: int = 0
    restocked: int = 0

    @property
    def reserved(self) -> int:
        """Units held for this line: placed and neither shipped nor cancelled yet."""
        return max(0, self.placed - self.cancelled - self.shipped)


@dataclass(frozen=True)
class MovementEffect:
    delta_on_hand: int
    delta_reserved: int
    line: LineTotals


def order_line_effect(
    line: LineTotals, movement: OrderMovement, quantity: int, *, restock: bool = True, counts_on_hand: bool = True
) -> MovementEffect:
    """What one movement of an order line does to the line and to its SKU.

    `counts_on_hand` is False when the movement happened before the last snapshot's
    as_of: that snapshot already counted its effect on on_hand.
    """
    if quantity <= 0:
        raise ValueError("a movement quantity is positive")
    on_hand = 0
    if movement == "placed":
        after = replace(line, placed=line.placed + quantity)
    elif movement == "cancelled":
        after = replace(line, cancelled=line.cancelled + quantity)
    elif movement == "shipped":
        after = replace(line, shipped=line.shipped + quantity)
        on_hand = -quantity
    elif movement == "returned":
        after = replace(
            line, returned=line.returned + quantity, restocked=line.restocked + (quantity if restock else 0)
        )
        on_hand = quantity if restock else 0
    else:
        raise ValueError(f"unknown movement {movement!r}")
    return MovementEffect(on_hand if counts_on_hand else 0, after.reserved - line.reserved, after)


def is_stale_snapshot(level: StockLevel, as_of: datetime) -> bool:
    """A snapshot older than the one applied last is recorded and ignored."""
    return level.watermark is not None and as_of < level.watermark


def snapshot_on_hand(counted: int, on_hand_moved_since: int) -> int:
    """on_hand after a snapshot: the ERP's count plus the movements it cannot have seen."""
    return counted + on_hand_moved_since


def oversold_units(before: StockLevel, after: StockLevel) -> int:
    """Units sold beyond what was available, counted once: only the new shortfall."""
    if after.available >= 0 or after.available >= before.available:
        return 0
    return min(-after.available, before.available - after.available)


@dataclass(frozen=True)
class SkuChange:
    """One SKU's levels before and after a transaction's movements."""

    key: SkuKey
    before: StockLevel
    after: StockLevel
    causation_id: str
    origin_received_at: datetime | None = None
    # A bundle's row, derived from its components: it opens and closes no oversell.
    derived: bool = False

    @property
    def new_version(self) -> bool:
        return self.after.version > self.before.version


@dataclass(frozen=True)
class StockWrites:
    """What a transaction's stock changes write, worked out before any I/O."""

    changes: list[SkuChange]  # those whose row changes
    stock_events: list[StockChanged]
    events: list[Event]  # for the outbox: every StockChanged and OversellDetected, in order
    opened: list[OversellDetected]  # each opens an oversell row, under its event id
    recovered: list[SkuKey]  # SKUs whose open oversells close
    now: datetime

    def merged(self, extra: StockWrites) -> StockWrites:
        return StockWrites(
            [*self.changes, *extra.changes],
            [*self.stock_events, *extra.stock_events],
            [*self.events, *extra.events],
            [*self.opened, *extra.opened],
            [*self.recovered, *extra.recovered],
            self.now,
        )


def plan_stock_changes(changes: Sequence[SkuChange], now: datetime) -> StockWrites:
    """The rows, events and oversells that `changes` call for (the module docstring's rules)."""
    changes = [c for c in changes if c.after != c.before]
    stock_events: list[StockChanged] = []
    events: list[Event] = []
    opened: list[OversellDetected] = []
    for c in changes:
        if not c.new_version:
            continue  # only the watermark moved: nothing a consumer needs to know
        merchant_id, sku, location = c.key
        event = StockChanged(
            merchant_id=merchant_id,
            sku=sku,
            location=location,
            version=c.after.version,
            on_hand=c.after.on_hand,
            reserved=c.after.reserved,
            available=c.after.available,
            causation_id=c.causation_id,
            occurred_at=now,
            origin_received_at=c.origin_received_at,
        )
        stock_events.append(event)
        events.append(event)
        oversold = 0 if c.derived else oversold_units(c.before, c.after)
        if oversold:
            oversell = OversellDetected(
                merchant_id=merchant_id,
                sku=sku,
                location=location,
                version=c.after.version,
                available=c.after.available,
                oversold=oversold,
                causation_id=c.causation_id,
                occurred_at=now,
            )
            events.append(oversell)
            opened.append(oversell)
    recovered = [c.key for c in changes if not c.derived and c.before.available < 0 <= c.after.available]
    return StockWrites(changes, stock_events, events, opened, recovered, now)
