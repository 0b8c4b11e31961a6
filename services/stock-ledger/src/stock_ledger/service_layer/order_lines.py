"""Order-line movements from orders.v1 become ledger entries: the consumer's use case.

A consumer batch is applied in one transaction with a fixed number of statements,
whatever its size: lock every SKU's row (lock order), claim the event ids in the inbox,
read the causations already recorded and the lines' totals, then write all ledger
entries, all lines, one update per stock row and one StockChanged per SKU. A hot SKU
with 500 order lines in a batch costs the same round trips as 500 SKUs with one each.

Exactly once: an event id is claimed in the inbox in the transaction of its effects;
a movement that comes again under another event id (a channel's redelivery turned
into a new event) has the same causation id, which is unique in the ledger.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import OrderLineMoved, StockChanged
from stocksync_common.db import claim_events
from stocksync_common.topics import ORDERS

from stock_ledger.adapters.tables import inbox, ledger_entries, order_lines
from stock_ledger.domain.stock import LineState, order_line_effect
from stock_ledger.service_layer.stock_rows import (
    MOVEMENTS,
    SkuChange,
    SkuKey,
    insert_rows,
    lock_stock_rows,
    save_stock_changes,
    unnest_rows,
)

LineKey = tuple[uuid.UUID, uuid.UUID, str, str]
"""(merchant_id, connection_id, external_order_id, line_id): one order line."""


def movement_causation_id(event: OrderLineMoved) -> str:
    """Channel + order + line + kind (+ which partial movement): unique per movement."""
    base = f"{event.channel_type}:{event.connection_id}:{event.external_order_id}:{event.line_id}:{event.movement}"
    return f"{base}:{event.movement_ref}" if event.movement_ref else base


def _line_key(event: OrderLineMoved) -> LineKey:
    return (event.merchant_id, event.connection_id, event.external_order_id, event.line_id)


def _sku_key(event: OrderLineMoved) -> SkuKey:
    return (event.merchant_id, event.sku, event.location)


async def apply_order_lines(engine: AsyncEngine, events: Sequence[OrderLineMoved]) -> list[StockChanged]:
    """Apply a consumer batch in one transaction; return the StockChanged events written."""
    if not events:
        return []
    async with engine.begin() as conn:
        return await apply_order_lines_in(conn, events)


async def apply_order_lines_in(conn: AsyncConnection, events: Sequence[OrderLineMoved]) -> list[StockChanged]:
    levels = await lock_stock_rows(conn, (_sku_key(e) for e in events))
    claimed = await claim_events(conn, inbox, ORDERS.name, (e.event_id for e in events))
    fresh: dict[tuple[uuid.UUID, str], OrderLineMoved] = {}
    for event in events:
        if event.event_id in claimed:
            claimed.discard(event.event_id)  # the same event twice in one batch applies once
            fresh.setdefault((event.merchant_id, movement_causation_id(event)), event)
    if fresh:
        e = ledger_entries.c
        candidates = unnest_rows(
            "candidates",
            merchant_id=([m for m, _ in fresh], pg.UUID(as_uuid=True)),
            causation_id=([c for _, c in fresh], sa.Text()),
        )
        recorded = await conn.execute(
            sa.select(e.merchant_id, e.causation_id).join_from(
                ledger_entries,
                candidates,
                sa.and_(e.merchant_id == candidates.c.merchant_id, e.causation_id == candidates.c.causation_id),
            )
        )
        for row in recorded:
            del fresh[(row.merchant_id, row.causation_id)]
    if not fresh:
        return []
    lines = await _line_states(conn, list({_line_key(e) for e in fresh.values()}))

    before = dict(levels)
    entries: list[dict[str, Any]] = []
    moved_lines: dict[LineKey, tuple[OrderLineMoved, LineState]] = {}
    applied: dict[SkuKey, list[OrderLineMoved]] = {}
    for (_, causation_id), event in fresh.items():
        key, line_key = _sku_key(event), _line_key(event)
        level = levels[key]
        effect = order_line_effect(
            lines.get(line_key, LineState()),
            event.movement,
            event.quantity,
            restock=event.restock,
            counts_on_hand=level.counts_on_hand_of(event.received_at),
        )
        lines[line_key] = effect.line
        moved_lines[line_key] = (event, effect.line)
        levels[key] = level.moved(effect.delta_on_hand, effect.delta_reserved)
        applied.setdefault(key, []).append(event)
        entries.append(
            {
                "merchant_id": event.merchant_id,
                "sku": event.sku,
                "location": event.location,
                "causation_id": causation_id,
                "kind": f"order_{event.movement}",
                "quantity": event.quantity,
                "delta_on_hand": effect.delta_on_hand,
                "delta_reserved": effect.delta_reserved,
                "event_id": event.event_id,
                "occurred_at": event.received_at,
            }
        )
        MOVEMENTS.labels(f"order_{event.movement}").inc()

    changes: list[SkuChange] = []
    for key, sku_events in applied.items():
        after = levels[key]
        if (after.on_hand, after.reserved) != (before[key].on_hand, before[key].reserved):
            after = replace(after, version=before[key].version + 1)
        levels[key] = after
        changes.append(
            SkuChange(key, before[key], after, sku_events[-1].causation_id, min(e.received_at for e in sku_events))
        )
    for entry in entries:
        entry["version"] = levels[(entry["merchant_id"], entry["sku"], entry["location"])].version

    await insert_rows(conn, ledger_entries, entries)
    await _save_line_states(conn, list(moved_lines.values()))
    return await save_stock_changes(conn, changes)


async def _line_states(conn: AsyncConnection, keys: list[LineKey]) -> dict[LineKey, LineState]:
    c = order_lines.c
    wanted = unnest_rows(
        "wanted",
        merchant_id=([k[0] for k in keys], pg.UUID(as_uuid=True)),
        connection_id=([k[1] for k in keys], pg.UUID(as_uuid=True)),
        external_order_id=([k[2] for k in keys], sa.Text()),
        line_id=([k[3] for k in keys], sa.Text()),
    )
    rows = await conn.execute(
        sa.select(
            c.merchant_id,
            c.connection_id,
            c.external_order_id,
            c.line_id,
            c.placed,
            c.cancelled,
            c.shipped,
            c.returned,
            c.restocked,
        ).join_from(
            order_lines,
            wanted,
            sa.and_(
                c.merchant_id == wanted.c.merchant_id,
                c.connection_id == wanted.c.connection_id,
                c.external_order_id == wanted.c.external_order_id,
                c.line_id == wanted.c.line_id,
            ),
        )
    )
    return {
        (r.merchant_id, r.connection_id, r.external_order_id, r.line_id): LineState(
            r.placed, r.cancelled, r.shipped, r.returned, r.restocked
        )
        for r in rows
    }


async def _save_line_states(conn: AsyncConnection, lines: list[tuple[OrderLineMoved, LineState]]) -> None:
    c = order_lines.c
    saved = unnest_rows(
        "saved",
        merchant_id=([e.merchant_id for e, _ in lines], c.merchant_id.type),
        connection_id=([e.connection_id for e, _ in lines], c.connection_id.type),
        external_order_id=([e.external_order_id for e, _ in lines], c.external_order_id.type),
        line_id=([e.line_id for e, _ in lines], c.line_id.type),
        sku=([e.sku for e, _ in lines], c.sku.type),
        location=([e.location for e, _ in lines], c.location.type),
        **{
            total: ([getattr(line, total) for _, line in lines], c[total].type)
            for total in ("placed", "reserved", "shipped", "cancelled", "returned", "restocked")
        },
    )
    stmt = pg.insert(order_lines).from_select(list(saved.c.keys()), sa.select(*saved.c))
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[c.merchant_id, c.connection_id, c.external_order_id, c.line_id],
            set_={
                name: stmt.excluded[name]
                for name in ("placed", "reserved", "shipped", "cancelled", "returned", "restocked")
            },
        )
    )
