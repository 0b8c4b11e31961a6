"""Shopify order webhooks (orders/create, orders/cancelled, orders/fulfilled, any orders/*).

The body is the REST Order resource, whatever the topic, so every topic is read as the
order's current state: `current_quantity` (what is left after removals and
cancellations) and `fulfillable_quantity` (what is left to ship) give the cancelled and
shipped quantities of each line. `X-Shopify-Event-Id` is the same on every retry of one
event, so it is the dedupe key; `X-Shopify-Webhook-Id` is not.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from order_ingest.adapters.channels import MalformedDelivery
from order_ingest.adapters.signatures import verify_hmac_sha256_base64
from order_ingest.domain.connections import InboundConnection
from order_ingest.domain.movements import LineReport, Notification

SIGNATURE_HEADER = "x-shopify-hmac-sha256"
EVENT_ID_HEADER = "x-shopify-event-id"
TOPIC_HEADER = "x-shopify-topic"


class ShopifyLineItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int
    sku: str | None = None
    quantity: int = Field(ge=0)
    current_quantity: int | None = Field(None, ge=0)
    fulfillable_quantity: int | None = Field(None, ge=0)


class ShopifyOrder(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int
    name: str | None = None
    cancelled_at: str | None = None
    line_items: list[ShopifyLineItem]


def verify(connection: InboundConnection, headers: Mapping[str, str], body: bytes) -> bool:
    return verify_hmac_sha256_base64(connection.webhook_secrets, body, headers.get(SIGNATURE_HEADER))


def parse(headers: Mapping[str, str], body: bytes) -> Notification:
    event_id = headers.get(EVENT_ID_HEADER)
    topic = headers.get(TOPIC_HEADER)
    if not event_id:
        raise MalformedDelivery.missing_header("X-Shopify-Event-Id")
    if not topic:
        raise MalformedDelivery.missing_header("X-Shopify-Topic")
    try:
        order = ShopifyOrder.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedDelivery.from_validation(exc) from None
    if not topic.startswith("orders/"):
        return Notification(event_id, topic, ())
    reports: list[LineReport] = []
    skipped: list[str] = []
    for line in order.line_items:
        if not line.sku or line.quantity == 0:
            # A line with no SKU cannot be matched to stock; it is reported, not refused,
            # because refusing would make Shopify retry a delivery that can never pass.
            skipped.append(str(line.id))
            continue
        current = line.current_quantity
        if current is None:
            current = 0 if order.cancelled_at else line.quantity
        if line.fulfillable_quantity is not None:
            shipped = max(0, current - line.fulfillable_quantity)
        else:
            shipped = current if topic == "orders/fulfilled" else 0
        reports.append(
            LineReport(
                str(order.id), str(line.id), line.sku, line.quantity, shipped=shipped, cancelled=line.quantity - current
            )
        )
    return Notification(event_id, topic, tuple(reports), tuple(skipped))
