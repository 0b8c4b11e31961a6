"""Use cases of order-ingest: record a delivery and its orders.v1 events, keep connections."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import ConnectionChanged, OrderLineMoved, utcnow
from stocksync_common.db import claim_events
from stocksync_common.outbox import add_to_outbox
from stocksync_common.topics import CONNECTIONS

from order_ingest.adapters.tables import connections, deliveries, inbox, outbox
from order_ingest.domain.movements import Notification

# Headers that must never be stored: signatures and credentials.
_SECRET_HEADERS = frozenset({
    "authorization", "x-api-key", "x-shopify-hmac-sha256", "x-wc-webhook-signature",
    "webhook-signature", "cookie",
})


@dataclass(frozen=True)
class InboundConnection:
    connection_id: uuid.UUID
    merchant_id: uuid.UUID
    channel_type: str
    webhook_secrets: tuple[str, ...]


async def find_connection(engine: AsyncEngine, connection_id: uuid.UUID) -> InboundConnection | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(connections).where(
                    connections.c.connection_id == connection_id, connections.c.active.is_(True)
                )
            )
        ).one_or_none()
    if row is None:
        return None
    return InboundConnection(row.connection_id, row.merchant_id, row.channel_type, tuple(row.webhook_secrets))


@dataclass(frozen=True)
class Accepted:
    duplicate: bool
    delivery_id: uuid.UUID | None
    outbox_ids: list[int]
    events: int


async def accept_delivery(
    engine: AsyncEngine,
    connection: InboundConnection,
    notification: Notification,
    raw_body: bytes,
    headers: Mapping[str, str],
    received_at: datetime,
) -> Accepted:
    """Store the delivery and its events in one transaction, or nothing if it is a replay."""
    events = [
        OrderLineMoved(
            merchant_id=connection.merchant_id,
            connection_id=connection.connection_id,
            channel_type=connection.channel_type,  # type: ignore[arg-type]
            external_order_id=m.external_order_id,
            line_id=m.line_id,
            sku=m.sku,
            movement=m.movement,
            quantity=m.quantity,
            received_at=received_at,
            causation_id=f"{connection.channel_type}:{m.external_order_id}:{m.line_id}:{m.movement}",
        )
        for m in notification.movements
    ]
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
                    headers={k: v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS},
                    events_produced=len(events),
                )
                .on_conflict_do_nothing(constraint="uq_delivery_event")
                .returning(deliveries.c.delivery_id)
            )
        ).scalar_one_or_none()
        if inserted is None:
            return Accepted(True, None, [], 0)
        ids = await add_to_outbox(conn, outbox, events)
    return Accepted(False, delivery_id, ids, len(events))


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


def now() -> datetime:
    return utcnow()
