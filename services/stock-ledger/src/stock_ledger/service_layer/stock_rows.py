"""Saving stock changes: new versions, StockChanged events, oversells opened and closed.

Business rules stated once, in Python (the store only writes the rows it is given):
a change of on_hand or reserved gets a new version and one StockChanged; a change that
takes available below zero opens an oversell (OversellDetected, for the new shortfall
only: `domain.stock.oversold_units`); one that brings available back to zero or more
closes the SKU's open oversells. The lock order and the statements are
adapters/ledger_store.py's.

Bundles (domain/bundles.py): saving also recomputes, at the locations that moved, every
bundle that contains a SKU whose levels changed (`derive_bundle_changes`, the second
lock phase of adapters/bundle_store.py). A bundle's row is a stock row like any other:
its on_hand is the number of whole bundles its components make (reserved stays 0),
moved by ledger entries of kind `bundle`, with the same per-row versions, so consumers
and the publisher's "never push stale" treat a bundle like any SKU. A bundle row opens
no oversell: its component's does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from prometheus_client import Counter

from stocksync_common.contracts import Event, OversellDetected, StockChanged
from stocksync_common.uow import UnitOfWork

from stock_ledger.adapters import bundle_store, ledger_store
from stock_ledger.adapters.bundle_store import Definition
from stock_ledger.adapters.ledger_store import LedgerEntry, OpenedOversell, OrderLineRow, SkuKey, StockRow, lock_order
from stock_ledger.domain.bundles import buildable
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
    # A bundle's row, derived from its components: it opens and closes no oversell.
    derived: bool = False

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
    recovered = [c.key for c in changes if not c.derived and c.before.available < 0 <= c.after.available]
    return StockWrites(changes, stock_events, events, opened, recovered, now)


@dataclass(frozen=True)
class BundleTarget:
    """A bundle's row to recompute, and what caused it."""

    definition: Definition  # empty: the bundle is gone, its available is 0
    causation_id: str
    origin_received_at: datetime | None = None


async def derive_bundles(
    uow: UnitOfWork,
    targets: Mapping[SkuKey, BundleTarget],
    now: datetime,
    moved: Mapping[SkuKey, StockLevel] | None = None,
) -> tuple[list[SkuChange], list[LedgerEntry]]:
    """Lock the bundle rows `targets` (the second lock phase) and recompute them from
    their components' available: `moved` (this transaction's levels, not written yet)
    over what is committed. One ledger entry and one new version per row that changes."""
    if not targets:
        return [], []
    conn = uow.connection
    levels = (await ledger_store.lock_stock(conn, targets)).levels
    committed = await bundle_store.available_at(
        conn,
        ((m, component, location) for (m, _, location), t in targets.items() for component in t.definition),
    )
    moved = moved or {}
    changes: list[SkuChange] = []
    entries: list[LedgerEntry] = []
    for key in sorted(targets, key=lock_order):
        merchant_id, sku, location = key
        target, before = targets[key], levels[key]
        available = {
            component: moved[k].available if (k := (merchant_id, component, location)) in moved else committed.get(k, 0)
            for component in target.definition
        }
        units = buildable(target.definition, available) if target.definition else 0
        if units == before.on_hand and before.reserved == 0 and before.version > 0:
            continue
        after = replace(before, on_hand=units, reserved=0, version=before.version + 1)
        changes.append(SkuChange(key, before, after, target.causation_id, target.origin_received_at, derived=True))
        entries.append(
            LedgerEntry(
                merchant_id=merchant_id,
                sku=sku,
                location=location,
                # Unique per row and version: a bundle row moves once per transaction.
                causation_id=f"bundle:{sku}:{location}:{after.version}",
                kind="bundle",
                quantity=units,
                delta_on_hand=units - before.on_hand,
                delta_reserved=-before.reserved,
                version=after.version,
                occurred_at=now,
                reason=target.causation_id[:500],
            )
        )
        MOVEMENTS.labels("bundle").inc()
    return changes, entries


async def derive_bundle_changes(
    uow: UnitOfWork, changes: Sequence[SkuChange], now: datetime
) -> tuple[list[SkuChange], list[LedgerEntry]]:
    """Every bundle containing a SKU whose levels `changes` moved, recomputed where it moved.

    Runs after the first lock phase, so a definition committed before sees these
    components' new levels, and one committed after has waited for them.
    """
    moved = {c.key: c.after for c in changes if c.new_version and not c.derived}
    if not moved:
        return [], []
    definitions = await bundle_store.definitions(uow.connection, {(m, sku) for m, sku, _ in moved})
    targets: dict[SkuKey, BundleTarget] = {}
    by_sku = {(c.key[0], c.key[1]): c for c in changes}
    for (merchant_id, bundle), definition in definitions.items():
        for component in definition:
            for location in {loc for m, sku, loc in moved if (m, sku) == (merchant_id, component)}:
                cause = by_sku[(merchant_id, component)]
                targets.setdefault(
                    (merchant_id, bundle, location),
                    BundleTarget(definition, cause.causation_id, cause.origin_received_at),
                )
    return await derive_bundles(uow, targets, now, moved)


def _merged_writes(writes: StockWrites, extra: StockWrites) -> StockWrites:
    return StockWrites(
        [*writes.changes, *extra.changes],
        [*writes.stock_events, *extra.stock_events],
        [*writes.events, *extra.events],
        [*writes.opened, *extra.opened],
        [*writes.recovered, *extra.recovered],
        writes.now,
    )


async def save_stock_changes(
    uow: UnitOfWork,
    writes: StockWrites,
    entries: Sequence[LedgerEntry],
    lines: Sequence[OrderLineRow] = (),
) -> list[StockChanged]:
    """Write ledger entries, lines, the changed stock rows, the oversells and the events
    (with any the unit of work holds) in one statement; return the StockChanged written.

    The caller holds the rows' locks and has given a new version to every change of
    on_hand or reserved. Bundles containing a moved SKU move with it (`derive_bundle_changes`).
    """
    derived, derived_entries = await derive_bundle_changes(uow, writes.changes, writes.now)
    if derived:
        writes = _merged_writes(writes, plan_stock_changes(derived, writes.now))
        entries = [*entries, *derived_entries]
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
