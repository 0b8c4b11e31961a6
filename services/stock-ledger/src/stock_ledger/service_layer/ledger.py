"""Use cases of the ledger: apply order-line movements, apply snapshots, read stock.

Locking protocol: a transaction that changes a SKU first takes that SKU's stock row
lock (`SELECT ... FOR UPDATE` after an insert-if-missing), and only then touches its
order lines and ledger entries. Transactions that change several SKUs lock them in
sorted (merchant, sku, location) order, so two writers never wait on each other in a
cycle. Holding the row lock is what makes versions strictly increase per SKU and makes
outbox ids follow commit order per key.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import OrderLineMoved, StockChanged, utcnow
from stocksync_common.db import claim_events
from stocksync_common.outbox import add_to_outbox
from stocksync_common.topics import ORDERS

from stock_ledger.adapters.tables import inbox, ledger_entries, order_lines, outbox, stock_items
from stock_ledger.domain.stock import LineState, StockLevel, order_line_effect, snapshot_effect

OVERSELLS = Counter("stocksync_oversells_total", "Movements that took available below zero")
MOVEMENTS = Counter("stocksync_ledger_movements_total", "Ledger entries appended", ["kind"])

SkuKey = tuple[uuid.UUID, str, str]


async def lock_stock_row(conn: AsyncConnection, key: SkuKey) -> StockLevel:
    merchant_id, sku, location = key
    await conn.execute(
        pg.insert(stock_items)
        .values(merchant_id=merchant_id, sku=sku, location=location, on_hand=0, reserved=0,
                version=0, updated_at=utcnow())
        .on_conflict_do_nothing()
    )
    row = (
        await conn.execute(
            sa.select(stock_items.c.on_hand, stock_items.c.reserved, stock_items.c.version)
            .where(stock_items.c.merchant_id == merchant_id, stock_items.c.sku == sku,
                   stock_items.c.location == location)
            .with_for_update()
        )
    ).one()
    return StockLevel(row.on_hand, row.reserved, row.version)


async def _save_level(
    conn: AsyncConnection, key: SkuKey, level: StockLevel, causation_id: str,
    origin_received_at: datetime | None,
) -> StockChanged:
    merchant_id, sku, location = key
    now = utcnow()
    await conn.execute(
        sa.update(stock_items)
        .where(stock_items.c.merchant_id == merchant_id, stock_items.c.sku == sku,
               stock_items.c.location == location)
        .values(on_hand=level.on_hand, reserved=level.reserved, version=level.version, updated_at=now)
    )
    event = StockChanged(
        merchant_id=merchant_id, sku=sku, location=location, version=level.version,
        on_hand=level.on_hand, reserved=level.reserved, available=level.available,
        causation_id=causation_id, occurred_at=now, origin_received_at=origin_received_at,
    )
    await add_to_outbox(conn, outbox, [event])
    return event


async def _line_state(conn: AsyncConnection, event: OrderLineMoved) -> LineState:
    row = (
        await conn.execute(
            sa.select(order_lines.c.reserved, order_lines.c.shipped, order_lines.c.cancelled).where(
                order_lines.c.merchant_id == event.merchant_id,
                order_lines.c.connection_id == event.connection_id,
                order_lines.c.external_order_id == event.external_order_id,
                order_lines.c.line_id == event.line_id,
            )
        )
    ).one_or_none()
    return LineState(row.reserved, row.shipped, row.cancelled) if row else LineState()


async def _save_line_state(conn: AsyncConnection, event: OrderLineMoved, line: LineState) -> None:
    stmt = pg.insert(order_lines).values(
        merchant_id=event.merchant_id, connection_id=event.connection_id,
        external_order_id=event.external_order_id, line_id=event.line_id, sku=event.sku,
        location=event.location, reserved=line.reserved, shipped=line.shipped, cancelled=line.cancelled,
    )
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[order_lines.c.merchant_id, order_lines.c.connection_id,
                            order_lines.c.external_order_id, order_lines.c.line_id],
            set_={"reserved": line.reserved, "shipped": line.shipped, "cancelled": line.cancelled},
        )
    )


def movement_causation_id(event: OrderLineMoved) -> str:
    return f"{event.channel_type}:{event.connection_id}:{event.external_order_id}:{event.line_id}:{event.movement}"


async def apply_sku_movements(
    conn: AsyncConnection, key: SkuKey, events: Sequence[OrderLineMoved]
) -> StockChanged | None:
    """Apply one SKU's movements from a batch in one transaction and one new version."""
    level = await lock_stock_row(conn, key)
    new_ids = await claim_events(conn, inbox, ORDERS.name, (e.event_id for e in events))
    applied: list[OrderLineMoved] = []
    for event in events:
        if event.event_id not in new_ids:
            continue
        new_ids.discard(event.event_id)  # the same event twice in one batch applies once
        line = await _line_state(conn, event)
        effect = order_line_effect(line, event.movement, event.quantity)
        inserted = (
            await conn.execute(
                pg.insert(ledger_entries)
                .values(
                    merchant_id=event.merchant_id, sku=event.sku, location=event.location,
                    causation_id=movement_causation_id(event), kind=f"order_{event.movement}",
                    quantity=event.quantity, delta_on_hand=effect.delta_on_hand,
                    delta_reserved=effect.delta_reserved, version=level.version + 1,
                    event_id=event.event_id,
                )
                .on_conflict_do_nothing(constraint="uq_ledger_causation")
                .returning(ledger_entries.c.id)
            )
        ).scalar_one_or_none()
        if inserted is None:
            continue  # the same movement arrived in another event: already applied
        await _save_line_state(conn, event, effect.line)
        level = level.moved(effect.delta_on_hand, effect.delta_reserved)
        MOVEMENTS.labels(f"order_{event.movement}").inc()
        applied.append(event)
    if not applied:
        return None
    if level.available < 0:
        OVERSELLS.inc()
    level = StockLevel(level.on_hand, level.reserved, level.version + 1)
    last = applied[-1]
    return await _save_level(conn, key, level, last.causation_id, min(e.received_at for e in applied))


