"""Use cases of order-ingest: record a delivery and the movements it produces, keep
the connections projection, replay a delivery, forget old deliveries.

Lock order in `accept_deliveries` (a group of deliveries, service_layer/group_commit.py):
the delivery rows in (connection, channel event id) order (their unique key serialises
two copies of one delivery), then the order-line rows in (connection, order id, line id)
order (Python's string order), so two groups about the same orders never deadlock and
each sees the other's emissions.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import ConnectionChanged, OrderLineMoved, utcnow
from stocksync_common.db import claim_events
from stocksync_common.outbox import outbox_arrays, outbox_insert_sql
from stocksync_common.raw_connection import raw_transaction, uuid_array_literal
from stocksync_common.secrets import open_connection
from stocksync_common.topics import CONNECTIONS
from stocksync_common.tracing import current_span, derived_from

from order_ingest.adapters.tables import connections, deliveries, inbox, order_lines, outbox
from order_ingest.domain.connections import InboundConnection
from order_ingest.domain.movements import EmittedLine, LineMovement, LineReport, Notification, advance_line

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
class Delivery:
    """A verified, parsed delivery, ready to be stored."""

    connection: InboundConnection
    notification: Notification
    raw_body: bytes
    headers: Mapping[str, str]
    received_at: datetime
    # The request's span (tracing on): its events carry it, whichever task stores them.
    span: Any = field(default=None, compare=False)

    @property
    def key(self) -> tuple[uuid.UUID, str]:
        """The dedupe key: a channel event is stored once per connection."""
        return self.connection.connection_id, self.notification.channel_event_id


@dataclass(frozen=True)
class Accepted:
    duplicate: bool
    delivery_id: uuid.UUID | None
    outbox_ids: list[int]
    movements: list[LineMovement]


DUPLICATE = Accepted(True, None, [], [])


def public_headers(headers: Mapping[str, str], also_secret: frozenset[str] = frozenset()) -> dict[str, str]:
    hidden = SECRET_HEADERS | also_secret
    return {k.lower(): v for k, v in headers.items() if k.lower() not in hidden}


# The hot path is hand-written SQL on asyncpg (stocksync_common.raw_connection), and a
# group of deliveries (service_layer/group_commit.py) costs two statements whatever its
# number of deliveries and lines.

# For a replay: locks the lines ($1 connection, $2 merchant, $3 time, $4-$6 the lines),
# inserting the missing ones, and returns what each has already emitted.
# `ON CONFLICT DO UPDATE` (a no-op update) takes the row lock of an existing line and
# returns its latest committed state. Lines are taken in the order of the arrays, which
# the caller sorts: that is the lock order.
LOCK_LINES_SQL = f"""
    INSERT INTO {order_lines.fullname} AS l
        (connection_id, external_order_id, line_id, merchant_id, sku, placed, shipped, cancelled, returned, updated_at)
    SELECT $1::uuid, r.external_order_id, r.line_id, $2::uuid, r.sku, 0, 0, 0, 0, $3::timestamptz
    FROM unnest($4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS r(external_order_id, line_id, sku, n)
    ORDER BY r.n
    ON CONFLICT (connection_id, external_order_id, line_id) DO UPDATE SET updated_at = l.updated_at
    RETURNING l.connection_id, l.external_order_id, l.line_id, l.placed, l.shipped, l.cancelled, l.returned
"""

# A group of deliveries: their rows first, in (connection, channel event id) order (the
# unique key serialises two copies of one delivery; a copy already stored inserts no
# row), then the order lines of the deliveries that were inserted, in (connection, order
# id, line id) order (Python's order of the arrays), each line once. Returns one row per
# inserted delivery (its id) and one per locked line (its emitted state).
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

LineKey = tuple[uuid.UUID, str, str]  # connection, external order id, line id


async def accept_delivery(
    engine: AsyncEngine,
    connection: InboundConnection,
    notification: Notification,
    raw_body: bytes,
    headers: Mapping[str, str],
    received_at: datetime,
) -> Accepted:
    """Store one delivery (a group of one, `accept_deliveries`)."""
    (accepted,) = await accept_deliveries(
        engine, [Delivery(connection, notification, raw_body, headers, received_at, current_span())]
    )
    return accepted


async def accept_deliveries(engine: AsyncEngine, group: Sequence[Delivery]) -> list[Accepted]:
    """Store deliveries, advance their order lines and write their events, in one
    transaction; the result of each, in the order given.

    A delivery already stored (same connection and channel event id), or given twice,
    is a duplicate and changes nothing. Deliveries about the same order line are applied
    in the order given, each from the state the previous one left, exactly as if they
    had arrived one after the other. If the transaction fails, nothing of the group is
    stored (the caller decides whether to try its deliveries one by one).
    """
    delivery_ids = [uuid.uuid4() for _ in group]
    first_of: dict[tuple[uuid.UUID, str], int] = {}
    for i, delivery in enumerate(group):
        first_of.setdefault(delivery.key, i)
    unique = sorted(first_of.values(), key=lambda i: (str(group[i].key[0]), group[i].key[1]))
    by_line = {i: _reports_by_line(group[i].notification.lines) for i in unique}
    # Each line once, with the deliveries that name it; sorted: the lock order.
    lines: dict[LineKey, tuple[Delivery, LineReport, list[uuid.UUID]]] = {}
    for i in unique:
        connection_id = group[i].connection.connection_id
        for (order_id, line_id), report in by_line[i].items():
            entry = lines.setdefault((connection_id, order_id, line_id), (group[i], report, []))
            entry[2].append(delivery_ids[i])
    line_keys = sorted(lines, key=lambda k: (str(k[0]), k[1], k[2]))
    async with raw_transaction(engine) as conn:
        rows = await conn.fetch(
            ACCEPT_DELIVERIES_SQL,
            [delivery_ids[i] for i in unique],
            [group[i].connection.connection_id for i in unique],
            [group[i].connection.merchant_id for i in unique],
            [group[i].notification.channel_event_id for i in unique],
            [group[i].notification.topic for i in unique],
            [group[i].received_at for i in unique],
            [group[i].raw_body for i in unique],
            [
                orjson.dumps(public_headers(group[i].headers, group[i].connection.signature_headers)).decode()
                for i in unique
            ],
            [k[0] for k in line_keys],
            [k[1] for k in line_keys],
            [k[2] for k in line_keys],
            [lines[k][0].connection.merchant_id for k in line_keys],
            [lines[k][1].sku for k in line_keys],
            [lines[k][0].received_at for k in line_keys],
            [uuid_array_literal(lines[k][2]) for k in line_keys],
        )
        inserted = {row["delivery_id"] for row in rows if row["delivery_id"] is not None}
        states = {_line_key(row): _state(row) for row in rows if row["delivery_id"] is None}
        # Applied in the order given (arrival order), each from what the previous left.
        applied = [
            _Applied(group[i].connection, delivery_ids[i], by_line[i], group[i].received_at, group[i].span)
            for i in sorted(first_of.values())
            if delivery_ids[i] in inserted
        ]
        await _advance_lines(conn, applied, states, None)
    results = {a.delivery_id: Accepted(False, a.delivery_id, a.outbox_ids, a.movements) for a in applied}
    return [results.get(delivery_ids[i], DUPLICATE) for i in range(len(group))]


async def replay_delivery(
    engine: AsyncEngine, connection: InboundConnection, delivery_id: uuid.UUID, notification: Notification
) -> tuple[list[int], list[LineMovement]]:
    """Run a stored delivery through the line state again: only what was never emitted
    (say, after a mapping fix) comes out; everything already emitted stays emitted once."""
    now = utcnow()
    by_line = _reports_by_line(notification.lines)
    replayed = _Applied(connection, delivery_id, by_line, now)
    async with raw_transaction(engine) as conn:
        locked = []
        if by_line:
            locked = await conn.fetch(
                LOCK_LINES_SQL,
                connection.connection_id,
                connection.merchant_id,
                now,
                [k[0] for k in by_line],
                [k[1] for k in by_line],
                [r.sku for r in by_line.values()],
            )
        await _advance_lines(conn, [replayed], {_line_key(row): _state(row) for row in locked}, now)
    return replayed.outbox_ids, replayed.movements


@dataclass
class _Applied:
    """A delivery being applied: what it reports per line, and what it produced."""

    connection: InboundConnection
    delivery_id: uuid.UUID
    by_line: Mapping[tuple[str, str], LineReport]
    at: datetime
    span: Any = None
    movements: list[LineMovement] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)


def _reports_by_line(reports: Sequence[LineReport]) -> dict[tuple[str, str], LineReport]:
    # A report per line: if a delivery names a line twice, its last word counts. Sorted:
    # the lock order.
    by_line = {(r.external_order_id, r.line_id): r for r in reports}
    return {key: by_line[key] for key in sorted(by_line)}


def _line_key(row: Any) -> LineKey:
    return row["connection_id"], row["external_order_id"], row["line_id"]


def _state(row: Any) -> EmittedLine:
    return EmittedLine(
        placed=row["placed"], shipped=row["shipped"], cancelled=row["cancelled"], returned=row["returned"]
    )


async def _advance_lines(
    conn: Any, applied: Sequence[_Applied], states: dict[LineKey, EmittedLine], replayed_at: datetime | None
) -> None:
    """Advance the locked lines (`states`) delivery after delivery, then save the lines'
    new states, what each delivery produced and the events in one statement (nothing at
    all when no delivery moved anything, unless it is a replay)."""
    moved: dict[LineKey, tuple[EmittedLine, datetime]] = {}
    events: list[OrderLineMoved] = []
    spans: dict[tuple[Any, ...], Any] = {}
    for delivery in applied:
        connection_id = delivery.connection.connection_id
        for (order_id, line_id), report in delivery.by_line.items():
            key = (connection_id, order_id, line_id)
            if key not in states:
                continue
            after, line_movements = advance_line(states[key], report)
            if line_movements:
                states[key] = after
                moved[key] = (after, delivery.at)
                delivery.movements.extend(line_movements)
                for movement in line_movements:
                    event = _event(delivery.connection, movement, delivery.at)
                    events.append(event)
                    if delivery.span is not None:
                        spans[(event.event_id,)] = delivery.span
    producing = [d for d in applied if d.movements or replayed_at is not None]
    if not producing:
        return
    with derived_from(spans):
        outbox = outbox_arrays(events)
    ids = await conn.fetch(
        RECORD_MOVEMENTS_SQL,
        [k[0] for k in moved],
        [k[1] for k in moved],
        [k[2] for k in moved],
        [state.placed for state, _ in moved.values()],
        [state.shipped for state, _ in moved.values()],
        [state.cancelled for state, _ in moved.values()],
        [state.returned for state, _ in moved.values()],
        [at for _, at in moved.values()],
        [d.delivery_id for d in producing],
        [len(d.movements) for d in producing],
        [orjson.dumps([_produced(m) for m in d.movements]).decode() for d in producing],
        replayed_at,
        *outbox,
    )
    outbox_ids = [row["id"] for row in ids]
    for delivery in applied:
        delivery.outbox_ids, outbox_ids = outbox_ids[: len(delivery.movements)], outbox_ids[len(delivery.movements) :]


def _produced(m: LineMovement) -> dict[str, Any]:
    return {
        "external_order_id": m.external_order_id,
        "line_id": m.line_id,
        "sku": m.sku,
        "movement": m.movement,
        "quantity": m.quantity,
    }


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


async def apply_connection_changes(changes: Sequence[ConnectionChanged], directory: ConnectionDirectory) -> None:
    """Keep the connections projection; then this process's directory forgets its copies
    (another instance's expire within their ttl)."""
    async with directory.engine.begin() as conn:
        new_ids = await claim_events(conn, inbox, CONNECTIONS.name, (c.event_id for c in changes))
        for change in changes:
            if change.event_id in new_ids:
                await _upsert_connection(conn, open_connection(change))
    directory.invalidate()


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
