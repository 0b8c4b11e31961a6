"""The merchant's audit of inbound deliveries: `GET /v1/deliveries`, replay.

A delivery is what a channel sent (raw body, headers without signatures or keys) and
what it produced. Replaying runs the stored body through the order-line state again:
movements already emitted are not emitted twice, so a replay is always safe.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from stocksync_common.auth import MerchantId
from stocksync_common.bounds import Timestamp
from stocksync_common.runtime import RuntimeDep

from order_ingest.adapters.delivery_store import stored_deliveries, stored_delivery
from order_ingest.service_layer.deliveries import ReplayRefused, replay_stored_delivery

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


@router.get("/deliveries", response_model=list[DeliveryOut])
async def list_deliveries(
    runtime: RuntimeDep,
    merchant_id: MerchantId,
    connection_id: uuid.UUID | None = None,
    before: Annotated[Timestamp | None, Query(description="Only deliveries received before this time")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryOut]:
    """Deliveries of this merchant, newest first, kept for the configured retention."""
    rows = await stored_deliveries(runtime.engine, merchant_id, connection_id=connection_id, before=before, limit=limit)
    return [_out(row) for row in rows]


@router.get("/deliveries/{delivery_id}", response_model=DeliveryOut)
async def get_delivery(delivery_id: uuid.UUID, runtime: RuntimeDep, merchant_id: MerchantId) -> DeliveryOut:
    row = await stored_delivery(runtime.engine, merchant_id, delivery_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such delivery")
    return _out(row)


# The answer to each refusal.
REPLAY_REFUSED = {
    "unknown_delivery": status.HTTP_404_NOT_FOUND,
    "inactive_connection": status.HTTP_404_NOT_FOUND,
    "malformed": status.HTTP_422_UNPROCESSABLE_ENTITY,
}


@router.post("/deliveries/{delivery_id}/replay", response_model=ReplayOut)
async def replay(delivery_id: uuid.UUID, runtime: RuntimeDep, merchant_id: MerchantId) -> ReplayOut:
    """Process a stored delivery again; only movements never emitted come out."""
    try:
        movements = await replay_stored_delivery(runtime.units, merchant_id, delivery_id)
    except ReplayRefused as refused:
        raise HTTPException(REPLAY_REFUSED[refused.reason], refused.detail) from None
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
