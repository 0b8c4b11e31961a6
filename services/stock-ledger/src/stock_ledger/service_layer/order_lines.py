"""Order-line movements from orders.v1 become ledger entries: the consumer's use case.

A consumer batch is applied in one transaction with three statements, whatever its
size: lock every SKU's row (lock order) and claim the event ids in the inbox; read the
causations already recorded and the lines' totals; then write all ledger entries, all
lines, one update per stock row and one StockChanged per SKU. A hot SKU with 500 order
lines in a batch costs the same round trips as 500 SKUs with one each.

Exactly once: an event id is claimed in the inbox in the transaction of its effects;
a movement that comes again under another event id (a channel's redelivery turned
into a new event) has the same causation id, which is unique in the ledger.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import OrderLineMoved, StockChanged, utcnow
from stocksync_common.outbox import outbox_arrays, outbox_insert_sql
from stocksync_common.raw_connection import raw_transaction
from stocksync_common.topics import ORDERS

from stock_ledger.adapters.tables import inbox, ledger_entries, order_lines, outbox, oversells, stock_items
from stock_ledger.domain.stock import LineState, StockLevel, order_line_effect
from stock_ledger.service_layer.stock_rows import (
    MOVEMENTS,
    SkuChange,
    SkuKey,
    lock_order,
    plan_stock_changes,
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


# The consumer's path is hand-written SQL on asyncpg (stocksync_common.raw_connection):
# three statements per batch, where SQLAlchemy took nine, each with its own Python cost.

# Inserts the missing stock rows and locks every row, in the order of the arrays (the
# caller sorts them in lock order): `ON CONFLICT DO UPDATE` with a no-op update takes
# the lock of an existing row and returns its latest committed levels. Claims the event
# ids in the inbox in the same statement.
LOCK_AND_CLAIM_SQL = f"""
WITH locked AS (
    INSERT INTO {stock_items.fullname} AS s (merchant_id, sku, location, on_hand, reserved, version, updated_at)
    SELECT k.merchant_id, k.sku, k.location, 0, 0, 0, now()
    FROM unnest($1::uuid[], $2::text[], $3::text[]) WITH ORDINALITY AS k(merchant_id, sku, location, n)
    ORDER BY k.n
    ON CONFLICT (merchant_id, sku, location) DO UPDATE SET updated_at = s.updated_at
    RETURNING s.merchant_id, s.sku, s.location, s.on_hand, s.reserved, s.version, s.snapshot_as_of
), claimed AS (
    INSERT INTO {inbox.fullname} (event_id, topic)
    SELECT unnest($4::uuid[]), $5::text
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
)
SELECT merchant_id, sku, location, on_hand, reserved, version, snapshot_as_of, NULL::uuid AS event_id FROM locked
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, event_id FROM claimed
"""

# After the locks (a later statement, so that it reads what the previous holders of the
# locks committed): the causations already in the ledger, and the lines' totals.
READ_SQL = f"""
SELECT e.merchant_id, e.causation_id, NULL::uuid AS connection_id, NULL::text AS external_order_id,
       NULL::text AS line_id, NULL::bigint AS placed, NULL::bigint AS cancelled, NULL::bigint AS shipped,
       NULL::bigint AS returned, NULL::bigint AS restocked
FROM {ledger_entries.fullname} e
JOIN unnest($1::uuid[], $2::text[]) AS c(merchant_id, causation_id)
    ON e.merchant_id = c.merchant_id AND e.causation_id = c.causation_id
UNION ALL
SELECT l.merchant_id, NULL, l.connection_id, l.external_order_id, l.line_id, l.placed, l.cancelled, l.shipped,
       l.returned, l.restocked
FROM {order_lines.fullname} l
JOIN unnest($3::uuid[], $4::uuid[], $5::text[], $6::text[]) AS w(merchant_id, connection_id, external_order_id, line_id)
    ON l.merchant_id = w.merchant_id AND l.connection_id = w.connection_id
    AND l.external_order_id = w.external_order_id AND l.line_id = w.line_id