async def apply_order_lines(engine: AsyncEngine, events: Iterable[OrderLineMoved]) -> list[StockChanged]:
    """Apply a consumer batch: one transaction per SKU, SKUs in lock order."""
    by_sku: dict[SkuKey, list[OrderLineMoved]] = defaultdict(list)
    for event in events:
        by_sku[(event.merchant_id, event.sku, event.location)].append(event)
    changed: list[StockChanged] = []
    for key in sorted(by_sku, key=lambda k: (str(k[0]), k[1], k[2])):
        async with engine.begin() as conn:
            event = await apply_sku_movements(conn, key, by_sku[key])
        if event is not None:
            changed.append(event)
    return changed


@dataclass(frozen=True)
class SnapshotLine:
    sku: str
    on_hand: int
    location: str


async def apply_snapshot(
    engine: AsyncEngine, merchant_id: uuid.UUID, snapshot_id: uuid.UUID, lines: Sequence[SnapshotLine]
) -> list[StockChanged]:
    """Set on_hand for each line, all or nothing, as signed ledger entries."""
    changed: list[StockChanged] = []
    async with engine.begin() as conn:
        for line in sorted(lines, key=lambda l: (l.sku, l.location)):
            key = (merchant_id, line.sku, line.location)
            level = await lock_stock_row(conn, key)
            effect = snapshot_effect(level, line.on_hand)
            causation_id = f"snapshot:{snapshot_id}:{line.sku}:{line.location}"
            level = StockLevel(level.on_hand + effect.delta_on_hand, level.reserved, level.version + 1)
            await conn.execute(
                sa.insert(ledger_entries).values(
                    merchant_id=merchant_id, sku=line.sku, location=line.location,
                    causation_id=causation_id, kind="snapshot", quantity=line.on_hand,
                    delta_on_hand=effect.delta_on_hand, delta_reserved=0, version=level.version,
                )
            )
            MOVEMENTS.labels("snapshot").inc()
            changed.append(await _save_level(conn, key, level, causation_id, None))
    return changed


async def read_stock(conn: AsyncConnection, key: SkuKey) -> sa.Row[tuple[object, ...]] | None:
    merchant_id, sku, location = key
    return (
        await conn.execute(
            sa.select(stock_items).where(
                stock_items.c.merchant_id == merchant_id, stock_items.c.sku == sku,
                stock_items.c.location == location,
            )
        )
    ).one_or_none()
