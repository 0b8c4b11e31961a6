"""Use cases of order-ingest: record a delivery and the movements it produces, keep
the connections projection, replay a delivery, forget old deliveries.

Lock order in `accept_delivery`: the delivery row (its unique key serialises two
copies of one delivery), then the order-line rows in (order id, line id) order, so two
deliveries about the same order never deadlock and each sees the other's emissions.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import ConnectionChanged, OrderLineMoved, utcnow
from stocksync_common.db import claim_events
from stocksync_common.outbox import add_to_outbox
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


def public_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() not in SECRET_HEADERS}


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
    async with engine.begin() as conn:
        inserted = (
            await conn.execute(
                pg.insert(deliveries)
                .values(
                    delivery_id=delivery_id,
                    connection_id=connection.connection_id,
                    merchant_id=connection.merchant_id,
                    channel_event_id=notification.channel_event_id,
                    topic=notification.topic,
                    received_at=received_at,
                    raw_body=raw_body,
                    headers=public_headers(headers),
                    events_produced=0,
                )
                .on_conflict_do_nothing(constraint="uq_delivery_event")
                .returning(deliveries.c.delivery_id)
            )
        ).scalar_one_or_none()
        if inserted is None:
            return Accepted(True, None, [], [])
        movements, ids = await _advance_lines(conn, connection, notification.lines, received_at)
        await _record_produced(conn, delivery_id, movements)
    return Accepted(False, delivery_id, ids, movements)


async def replay_delivery(
    engine: AsyncEngine, connection: InboundConnection, delivery_id: uuid.UUID, notification: Notification
) -> tuple[list[int], list[LineMovement]]:
    """Run a stored delivery through the line state again: only what was never emitted
    (say, after a mapping fix) comes out; everything already emitted stays emitted once."""
    now = utcnow()
    async with engine.begin() as conn:
        movements, ids = await _advance_lines(conn, connection, notification.lines, now)
        await _record_produced(conn, delivery_id, movements, replayed_at=now)
    return ids, movements


async def _record_produced(
    conn: AsyncConnection, delivery_id: uuid.UUID, movements: list[LineMovement], replayed_at: datetime | None = None
) -> None:
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
    values: dict[str, Any] = {
        "events_produced": deliveries.c.events_produced + len(produced),
        "produced": deliveries.c.produced.op("||")(sa.literal(produced, type_=pg.JSONB)),
    }
    if replayed_at is not None:
        values["replayed_at"] = replayed_at
    await conn.execute(sa.update(deliveries).where(deliveries.c.delivery_id == delivery_id).values(**values))


async def _advance_lines(
    conn: AsyncConnection, connection: InboundConnection, reports: Sequence[LineReport], received_at: datetime
) -> tuple[list[LineMovement], list[int]]:
    if not reports:
        return [], []
    key = order_lines.c
    # A report per line: if a delivery names a line twice, its last word counts.
    by_line = {(r.external_order_id, r.line_id): r for r in reports}
    ordered_keys = sorted(by_line)
    await conn.execute(
        pg.insert(order_lines)
        .values(
            [
                {
                    "connection_id": connection.connection_id,
                    "external_order_id": order_id,
                    "line_id": line_id,
                    "merchant_id": connection.merchant_id,
                    "sku": by_line[(order_id, line_id)].sku,
                    "placed": 0,
                    "shipped": 0,
                    "cancelled": 0,
                    "returned": 0,
                    "updated_at": received_at,
                }
                for order_id, line_id in ordered_keys
            ]
        )
        .on_conflict_do_nothing()
    )
    rows = (
        await conn.execute(
            sa.select(order_lines)
            .where(
                key.connection_id == connection.connection_id,
                sa.tuple_(key.external_order_id, key.line_id).in_(ordered_keys),
            )
            .order_by(key.external_order_id, key.line_id)
            .with_for_update()
        )
    ).all()
    movements: list[LineMovement] = []
    for row in rows:
        report = by_line[(row.external_order_id, row.line_id)]
        before = LineState(row.placed, row.shipped, row.cancelled, row.returned)
        after, line_movements = advance_line(before, report)
        if not line_movements:
            continue
        movements.extend(line_movements)
        await conn.execute(
            sa.update(order_lines)
            .where(
                key.connection_id == connection.connection_id,
                key.external_order_id == row.external_order_id,
                key.line_id == row.line_id,
            )
            .values(
                placed=after.placed,
                shipped=after.shipped,
                cancelled=after.cancelled,
                returned=after.returned,
                updated_at=received_at,
            )
        )
    events = [_event(connection, m, received_at) for m in movements]
    ids = await add_to_outbox(conn, outbox, events)
    return movements, ids


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
                await _upsert_connection(conn, change)


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
