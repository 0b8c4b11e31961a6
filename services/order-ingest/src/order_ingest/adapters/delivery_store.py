"""Every statement on a delivery and what it touches: the delivery rows, the order lines
it advances, its outbox rows, and the connections projection it is verified against.

Lock order, the one every transaction on these tables follows: the delivery rows
first, in (connection, channel event id) order (their unique key serialises two copies
of one delivery; a copy already stored inserts no row), then the order-line rows in
(connection, order id, line id) order (Python's string order), each line once. Two
transactions about the same orders therefore never deadlock, and each sees what the
other emitted. The functions below sort their rows into that order themselves: a
caller passes rows in any order.

A group of deliveries costs two statements whatever its number of deliveries and
lines: `accept` (deliveries inserted, the lines of the new ones locked and read) and
`record_movements` (the lines' new states, what each delivery produced, the outbox
rows). Hand-written SQL on asyncpg (docs/decisions/0001-raw-asyncpg-on-hot-paths.md).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import ConnectionChanged, utcnow
from stocksync_common.db import claim_events
from stocksync_common.outbox import outbox_arrays, outbox_insert_sql
from stocksync_common.raw_connection import Connection, uuid_array_literal
from stocksync_common.secrets import open_connection
from stocksync_common.topics import CONNECTIONS
from stocksync_common.tracing import derived_from
from stocksync_common.uow import UnitOfWork

from order_ingest.adapters.tables import connections, deliveries, inbox, order_lines, outbox
from order_ingest.domain.connections import InboundConnection
from order_ingest.domain.movements import EmittedLine, LineMovement

LineKey = tuple[uuid.UUID, str, str]
"""(connection_id, external order id, line id): one order line."""

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


def public_headers(headers: Mapping[str, str], also_secret: frozenset[str] = frozenset()) -> dict[str, str]:
    hidden = SECRET_HEADERS | also_secret
    return {k.lower(): v for k, v in headers.items() if k.lower() not in hidden}


# Connections ------------------------------------------------------------------------


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


def _stored_deliveries() -> sa.Select[Any]:
    return sa.select(deliveries, connections.c.channel_type).select_from(
        deliveries.outerjoin(connections, connections.c.connection_id == deliveries.c.connection_id)
    )


async def stored_deliveries(
    engine: AsyncEngine,
    merchant_id: uuid.UUID,
    *,
    connection_id: uuid.UUID | None = None,
    before: datetime | None = None,
    limit: int = 50,
) -> list[Any]:
    """The merchant's stored deliveries, newest first, each with its connection's channel type."""
    query = _stored_deliveries().where(deliveries.c.merchant_id == merchant_id)
    if connection_id is not None:
        query = query.where(deliveries.c.connection_id == connection_id)
    if before is not None:
        query = query.where(deliveries.c.received_at < before)
    async with engine.connect() as conn:
        return list((await conn.execute(query.order_by(deliveries.c.received_at.desc()).limit(limit))).all())


async def stored_delivery(engine: AsyncEngine, merchant_id: uuid.UUID, delivery_id: uuid.UUID) -> Any | None:
    """One of the merchant's stored deliveries (None: none such, or another merchant's)."""
    query = _stored_deliveries().where(deliveries.c.delivery_id == delivery_id, deliveries.c.merchant_id == merchant_id)
    async with engine.connect() as conn:
        return (await conn.execute(query)).one_or_none()


class ConnectionDirectory:
    """Connections by id, read from the projection and kept for a couple of seconds.

    Every webhook needs its connection and connections rarely change: a copy serves every
    webhook for `ttl_s` (bench/findings.md has what a read per webhook cost). This process
    drops its copies when it applies a ConnectionChanged; another instance's copies expire
    within `ttl_s`, so a retired secret or a removed connection stops working at most that
    late.
    """

    def __init__(self, engine: AsyncEngine, ttl_s: float = 2.0) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._entries: dict[uuid.UUID, tuple[float, InboundConnection | None]] = {}
        # One read per connection at a time: the webhooks that find a copy expired while
        # it is being read again wait for that read instead of each sending its own.
        self._reading: dict[uuid.UUID, asyncio.Future[InboundConnection | None]] = {}
        # Bumped by `invalidate`: a read that began before it must not store what it read.
        self._generation = 0

    async def find(self, connection_id: uuid.UUID) -> InboundConnection | None:
        cached = self._entries.get(connection_id)
        if cached is not None and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        reading = self._reading.get(connection_id)
        if reading is None:
            reading = asyncio.ensure_future(self._read(connection_id))
            self._reading[connection_id] = reading
            reading.add_done_callback(lambda done: self._read_done(connection_id, done))
        # Shielded: a request that goes away does not cancel the read the others wait for.
        return await asyncio.shield(reading)

    async def _read(self, connection_id: uuid.UUID) -> InboundConnection | None:
        generation, read_at = self._generation, time.monotonic()
        connection = await find_connection(self.engine, connection_id)
        if generation == self._generation:
            if len(self._entries) > 10_000:
                self._entries.clear()  # bounded: unknown ids from scanners must not grow it forever
            self._entries[connection_id] = (read_at, connection)
        return connection

    def _read_done(self, connection_id: uuid.UUID, done: asyncio.Future[InboundConnection | None]) -> None:
        if self._reading.get(connection_id) is done:
            del self._reading[connection_id]
        if not done.cancelled():
            done.exception()  # observed here too: every finder may have gone away (the database down)

    def invalidate(self) -> None:
        self._entries.clear()
        self._generation += 1
        # Reads in flight may have seen the connection before the change: later finders read again.
        self._reading.clear()


async def active_connections_of_type(engine: AsyncEngine, channel_type: str) -> list[InboundConnection]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(connections).where(connections.c.channel_type == channel_type, connections.c.active.is_(True))
            )
        ).all()
    return [_connection(row) for row in rows]


async def save_connection_changes(engine: AsyncEngine, changes: Sequence[ConnectionChanged]) -> None:
    """Upsert the connections `changes` announce, each event once (the inbox), in one
    transaction; an older announcement replayed after a newer one does not win."""
    async with engine.begin() as conn:
        new_ids = await claim_events(conn, inbox, CONNECTIONS.name, (c.event_id for c in changes))
        for change in changes:
            if change.event_id not in new_ids:
                continue
            opened = open_connection(change)
            values = {
                "merchant_id": opened.merchant_id,
                "channel_type": opened.channel_type,
                "name": opened.name,
                "active": opened.active,
                "webhook_secrets": list(opened.webhook_secrets),
                "inbound": opened.inbound,
                "channel_api": opened.channel_api,
                "updated_at": opened.occurred_at,
            }
            stmt = pg.insert(connections).values(connection_id=opened.connection_id, **values)
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[connections.c.connection_id],
                    set_=values,
                    where=connections.c.updated_at <= stmt.excluded.updated_at,
                )
            )


# Deliveries and their lines -----------------------------------------------------------


@dataclass(frozen=True)
class NewDelivery:
    """A delivery row to insert (its headers are stored without `SECRET_HEADERS` and
    the connection's own `secret_headers`)."""

    delivery_id: uuid.UUID
    connection_id: uuid.UUID
    merchant_id: uuid.UUID
    channel_event_id: str
    topic: str
    received_at: datetime
    raw_body: bytes
    headers: Mapping[str, str]
    secret_headers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LineToLock:
    """An order line that the deliveries `delivery_ids` name: locked (inserted if new)
    only when one of them is inserted."""

    key: LineKey
    merchant_id: uuid.UUID
    sku: str
    at: datetime
    delivery_ids: list[uuid.UUID]


def _delivery_order(d: NewDelivery) -> tuple[str, str]:
    return str(d.connection_id), d.channel_event_id


def _line_order(key: LineKey) -> tuple[str, str, str]:
    return str(key[0]), key[1], key[2]


# `ON CONFLICT DO UPDATE` with a no-op update takes the row lock of an existing line and
# returns its latest committed state; rows are inserted and locked in the order of the
# arrays (`ORDER BY n`), which is the lock order. Returns one row per inserted delivery
# (its id) and one per locked line (what it has emitted).
ACCEPT_DELIVERIES_SQL = f"""
WITH delivery AS (
    INSERT INTO {deliveries.fullname}
        (delivery_id, connection_id, merchant_id, channel_event_id, topic, received_at, raw_body, headers,
         events_produced)
    SELECT d.delivery_id, d.connection_id, d.merchant_id, d.channel_event_id, d.topic, d.received_at, d.raw_body,
        d.headers::jsonb, 0
    FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::timestamptz[], $7::bytea[],
        $8::text[])
        WITH ORDINALITY AS d(delivery_id, connection_id, merchant_id, channel_event_id, topic, received_at,
            raw_body, headers, n)
    ORDER BY d.n
    ON CONFLICT ON CONSTRAINT uq_delivery_event DO NOTHING
    RETURNING delivery_id
), locked AS (
    INSERT INTO {order_lines.fullname} AS l
        (connection_id, external_order_id, line_id, merchant_id, sku, placed, shipped, cancelled, returned, updated_at)
    SELECT r.connection_id, r.external_order_id, r.line_id, r.merchant_id, r.sku, 0, 0, 0, 0, r.at
    FROM unnest($9::uuid[], $10::text[], $11::text[], $12::uuid[], $13::text[], $14::timestamptz[], $15::text[])
        WITH ORDINALITY AS r(connection_id, external_order_id, line_id, merchant_id, sku, at, delivery_ids, n)
    WHERE r.delivery_ids::uuid[] && ARRAY(SELECT delivery_id FROM delivery)
    ORDER BY r.n
    ON CONFLICT (connection_id, external_order_id, line_id) DO UPDATE SET updated_at = l.updated_at
    RETURNING l.connection_id, l.external_order_id, l.line_id, l.placed, l.shipped, l.cancelled, l.returned
)
SELECT delivery_id, NULL::uuid AS connection_id, NULL::text AS external_order_id, NULL::text AS line_id,
    NULL::int AS placed, NULL::int AS shipped, NULL::int AS cancelled, NULL::int AS returned
FROM delivery
UNION ALL
SELECT NULL::uuid, locked.* FROM locked
"""


@dataclass(frozen=True)
class AcceptedRows:
    inserted: set[uuid.UUID]  # the deliveries that were new
    lines: dict[LineKey, EmittedLine]  # the locked lines (those of new deliveries), as committed


async def accept(conn: Connection, new: Sequence[NewDelivery], lines: Sequence[LineToLock]) -> AcceptedRows:
    """Insert the deliveries (a copy of one already stored inserts nothing), then lock
    the lines that an inserted delivery names; one statement, in the lock order."""
    new = sorted(new, key=_delivery_order)
    lines = sorted(lines, key=lambda line: _line_order(line.key))
    rows = await conn.fetch(
        ACCEPT_DELIVERIES_SQL,
        [d.delivery_id for d in new],
        [d.connection_id for d in new],
        [d.merchant_id for d in new],
        [d.channel_event_id for d in new],
        [d.topic for d in new],
        [d.received_at for d in new],
        [d.raw_body for d in new],
        [orjson.dumps(public_headers(d.headers, d.secret_headers)).decode() for d in new],
        [line.key[0] for line in lines],
        [line.key[1] for line in lines],
        [line.key[2] for line in lines],
        [line.merchant_id for line in lines],
        [line.sku for line in lines],
        [line.at for line in lines],
        [uuid_array_literal(line.delivery_ids) for line in lines],
    )
    return AcceptedRows(
        {row["delivery_id"] for row in rows if row["delivery_id"] is not None},
        {_line_key(row): _emitted(row) for row in rows if row["delivery_id"] is None},
    )


# For a replay: locks the lines of one connection ($1 connection, $2 merchant, $3 time,
# $4-$6 the lines, in lock order), inserting the missing ones, and returns what each has
# already emitted.
LOCK_LINES_SQL = f"""
    INSERT INTO {order_lines.fullname} AS l
        (connection_id, external_order_id, line_id, merchant_id, sku, placed, shipped, cancelled, returned, updated_at)
    SELECT $1::uuid, r.external_order_id, r.line_id, $2::uuid, r.sku, 0, 0, 0, 0, $3::timestamptz
    FROM unnest($4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS r(external_order_id, line_id, sku, n)
    ORDER BY r.n
    ON CONFLICT (connection_id, external_order_id, line_id) DO UPDATE SET updated_at = l.updated_at
    RETURNING l.connection_id, l.external_order_id, l.line_id, l.placed, l.shipped, l.cancelled, l.returned
"""


async def lock_lines(
    conn: Connection, connection: InboundConnection, at: datetime, skus: Mapping[tuple[str, str], str]
) -> dict[LineKey, EmittedLine]:
    """Lock one connection's lines (`skus`: (order id, line id) -> SKU), in the lock
    order, inserting the missing ones; what each has emitted."""
    if not skus:
        return {}
    ordered = sorted(skus)
    rows = await conn.fetch(
        LOCK_LINES_SQL,
        connection.connection_id,
        connection.merchant_id,
        at,
        [k[0] for k in ordered],
        [k[1] for k in ordered],
        [skus[k] for k in ordered],
    )
    return {_line_key(row): _emitted(row) for row in rows}


# Saves the lines' new states, what each delivery produced and the outbox rows, in one
# statement; returns the outbox ids in the order of the events.
RECORD_MOVEMENTS_SQL = f"""
WITH moved AS (
    UPDATE {order_lines.fullname} AS l
    SET placed = m.placed, shipped = m.shipped, cancelled = m.cancelled, returned = m.returned, updated_at = m.at
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::int[], $6::int[], $7::int[], $8::timestamptz[])
        AS m(connection_id, external_order_id, line_id, placed, shipped, cancelled, returned, at)
    WHERE l.connection_id = m.connection_id AND l.external_order_id = m.external_order_id AND l.line_id = m.line_id
), delivery AS (
    UPDATE {deliveries.fullname} AS d
    SET events_produced = d.events_produced + p.events, produced = d.produced || p.produced::jsonb,
        replayed_at = coalesce($12::timestamptz, d.replayed_at)
    FROM unnest($9::uuid[], $10::int[], $11::text[]) AS p(delivery_id, events, produced)
    WHERE d.delivery_id = p.delivery_id
), events AS (
    {outbox_insert_sql(outbox, 13)}
)
SELECT id FROM events ORDER BY id
"""


async def record_movements(
    uow: UnitOfWork,
    lines: Mapping[LineKey, tuple[EmittedLine, datetime]],
    produced: Mapping[uuid.UUID, Sequence[LineMovement]],
    *,
    spans: Mapping[tuple[Any, ...], Any],
    replayed_at: datetime | None = None,
) -> list[int]:
    """Save the lines' new states (and when), what each delivery produced (appended to
    what it produced before; a replay also sets `replayed_at`) and the unit of work's
    events, whose outbox rows carry the span of the request they came from (`spans`, by
    event id), in one statement. The lines are locked (`accept`, `lock_lines`). Returns
    the outbox ids, in order."""
    with derived_from(spans):
        outbox_columns = outbox_arrays(uow.take_events())
    rows = await uow.connection.fetch(
        RECORD_MOVEMENTS_SQL,
        [k[0] for k in lines],
        [k[1] for k in lines],
        [k[2] for k in lines],
        [state.placed for state, _ in lines.values()],
        [state.shipped for state, _ in lines.values()],
        [state.cancelled for state, _ in lines.values()],
        [state.returned for state, _ in lines.values()],
        [at for _, at in lines.values()],
        list(produced),
        [len(movements) for movements in produced.values()],
        [orjson.dumps([_produced(m) for m in movements]).decode() for movements in produced.values()],
        replayed_at,
        *outbox_columns,
    )
    return [row["id"] for row in rows]


def _line_key(row: Any) -> LineKey:
    return row["connection_id"], row["external_order_id"], row["line_id"]


def _emitted(row: Any) -> EmittedLine:
    return EmittedLine(
        placed=row["placed"], shipped=row["shipped"], cancelled=row["cancelled"], returned=row["returned"]
    )


def _produced(m: LineMovement) -> dict[str, Any]:
    return {
        "external_order_id": m.external_order_id,
        "line_id": m.line_id,
        "sku": m.sku,
        "movement": m.movement,
        "quantity": m.quantity,
    }


async def delete_expired_deliveries(engine: AsyncEngine, retention: timedelta) -> int:
    """Retention: raw bodies older than the retention are deleted. Order-line state is
    kept: it is what dedupes a channel's late retry of an order older than that."""
    async with engine.begin() as conn:
        result = await conn.execute(sa.delete(deliveries).where(deliveries.c.received_at < utcnow() - retention))
    return result.rowcount or 0
