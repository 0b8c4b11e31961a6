"""Saving stock changes: new versions, StockChanged events, oversells opened and closed.

Business rules stated once, in Python (the store only writes the rows it is given):
a change of on_hand or reserved gets a new version and one StockChanged; a change that
takes available below zero opens an oversell (OversellDetected, for the new shortfall
only: `domain.stock.oversold_units`); one that brings available back to zero or more
closes the SKU's open oversells. The lock order and the statements are
adapters/ledger_store.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter

from stocksync_common.contracts import Event, OversellDetected, StockChanged
from stocksync_common.uow import UnitOfWork

from stock_ledger.adapters import ledger_store
from stock_ledger.adapters.ledger_store import LedgerEntry, OpenedOversell, OrderLineRow, SkuKey, StockRow
from stock_ledger.domain.stock import StockLevel, oversold_units

OVERSELLS = Counter("stocksync_oversells_total", "Stock changes that took available below zero")
OVERSOLD_UNITS = Counter("stocksync_oversold_units_total", "Units sold beyond what was available")
MOVEMENTS = Counter("stocksync_ledger_movements_total", "Ledger entries appended", ["kind"])


@dataclass(frozen=True)
class SkuChange:
    """One SKU's levels before and after a transaction's movements."""

    key: SkuKey
    before: StockLevel
    after: StockLevel
    causation_id: str
    origin_received_at: datetime | None = None

    @property
    def new_version(self) -> bool:
        return self.after.version > self.before.version


@dataclass(frozen=True)
class StockWrites:
    """What saving a transaction's stock changes writes, worked out before any I/O."""

    changes: list[SkuChange]  # those whose row changes
    stock_events: list[StockChanged]
    events: list[Event]  # for the outbox: every StockChanged and OversellDetected, in order
    opened: list[OpenedOversell]
    recovered: list[SkuKey]  # SKUs whose open oversells close
    now: datetime


def plan_stock_changes(changes: Sequence[SkuChange], now: datetime) -> StockWrites:
    """The rows, events and oversells that `changes` call for (and count the oversells)."""
    changes = [c for c in changes if c.after != c.before]
    stock_events: list[StockChanged] = []
    events: list[Event] = []
    opened: list[OpenedOversell] = []
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
        oversold = oversold_units(c.before, c.after)
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
            opened.append(
                OpenedOversell(
                    oversell_id=oversell.event_id,
                    merchant_id=merchant_id,
                    sku=sku,
                    location=location,
                    version=c.after.version,
                    available=c.after.available,
                    oversold=oversold,
                    causation_id=c.causation_id,
                )
            )
            OVERSELLS.inc()
            OVERSOLD_UNITS.inc(oversold)
    recovered = [c.key for c in changes if c.before.available < 0 <= c.after.available]
    return StockWrites(changes, stock_events, events, opened, recovered, now)


async def save_stock_changes(
    uow: UnitOfWork,
    writes: StockWrites,
    entries: Sequence[LedgerEntry],
    lines: Sequence[OrderLineRow] = (),
) -> list[StockChanged]:
    """Write ledger entries, lines, the changed stock rows, the oversells and the events
    (with any the unit of work holds) in one statement; return the StockChanged written.

    The caller holds the rows' locks and has given a new version to every change of
    on_hand or reserved.
    """
    uow.add(writes.events)
    await ledger_store.save(
        uow.connection,
        now=writes.now,
        entries=entries,
        lines=lines,
        stock=[
            StockRow(
                *c.key,
                on_hand=c.after.on_hand,
                reserved=c.after.reserved,
                version=c.after.version,
                snapshot_as_of=c.after.watermark,
            )
            for c in writes.changes
        ],
        resolved=writes.recovered,
        opened=writes.opened,
        events=uow.take_events(),
    )
    return writes.stock_events
