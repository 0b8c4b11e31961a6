"""Walmart Marketplace order notifications, as Walmart documents their payloads.

`PO_CREATED` and `PO_LINE_AUTOCANCELLED` (event version V1, resource ORDER; developer.walmart.com,
us-marketplace "Purchase order (PO) created event" and "(PO) line auto-canceled event"):
`source` {eventType, eventTime, eventId}, `payload` {partnerId, purchaseOrderId,
customerOrderId, orderDate, estimatedDeliveryDate, estimatedShipDate, orderLines[]},
each line {lineNumber, sku, productName, quantity {unitOfMeasure, measurementValue (a
string)}, status, statusDate, shippingProgramType, shippingMethod, shipNodeType}. A line
has one status, so a test line is either whole (`CREATED`) or wholly cancelled
(`CANCELLED`); Walmart sends no shipment event. `source.eventId` identifies the event
across retries.

Each is signed as for a subscription with `authMethod: HMAC` (developer.walmart.com, us-marketplace
reference "Create subscription"): the HMAC-SHA256 of the complete body with the
subscription's `clientSecret`, in the header named by its `authHeaderName`
(`Authorization` unless told otherwise). Walmart does not say whether the 32 bytes are
written in hex or base64 (unverified); this sandbox writes base64, `encoding="hex"` the
other, and order-ingest accepts both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from stocksync_sandboxes.order_delivery import DeliveryResult, SandboxOrderLine, post_delivery

EventType = Literal["PO_CREATED", "PO_LINE_AUTOCANCELLED"]


DEFAULT_SIGNATURE_HEADER = "Authorization"
Encoding = Literal["base64", "hex"]


def sign(
    secret: str, body: bytes, header: str = DEFAULT_SIGNATURE_HEADER, encoding: Encoding = "base64"
) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {header: base64.b64encode(digest).decode() if encoding == "base64" else digest.hex()}


def _line_status(line: SandboxOrderLine) -> str:
    if line.shipped:
        raise ValueError("Walmart's order events carry no shipment: send shipped 0")
    if line.cancelled not in (0, line.quantity):
        raise ValueError("a Walmart event line is cancelled whole or not at all")
    return "CANCELLED" if line.cancelled else "CREATED"


def build_notification(
    event_type: EventType, purchase_order_id: str, lines: Sequence[SandboxOrderLine], event_id: str | None = None
) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "source": {"eventType": event_type, "eventTime": now, "eventId": event_id or str(uuid.uuid4())},
        "payload": {
            "partnerId": "10000000001",
            "purchaseOrderId": purchase_order_id,
            "customerOrderId": f"C{purchase_order_id}",
            "orderDate": now,
            "estimatedDeliveryDate": now,
            "estimatedShipDate": now,
            "orderLines": [
                {
                    "lineNumber": line.line_id or str(index + 1),
                    "sku": line.sku,
                    "productName": line.sku,
                    "quantity": {"unitOfMeasure": "EACH", "measurementValue": str(line.quantity)},
                    "status": _line_status(line),
                    "statusDate": now,
                    "shippingProgramType": "TWO_DAY",
                    "shippingMethod": "Standard",
                    "shipNodeType": "SellerFulfilled",
                }
                for index, line in enumerate(lines)
            ],
        },
    }


async def deliver(
    url: str, notification: dict[str, Any], secret: str, header: str = DEFAULT_SIGNATURE_HEADER
) -> DeliveryResult:
    body = orjson.dumps(notification)
    return await post_delivery(url, body, {"Content-Type": "application/json", **sign(secret, body, header)})


class SendOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook_url: str
    event_type: EventType = "PO_CREATED"
    purchase_order_id: str = Field(default_factory=lambda: str(uuid.uuid4().int % 10**13))
    lines: list[SandboxOrderLine] = Field(min_length=1)
    event_id: str | None = None


def orders_router(secret: str, signature_header: str = DEFAULT_SIGNATURE_HEADER) -> APIRouter:
    router = APIRouter(tags=["sandbox orders"])

    @router.post("/_sandbox/orders")
    async def send_order(body: SendOrder) -> dict[str, Any]:
        try:
            notification = build_notification(body.event_type, body.purchase_order_id, body.lines, body.event_id)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        result = await deliver(body.webhook_url, notification, secret, signature_header)
        return {
            "order_id": body.purchase_order_id,
            "event_id": notification["source"]["eventId"],
            "payload": notification,
            **result.as_json(),
        }

    return router
