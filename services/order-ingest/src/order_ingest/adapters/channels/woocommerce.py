"""WooCommerce order webhooks (order.created, order.updated) and the creation ping.

The body is the REST order. Its `status` says what happened to every line: a
cancelled, failed or refunded order releases what it reserved, a completed order has
shipped. `X-WC-Webhook-Delivery-ID` is new for every delivery, so it cannot dedupe:
the dedupe key is the order id and its status (a status transition happens once).
A refund of a completed order says nothing about restocking, so it produces no return.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from order_ingest.adapters.channels import MalformedDelivery
from order_ingest.adapters.signatures import verify_hmac_sha256_base64
from order_ingest.domain.connections import InboundConnection
from order_ingest.domain.movements import LineReport, Notification

SIGNATURE_HEADER = "x-wc-webhook-signature"
TOPIC_HEADER = "x-wc-webhook-topic"

# When a webhook is created WooCommerce posts `webhook_id=<n>`, unsigned: answer 200.
_PING = re.compile(rb"^webhook_id=\d+$")

_RELEASED = frozenset({"cancelled", "failed", "refunded"})
_SHIPPED = frozenset({"completed"})
# A checkout draft has reserved nothing yet (WooCommerce blocks checkout).
_NOT_YET_PLACED = frozenset({"checkout-draft"})


class WooLineItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int
    sku: str | None = None
    quantity: int = Field(ge=0)


class WooOrder(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int
    status: str = Field(min_length=1)
    line_items: list[WooLineItem]


def is_ping(body: bytes) -> bool:
    return _PING.match(body.strip()) is not None


def verify(connection: InboundConnection, headers: Mapping[str, str], body: bytes) -> bool:
    return verify_hmac_sha256_base64(connection.webhook_secrets, body, headers.get(SIGNATURE_HEADER))


def parse(headers: Mapping[str, str], body: bytes) -> Notification:
    topic = headers.get(TOPIC_HEADER)
    if not topic:
        raise MalformedDelivery.missing_header("X-WC-Webhook-Topic")
    try:
        order = WooOrder.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedDelivery.from_validation(exc) from None
    event_id = f"order:{order.id}:status:{order.status}"
    if not topic.startswith("order."):
        return Notification(event_id, topic, ())
    reports: list[LineReport] = []
    skipped: list[str] = []
    for line in order.line_items:
        if not line.sku or line.quantity == 0:
            skipped.append(str(line.id))
            continue
        ordered = 0 if order.status in _NOT_YET_PLACED else line.quantity
        reports.append(
            LineReport(
                str(order.id),
                str(line.id),
                line.sku,
                ordered,
                shipped=ordered if order.status in _SHIPPED else 0,
                cancelled=ordered if order.status in _RELEASED else 0,
            )
        )
    return Notification(event_id, topic, tuple(reports), tuple(skipped))