"""

# Every write of the batch: ledger entries (in order), lines, stock rows, oversells
# opened and closed, and the outbox.
WRITE_SQL = f"""
WITH entries AS (
    INSERT INTO {ledger_entries.fullname}
        (merchant_id, sku, location, causation_id, kind, quantity, delta_on_hand, delta_reserved, event_id,
         occurred_at, version)
    SELECT e.merchant_id, e.sku, e.location, e.causation_id, e.kind, e.quantity, e.delta_on_hand,
           e.delta_reserved, e.event_id, e.occurred_at, e.version
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],
                $8::bigint[], $9::uuid[], $10::timestamptz[], $11::bigint[]) WITH ORDINALITY
        AS e(merchant_id, sku, location, causation_id, kind, quantity, delta_on_hand, delta_reserved, event_id,
             occurred_at, version, n)
    ORDER BY e.n
), lines AS (
    INSERT INTO {order_lines.fullname} AS l
        (merchant_id, connection_id, external_order_id, line_id, sku, location, placed, reserved, shipped,
         cancelled, returned, restocked)
    SELECT * FROM unnest($12::uuid[], $13::uuid[], $14::text[], $15::text[], $16::text[], $17::text[],
                         $18::bigint[], $19::bigint[], $20::bigint[], $21::bigint[], $22::bigint[], $23::bigint[])
    ON CONFLICT (merchant_id, connection_id, external_order_id, line_id) DO UPDATE SET
        placed = excluded.placed, reserved = excluded.reserved, shipped = excluded.shipped,
        cancelled = excluded.cancelled, returned = excluded.returned, restocked = excluded.restocked
), stock AS (
    UPDATE {stock_items.fullname} AS s
    SET on_hand = v.on_hand, reserved = v.reserved, version = v.version, snapshot_as_of = v.snapshot_as_of,
        updated_at = $31::timestamptz
    FROM unnest($24::uuid[], $25::text[], $26::text[], $27::bigint[], $28::bigint[], $29::bigint[],
                $30::timestamptz[]) AS v(merchant_id, sku, location, on_hand, reserved, version, snapshot_as_of)
    WHERE s.merchant_id = v.merchant_id AND s.sku = v.sku AND s.location = v.location
), resolved AS (
    UPDATE {oversells.fullname} AS o SET resolved_at = $31::timestamptz
    FROM unnest($32::uuid[], $33::text[], $34::text[]) AS r(merchant_id, sku, location)
    WHERE o.resolved_at IS NULL AND o.merchant_id = r.merchant_id AND o.sku = r.sku AND o.location = r.location
), opened AS (
    INSERT INTO {oversells.fullname}
        (oversell_id, merchant_id, sku, location, version, available, oversold, causation_id, detected_at)
    SELECT *, $31::timestamptz
    FROM unnest($35::uuid[], $36::uuid[], $37::text[], $38::text[], $39::bigint[], $40::bigint[], $41::bigint[],
                $42::text[])
), events AS (
    {outbox_insert_sql(outbox, 43)}
)
SELECT count(*) FROM events
"""


async def apply_order_lines(engine: AsyncEngine, events: Sequence[OrderLineMoved]) -> list[StockChanged]:
    """Apply a consumer batch in one transaction; return the StockChanged events written."""
    if not events:
        return []
    async with raw_transaction(engine) as conn:
        return await apply_order_lines_in(conn, events)


async def apply_order_lines_in(conn: Any, events: Sequence[OrderLineMoved]) -> list[StockChanged]:
    """The batch on an asyncpg connection inside a transaction (see `apply_order_lines`)."""
    keys = sorted({_sku_key(e) for e in events}, key=lock_order)
    event_ids = list(dict.fromkeys(e.event_id for e in events))
    levels: dict[SkuKey, StockLevel] = {}
    claimed: set[uuid.UUID] = set()
    for row in await conn.fetch(LOCK_AND_CLAIM_SQL, *_columns(keys, 3), event_ids, ORDERS.name):
        if row["event_id"] is not None:
            claimed.add(row["event_id"])
        else:
            levels[(row["merchant_id"], row["sku"], row["location"])] = StockLevel(
                row["on_hand"], row["reserved"], row["version"], row["snapshot_as_of"]
            )
    fresh: dict[tuple[uuid.UUID, str], OrderLineMoved] = {}
    for event in events:
        if event.event_id in claimed:
            claimed.discard(event.event_id)  # the same event twice in one batch applies once
            fresh.setdefault((event.merchant_id, movement_causation_id(event)), event)
    if not fresh:
        return []
    line_keys = list({_line_key(e) for e in fresh.values()})
    lines: dict[LineKey, LineState] = {}
    for row in await conn.fetch(READ_SQL, *_columns(list(fresh), 2), *_columns(line_keys, 4)):
        if row["causation_id"] is not None:
            fresh.pop((row["merchant_id"], row["causation_id"]), None)
        else:
            lines[(row["merchant_id"], row["connection_id"], row["external_order_id"], row["line_id"])] = LineState(
                row["placed"], row["cancelled"], row["shipped"], row["returned"], row["restocked"]
            )
    if not fresh:
        return []

    before = dict(levels)
    entries: list[tuple[Any, ...]] = []
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
            (
                event.merchant_id,
                event.sku,
                event.location,
                causation_id,
                f"order_{event.movement}",
                event.quantity,
                effect.delta_on_hand,
                effect.delta_reserved,
                event.event_id,
                event.received_at,
            )
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
    now = utcnow()
    writes = plan_stock_changes(changes, now)
    saved = writes.changes
    opened = writes.opened
    await conn.fetchval(
        WRITE_SQL,
        *_columns([(*entry, levels[(entry[0], entry[1], entry[2])].version) for entry in entries], 11),
        *_columns(
            [
                (
                    event.merchant_id,
                    event.connection_id,
                    event.external_order_id,
                    event.line_id,
                    event.sku,
                    event.location,
                    line.placed,
                    line.reserved,
                    line.shipped,
                    line.cancelled,
                    line.returned,
                    line.restocked,
                )
                for event, line in moved_lines.values()
            ],
            12,
        ),
        *_columns([(*c.key, c.after.on_hand, c.after.reserved, c.after.version, c.after.watermark) for c in saved], 7),
        now,
        *_columns(writes.recovered, 3),
        *_columns(
            [
                tuple(
                    o[name]
                    for name in (
                        "oversell_id",
                        "merchant_id",
                        "sku",
                        "location",
                        "version",
                        "available",
                        "oversold",
                        "causation_id",
                    )
                )
                for o in opened
            ],
            8,
        ),
        *outbox_arrays(writes.events),
    )
    return writes.stock_events


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as one list per column: the array parameters of an `unnest`."""
    return [[row[i] for row in rows] for i in range(width)]
