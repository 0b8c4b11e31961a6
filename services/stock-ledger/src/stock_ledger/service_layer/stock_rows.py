"""Locking and saving stock rows: the single-writer protocol every use case follows.

Locking protocol: a transaction that changes stock first locks every stock row it will
touch, in one `SELECT ... FOR UPDATE` ordered by (merchant_id, sku, location) in the
"C" collation (the order Python sorts strings in), after inserting the missing rows.
Only then does it read or write order lines, ledger entries, oversells and the outbox.
Two writers therefore never wait on each other in a cycle, whatever SKUs they share.

Holding the row locks until commit is what makes versions strictly increase per SKU,
and what makes outbox ids follow commit order per key: a second writer of a SKU cannot
insert its outbox row before the first has committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync_common.contracts import Event, OversellDetected, StockChanged, utcnow
from stocksync_common.outbox import add_to_outbox

from stock_ledger.adapters.tables import outbox, oversells, stock_items
from stock_ledger.domain.stock import StockLevel, oversold_units

OVERSELLS = Counter("stocksync_oversells_total", "Stock changes that took available below zero")
OVERSOLD_UNITS = Counter("stocksync_oversold_units_total", "Units sold beyond what was available")
MOVEMENTS = Counter("stocksync_ledger_movements_total", "Ledger entries appended", ["kind"])

SkuKey = tuple[uuid.UUID, str, str]
"""(merchant_id, sku, location): the key of one stock row."""


def lock_order(key: SkuKey) -> tuple[str, str, str]:
    # str(uuid) sorts like PostgreSQL's uuid, and Python compares str by code point,
    # which is the "C" collation of UTF-8 text.
    return (str(key[0]), key[1], key[2])


def unnest_rows(name: str, **columns: tuple[Sequence[Any], sa.types.TypeEngine[Any]]) -> sa.Subquery:
    """Rows sent as one array parameter per column, zipped by `unnest` in PostgreSQL.

    One parameter per column instead of one per value keeps the statement the same for
    any number of rows: SQLAlchemy compiles it once and caches it, whereas a multi-row
    VALUES or a tuple IN is compiled anew for every batch (that dominated large batches).
    """
    return sa.select(
        *(
            sa.func.unnest(sa.bindparam(f"{name}_{column}", list(values), pg.ARRAY(type_))).label(column)
            for column, (values, type_) in columns.items()
        )
    ).subquery(name)


async def insert_rows(conn: AsyncConnection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert many rows in one statement (see `unnest_rows`); every row names the same columns."""
    if not rows:
        return
    columns = list(rows[0])
    source = unnest_rows("new_rows", **{c: ([row[c] for row in rows], table.c[c].type) for c in columns})
    await conn.execute(sa.insert(table).from_select(columns, sa.select(*source.c)))


def key_rows(keys: Sequence[SkuKey]) -> sa.Subquery:
    return unnest_rows(
        "keys",
        merchant_id=([k[0] for k in keys], pg.UUID(as_uuid=True)),
        sku=([k[1] for k in keys], sa.Text()),
        location=([k[2] for k in keys], sa.Text()),
    )


def matches_key(table: sa.Table, keys: sa.Subquery) -> sa.ColumnElement[bool]:
    return sa.and_(
        table.c.merchant_id == keys.c.merchant_id, table.c.sku == keys.c.sku, table.c.location == keys.c.location
    )


async def lock_stock_rows(conn: AsyncConnection, keys: Iterable[SkuKey]) -> dict[SkuKey, StockLevel]:
    """Insert the missing rows, then lock every row in lock order; return their levels."""
    ordered = sorted(set(keys), key=lock_order)
    if not ordered:
        return {}
    s = stock_items.c
    wanted = key_rows(ordered)
    await conn.execute(
        pg.insert(stock_items)
        .from_select(
            ["merchant_id", "sku", "location", "on_hand", "reserved", "version", "updated_at"],
            sa.select(
                wanted.c.merchant_id,
                wanted.c.sku,
                wanted.c.location,
                sa.literal(0),
                sa.literal(0),
                sa.literal(0),
                sa.func.now(),
            ),
        )
        .on_conflict_do_nothing()
    )
    rows = await conn.execute(
        sa.select(s.merchant_id, s.sku, s.location, s.on_hand, s.reserved, s.version, s.snapshot_as_of)
        .join_from(stock_items, wanted, matches_key(stock_items, wanted))
        .order_by(s.merchant_id, s.sku.collate("C"), s.location.collate("C"))
        .with_for_update(of=stock_items)
    )
    return {
        (row.merchant_id, row.sku, row.location): StockLevel(row.on_hand, row.reserved, row.version, row.snapshot_as_of)
        for row in rows
    }


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
    opened: list[dict[str, Any]]  # new oversell rows
    recovered: list[SkuKey]  # SKUs whose open oversells close


def plan_stock_changes(changes: Sequence[SkuChange], now: datetime) -> StockWrites:
    """The rows, events and oversells that `changes` call for (and count the oversells)."""
    changes = [c for c in changes if c.after != c.before]
    stock_events: list[StockChanged] = []
    events: list[Event] = []
    opened: list[dict[str, Any]] = []
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
                {
                    "oversell_id": oversell.event_id,
                    "merchant_id": merchant_id,
                    "sku": sku,
                    "location": location,
                    "version": c.after.version,
                    "available": c.after.available,
                    "oversold": oversold,
                    "causation_id": c.causation_id,
                    "detected_at": now,
                }
            )
            OVERSELLS.inc()
            OVERSOLD_UNITS.inc(oversold)
    recovered = [c.key for c in changes if c.before.available < 0 <= c.after.available]
    return StockWrites(changes, stock_events, events, opened, recovered)


async def save_stock_changes(conn: AsyncConnection, changes: Sequence[SkuChange]) -> list[StockChanged]:
    """Write the rows, the StockChanged and OversellDetected events, and open or close oversells.

    The caller holds the rows' locks and has given a new version to every change of
    on_hand or reserved.
    """
    now = utcnow()
    writes = plan_stock_changes(changes, now)
    changes = writes.changes
    if not changes:
        return []
    s = stock_items.c
    saved = unnest_rows(
        "saved",
        merchant_id=([c.key[0] for c in changes], s.merchant_id.type),
        sku=([c.key[1] for c in changes], s.sku.type),
        location=([c.key[2] for c in changes], s.location.type),
        on_hand=([c.after.on_hand for c in changes], s.on_hand.type),
        reserved=([c.after.reserved for c in changes], s.reserved.type),
        version=([c.after.version for c in changes], s.version.type),
        snapshot_as_of=([c.after.watermark for c in changes], s.snapshot_as_of.type),
    )
    await conn.execute(
        sa.update(stock_items)
        .where(matches_key(stock_items, saved))
        .values(
            on_hand=saved.c.on_hand,
            reserved=saved.c.reserved,
            version=saved.c.version,
            snapshot_as_of=saved.c.snapshot_as_of,
            updated_at=now,
        )
    )
    if writes.recovered:
        await conn.execute(
            sa.update(oversells)
            .where(
                oversells.c.resolved_at.is_(None),
                sa.tuple_(oversells.c.merchant_id, oversells.c.sku, oversells.c.location).in_(writes.recovered),
            )
            .values(resolved_at=now)
        )
    if writes.opened:
        await conn.execute(sa.insert(oversells), writes.opened)
    await add_to_outbox(conn, outbox, writes.events)
    return writes.stock_events
