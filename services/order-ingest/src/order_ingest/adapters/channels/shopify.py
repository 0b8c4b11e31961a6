"""Shopify order webhooks (orders/create, orders/cancelled, orders/fulfilled).

The body is the REST Order resource. `X-Shopify-Event-Id` is the same on every retry
of one event, so it is the dedupe key; `X-Shopify-Webhook-Id` is not used for that.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from order_ingest.domain.movements import LineMovement, Notification

SIGNATURE_HEADER = "x-shopify-hmac-sha256"
EVENT_ID_HEADER = "x-shopify-event-id"
TOPIC_HEADER = "x-shopify-topic"

_MOVEMENT_BY_TOPIC = {"orders/create": "placed", "orders/cancelled": "cancelled", "orders/fulfilled": "shipped"}


class ShopifyLineItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int
    sku: str | None = None
    quantity: int = Field(ge=0)
    fulfillable_quantity: int | None = Field(None, ge=0)


class ShopifyOrder(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int
    name: str | None = None
    cancelled_at: str | None = None
    line_items: list[ShopifyLineItem]


class MissingHeader(ValueError):
    pass


def parse_notification(headers: Mapping[str, str], body: bytes) -> Notification:
    """Raises MissingHeader or pydantic.ValidationError; the caller answers 422."""
    event_id = headers.get(EVENT_ID_HEADER)
    topic = headers.get(TOPIC_HEADER)
    if not event_id:
        raise MissingHeader("header X-Shopify-Event-Id is required")
    if not topic:
        raise MissingHeader("header X-Shopify-Topic is required")
    order = ShopifyOrder.model_validate_json(body)
    movement = _MOVEMENT_BY_TOPIC.get(topic)
    if movement is None:
        return Notification(event_id, topic, ())
    movements: list[LineMovement] = []
    skipped: list[str] = []
    for line in order.line_items:
        if not line.sku or line.quantity == 0:
            # A line with no SKU cannot be matched to stock; it is reported, not refused,
            # because refusing would make Shopify retry a delivery that can never pass.
            skipped.append(str(line.id))
            continue
        movements.append(LineMovement(str(order.id), str(line.id), line.sku, movement, line.quantity))  # type: ignore[arg-type]
    return Notification(event_id, topic, tuple(movements), tuple(skipped))
