"""Use cases of order-ingest: record a delivery and the movements it produces, keep
the connections projection, replay a delivery, forget old deliveries.

Lock order in `accept_delivery`: the delivery row (its unique key serialises two
copies of one delivery), then the order-line rows in (order id, line id) order (Python's
string order), so two deliveries about the same order never deadlock and each sees the
other's emissions.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import ConnectionChanged, OrderLineMoved, utcnow
from stocksync_common.db import claim_events
from stocksync_common.outbox import outbox_arrays, outbox_insert_sql
from stocksync_common.raw_connection import raw_transaction
from stocksync_common.secrets import open_connection
from stocksync_common.topics import CONNECTIONS

from order_ingest.adapters.tables import connections, deliveries, inbox, order_lines, outbox
from order_ingest.domain.connections import InboundConnection
from order_ingest.domain.movements import LineMovement, LineReport, LineState, Notification, advance_line

# Headers that must never be stored: signatures and credentials.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "x-api-key",
        "x-shopify-hmac-sha256",
        "x-wc-webhook-signature",
        "webhook-signature",
        "x-ebay-signature",
        "wm_sec.signature",
        "cookie",
        "proxy-authorization",
    }
)


def _connection(row: Any) -> InboundConnection:
    return InboundConnection(
        row.connection_id,
        row.merchant_id,
        row.channel_type,
        tuple(row.webhook_secrets),
        dict(row.inbound),
        dict(row.channel_api),
    )


async def find_connection(engine: AsyncEngine, connection_id: uuid.UUID) -> InboundConnection | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(connections).where(
                    connections.c.connection_id == connection_id, connections.c.active.is_(True)
                )
            )
        ).one_or_none()
    return None if row is None else _connection(row)


class ConnectionDirectory:
    """Connections by id, read from the projection and kept for a couple of seconds.

    Every webhook needs its connection and connections rarely change, so one SELECT per
    webhook was a measurable share of order-ingest's CPU. This process drops its copies
    when it applies a ConnectionChanged; another instance's copies expire within
    `ttl_s`, so a retired secret or a removed connection stops working at most that late.
    """

    def __init__(self, engine: AsyncEngine, ttl_s: float = 2.0) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._entries: dict[uuid.UUID, tuple[float, InboundConnection | None]] = {}

    async def find(self, connection_id: uuid.UUID) -> InboundConnection | None:
        now = time.monotonic()
        cached = self._entries.get(connection_id)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        connection = await find_connection(self.engine, connection_id)
        if len(self._entries) > 10_000:
            self._entries.clear()  # bounded: unknown ids from scanners must not grow it forever
        self._entries[connection_id] = (now, connection)
        return connection

    def invalidate(self) -> None:
        self._entries.clear()


async def active_connections_of_type(engine: AsyncEngine, channel_type: str) -> list[InboundConnection]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(connections).where(connections.c.channel_type == channel_type, connections.c.active.is_(True))
            )
        ).all()
    return [_connection(row) for row in rows]


@dataclass(frozen=True)
class Accepted:
    duplicate: bool
    delivery_id: uuid.UUID | None
    outbox_ids: list[int]
    movements: list[LineMovement]


def public_headers(headers: Mapping[str, str], also_secret: frozenset[str] = frozenset()) -> dict[str, str]:
    hidden = SECRET_HEADERS | also_secret
    return {k.lower(): v for k, v in headers.items() if k.lower() not in hidden}


# The hot path is hand-written SQL on asyncpg (stocksync_common.raw_connection): a
# webhook costs two statements whatever its number of lines, where it cost 5 + n
# statements through SQLAlchemy.

# Locks the delivery's order lines, inserting the missing ones, and returns what each
# has already emitted. `ON CONFLICT DO UPDATE` (a no-op update) takes the row lock of an
# existing line and returns its latest committed state, so one statement does what an
# insert-missing then `SELECT ... FOR UPDATE` did. Lines are taken in the order of the
# arrays, which the caller sorts: that is the lock order.
_LOCK_LINES = f"""
    INSERT INTO {order_lines.fullname} AS l
        (connection_id, external_order_id, line_id, merchant_id, sku, placed, shipped, cancelled, returned, updated_at)
    SELECT $1::uuid, r.external_order_id, r.line_id, $2::uuid, r.sku, 0, 0, 0, 0, $3::timestamptz
    FROM unnest($4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS r(external_order_id, line_id, sku, n)
    {{condition}}
    ORDER BY r.n
    ON CONFLICT (connection_id, external_order_id, line_id) DO UPDATE SET updated_at = l.updated_at
    RETURNING l.external_order_id, l.line_id, l.placed, l.shipped, l.cancelled, l.returned
"""

# For a replay: the lines only ($1 connection, $2 merchant, $3 time, $4-$6 the lines).
LOCK_LINES_SQL = _LOCK_LINES.format(condition="")

# The delivery row first: its unique key serialises two copies of one delivery, and a
# copy already stored (no row inserted) locks no line and returns no row at all.
ACCEPT_DELIVERY_SQL = f"""
WITH delivery AS (
    INSERT INTO {deliveries.fullname}
        (delivery_id, connection_id, merchant_id, channel_event_id, topic, received_at, raw_body, headers,
         events_produced)
    VALUES ($7::uuid, $1::uuid, $2::uuid, $8::text, $9::text, $3::timestamptz, $10::bytea, $11::text::jsonb, 0)
    ON CONFLICT ON CONSTRAINT uq_delivery_event DO NOTHING
    RETURNING delivery_id
), locked AS ({_LOCK_LINES.format(condition="WHERE EXISTS (SELECT FROM delivery)")})
SELECT delivery.delivery_id, locked.* FROM delivery LEFT JOIN locked ON true
"""

# Saves the lines' new states, what the delivery produced and the outbox rows, in one
# statement; returns the outbox ids in the order of the events.
RECORD_MOVEMENTS_SQL = f"""
WITH moved AS (
    UPDATE {order_lines.fullname} AS l
    SET placed = m.placed, shipped = m.shipped, cancelled = m.cancelled, returned = m.returned,
        updated_at = $3::timestamptz
    FROM unnest($4::text[], $5::text[], $6::int[], $7::int[], $8::int[], $9::int[])
        AS m(external_order_id, line_id, placed, shipped, cancelled, returned)
    WHERE l.connection_id = $2::uuid AND l.external_order_id = m.external_order_id AND l.line_id = m.line_id
), delivery AS (
    UPDATE {deliveries.fullname}
    SET events_produced = events_produced + $10::int, produced = produced || $11::text::jsonb,
        replayed_at = coalesce($12::timestamptz, replayed_at)
    WHERE delivery_id = $1::uuid
), events AS (
    {outbox_insert_sql(outbox, 13)}
)
SELECT id FROM events ORDER BY id
"""


async def accept_delivery(
    engine: AsyncEngine,
    connection: InboundConnection,
    notification: Notification,
    raw_body: bytes,
    headers: Mapping[str, str],
    received_at: datetime,
) -> Accepted:
    """Store the delivery, advance its order lines and write their events, in one
    transaction; a delivery already stored (same channel event id) changes nothing."""
    delivery_id = uuid.uuid4()
    by_line = _reports_by_line(notification.lines)
    async with raw_transaction(engine) as conn:
        rows = await conn.fetch(
            ACCEPT_DELIVERY_SQL,
            connection.connection_id,
            connection.merchant_id,
            received_at,
            *_line_arrays(by_line),
            delivery_id,
            notification.channel_event_id,
            notification.topic,
            raw_body,
            orjson.dumps(public_headers(headers, connection.signature_headers)).decode(),
        )
        if not rows:
            return Accepted(True, None, [], [])
        locked = [row for row in rows if row["external_order_id"] is not None]
        movements, ids = await _advance_lines(conn, connection, delivery_id, by_line, locked, received_at, None)
    return Accepted(False, delivery_id, ids, movements)


async def replay_delivery(
    engine: AsyncEngine, connection: InboundConnection, delivery_id: uuid.UUID, notification: Notification
) -> tuple[list[int], list[LineMovement]]:
    """Run a stored delivery through the line state again: only what was never emitted
    (say, after a mapping fix) comes out; everything already emitted stays emitted once."""
    now = utcnow()
    by_line = _reports_by_line(notification.lines)
    async with raw_transaction(engine) as conn:
        locked = []
        if by_line:
            locked = await conn.fetch(
                LOCK_LINES_SQL, connection.connection_id, connection.merchant_id, now, *_line_arrays(by_line)
            )
        movements, ids = await _advance_lines(conn, connection, delivery_id, by_line, locked, now, now)
    return ids, movements


def _reports_by_line(reports: Sequence[LineReport]) -> dict[tuple[str, str], LineReport]:
    # A report per line: if a delivery names a line twice, its last word counts. Sorted:
    # the lock order.
    by_line = {(r.external_order_id, r.line_id): r for r in reports}
    return {key: by_line[key] for key in sorted(by_line)}


def _line_arrays(by_line: Mapping[tuple[str, str], LineReport]) -> tuple[list[str], list[str], list[str]]:
    return [k[0] for k in by_line], [k[1] for k in by_line], [r.sku for r in by_line.values()]


async def _advance_lines(
    conn: Any,
    connection: InboundConnection,
    delivery_id: uuid.UUID,
    by_line: Mapping[tuple[str, str], LineReport],
    locked: Sequence[Any],
    at: datetime,
    replayed_at: datetime | None,
) -> tuple[list[LineMovement], list[int]]:
    """Advance the locked lines, then save their states, what the delivery produced and
    the events in one statement (nothing at all for an accepted delivery that moved nothing)."""
    movements: list[LineMovement] = []
    moved: list[tuple[str, str, LineState]] = []
    for row in locked:
        order_id, line_id = row["external_order_id"], row["line_id"]
        before = LineState(row["placed"], row["shipped"], row["cancelled"], row["returned"])
        after, line_movements = advance_line(before, by_line[(order_id, line_id)])
        if line_movements:
            movements.extend(line_movements)
            moved.append((order_id, line_id, after))
    if not movements and replayed_at is None:
        return [], []
    produced = [
        {
            "external_order_id": m.external_order_id,
            "line_id": m.line_id,
            "sku": m.sku,
            "movement": m.movement,
            "quantity": m.quantity,
        }
        for m in movements
    ]
    ids = await conn.fetch(
        RECORD_MOVEMENTS_SQL,
        delivery_id,
        connection.connection_id,
        at,
        [m[0] for m in moved],
        [m[1] for m in moved],
        [m[2].placed for m in moved],
        [m[2].shipped for m in moved],
        [m[2].cancelled for m in moved],
        [m[2].returned for m in moved],
        len(produced),
        orjson.dumps(produced).decode(),
        replayed_at,
        *outbox_arrays(_event(connection, m, at) for m in movements),
    )
    return movements, [row["id"] for row in ids]


def _event(connection: InboundConnection, movement: LineMovement, received_at: datetime) -> OrderLineMoved:
    # The first movement of a kind on a line has no ref; later (partial) ones are told
    # apart by the cumulative quantity they bring the line to.
    ref = None if movement.quantity == movement.cumulative else f"upto:{movement.cumulative}"
    return OrderLineMoved(
        merchant_id=connection.merchant_id,
        connection_id=connection.connection_id,
        channel_type=connection.channel_type,  # type: ignore[arg-type]
        external_order_id=movement.external_order_id,
        line_id=movement.line_id,
        sku=movement.sku,
        movement=movement.movement,
        quantity=movement.quantity,
        movement_ref=ref,
        received_at=received_at,
        causation_id=f"{connection.channel_type}:{movement.external_order_id}:{movement.line_id}:{movement.movement}"
        + (f":{ref}" if ref else ""),
    )


async def apply_connection_changes(engine: AsyncEngine, changes: Sequence[ConnectionChanged]) -> None:
    async with engine.begin() as conn:
        new_ids = await claim_events(conn, inbox, CONNECTIONS.name, (c.event_id for c in changes))
        for change in changes:
            if change.event_id in new_ids:
                await _upsert_connection(conn, open_connection(change))


async def _upsert_connection(conn: AsyncConnection, change: ConnectionChanged) -> None:
    values = {
        "merchant_id": change.merchant_id,
        "channel_type": change.channel_type,
        "name": change.name,
        "active": change.active,
        "webhook_secrets": list(change.webhook_secrets),
        "inbound": change.inbound,
        "channel_api": change.channel_api,
        "updated_at": change.occurred_at,
    }
    stmt = pg.insert(connections).values(connection_id=change.connection_id, **values)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[connections.c.connection_id],
            set_=values,
            # An older event replayed after a newer one does not win.
            where=connections.c.updated_at <= stmt.excluded.updated_at,
        )
    )


async def delete_expired_deliveries(engine: AsyncEngine, retention: timedelta) -> int:
    """Retention: raw bodies older than the retention are deleted. Order-line state is
    kept: it is what dedupes a channel's late retry of an order older than that."""
    async with engine.begin() as conn:
        result = await conn.execute(sa.delete(deliveries).where(deliveries.c.received_at < utcnow() - retention))
    return result.rowcount or 0


def now() -> datetime:
    return utcnow()
