"""The merchant's audit of inbound deliveries: `GET /v1/deliveries`, replay.

A delivery is what a channel sent (raw body, headers without signatures or keys) and
what it produced. Replaying runs the stored body through the order-line state again:
movements already emitted are not emitted twice, so a replay is always safe.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from stocksync_common.auth import MerchantId
from stocksync_common.bounds import Timestamp
from stocksync_common.runtime import Runtime, RuntimeDep

from order_ingest.adapters.channels import MalformedDelivery
from order_ingest.adapters.channels.registry import PARSERS
from order_ingest.adapters.delivery_store import find_connection
from order_ingest.adapters.tables import connections, deliveries
from order_ingest.service_layer.deliveries import replay_delivery

router = APIRouter(prefix="/v1", tags=["deliveries"])


class ProducedMovement(BaseModel):
    external_order_id: str
    line_id: str
    sku: str
    movement: str
    quantity: int


class DeliveryOut(BaseModel):
    delivery_id: uuid.UUID
    connection_id: uuid.UUID
    channel_type: str | None
    channel_event_id: str = Field(description="The channel's dedupe key for this delivery")
    topic: str
    received_at: datetime
    headers: dict[str, str] = Field(description="As received, without signatures and keys")
    body: str = Field(description="The raw body as received (UTF-8)")
    events_produced: int
    produced: list[ProducedMovement]
    replayed_at: datetime | None


class ReplayOut(BaseModel):
    delivery_id: uuid.UUID
    events: int
    produced: list[ProducedMovement]


def _out(row: Any) -> DeliveryOut:
    return DeliveryOut(
        delivery_id=row.delivery_id,
        connection_id=row.connection_id,
        channel_type=row.channel_type,
        channel_event_id=row.channel_event_id,
        topic=row.topic,
        received_at=row.received_at,
        headers=dict(row.headers),
        body=bytes(row.raw_body).decode("utf-8", errors="replace"),
        events_produced=row.events_produced,
        produced=[ProducedMovement(**p) for p in row.produced],
        replayed_at=row.replayed_at,
    )


def _query() -> sa.Select[Any]:
    return sa.select(deliveries, connections.c.channel_type).select_from(
        deliveries.outerjoin(connections, connections.c.connection_id == deliveries.c.connection_id)
    )


@router.get("/deliveries", response_model=list[DeliveryOut])
async def list_deliveries(
    runtime: RuntimeDep,
    merchant_id: MerchantId,
    connection_id: uuid.UUID | None = None,
    before: Annotated[Timestamp | None, Query(description="Only deliveries received before this time")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryOut]:
    """Deliveries of this merchant, newest first, kept for the configured retention."""
    query = _query().where(deliveries.c.merchant_id == merchant_id)
    if connection_id is not None:
        query = query.where(deliveries.c.connection_id == connection_id)
    if before is not None:
        query = query.where(deliveries.c.received_at < before)
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(query.order_by(deliveries.c.received_at.desc()).limit(limit))).all()
    return [_out(row) for row in rows]


async def _delivery(runtime: Runtime, merchant_id: uuid.UUID, delivery_id: uuid.UUID) -> Any:
    async with runtime.engine.connect() as conn:
        row = (
            await conn.execute(
                _query().where(deliveries.c.delivery_id == delivery_id, deliveries.c.merchant_id == merchant_id)
            )
        ).one_or_none()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such delivery")
    return row


@router.get("/deliveries/{delivery_id}", response_model=DeliveryOut)
async def get_delivery(delivery_id: uuid.UUID, runtime: RuntimeDep, merchant_id: MerchantId) -> DeliveryOut:
    return _out(await _delivery(runtime, merchant_id, delivery_id))


@router.post("/deliveries/{delivery_id}/replay", response_model=ReplayOut)
async def replay(delivery_id: uuid.UUID, runtime: RuntimeDep, merchant_id: MerchantId) -> ReplayOut:
    """Process a stored delivery again; only movements never emitted come out."""
    row = await _delivery(runtime, merchant_id, delivery_id)
    connection = await find_connection(runtime.engine, row.connection_id)
    if connection is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the delivery's connection is no longer active")
    try:
        notification = PARSERS[connection.channel_type](dict(row.headers), bytes(row.raw_body))
    except MalformedDelivery as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, exc.detail) from None
    ids, movements = await replay_delivery(runtime.engine, connection, delivery_id, notification)
    if ids:
        runtime.wake_relay()
    produced = [
        ProducedMovement(
            external_order_id=m.external_order_id,
            line_id=m.line_id,
            sku=m.sku,
            movement=m.movement,
            quantity=m.quantity,
        )
        for m in movements
    ]
    return ReplayOut(delivery_id=delivery_id, events=len(produced), produced=produced)
