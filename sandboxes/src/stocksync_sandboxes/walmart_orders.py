"""Walmart Marketplace order notifications (PO_CREATED, PO_LINE_UPDATED).

The payload is the purchase order with, per line, the quantity in each status
(Created, Acknowledged, Shipped, Delivered, Cancelled); amounts are strings as Walmart
writes them; `source.eventId` identifies the event across retries. The HMAC scheme
(`WM_SEC.SIGNATURE` over method, path, `WM_SEC.TIMESTAMP` and the body's SHA-256) is
unverified against Walmart's documentation and kept in one place here and in
order-ingest's `signatures.py`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from stocksync_sandboxes.order_delivery import DeliveryResult, SandboxOrderLine, post_delivery

EventType = Literal["PO_CREATED", "PO_LINE_UPDATED"]


def sign(secret: str, path_and_query: str, timestamp_ms: int, body: bytes, method: str = "POST") -> dict[str, str]:
    signed = f"{method}\n{path_and_query}\n{timestamp_ms}\n{hashlib.sha256(body).hexdigest()}".encode()
    signature = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()
    return {"WM_SEC.TIMESTAMP": str(timestamp_ms), "WM_SEC.SIGNATURE": signature}


def _quantity(amount: int) -> dict[str, str]:
    return {"unitOfMeasurement": "EACH", "amount": str(amount)}


def build_notification(
    event_type: EventType, purchase_order_id: str, lines: Sequence[SandboxOrderLine], event_id: str | None = None
) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    order_lines = []
    for index, line in enumerate(lines):
        open_quantity = line.quantity - line.shipped - line.cancelled
        statuses = [
            (status, amount)
            for status, amount in (
                ("Acknowledged", open_quantity),
                ("Shipped", line.shipped),
                ("Cancelled", line.cancelled),
            )
            if amount > 0
        ]
        order_lines.append(
            {
                "lineNumber": line.line_id or str(index + 1),
                "item": {"productName": line.sku, "sku": line.sku},
                "charges": {"charge": []},
                "orderLineQuantity": _quantity(line.quantity),
                "statusDate": now,
                "orderLineStatuses": {
                    "orderLineStatus": [
                        {"status": status, "statusQuantity": _quantity(amount)} for status, amount in statuses
                    ]
                },
            }
        )
    return {
        "source": {
            "eventType": event_type,
            "eventId": event_id or str(uuid.uuid4()),
            "eventTime": now,
            "partnerId": "10000000001",
            "eventVersion": "V1",
        },
        "payload": {
            "purchaseOrderId": purchase_order_id,
            "customerOrderId": f"C{purchase_order_id}",
            "orderDate": now,
            "orderLines": {"orderLine": order_lines},
        },
    }


async def deliver(url: str, notification: dict[str, Any], secret: str) -> DeliveryResult:
    body = orjson.dumps(notification)
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {"Content-Type": "application/json", **sign(secret, path, int(time.time() * 1000), body)}
    return await post_delivery(url, body, headers)


class SendOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook_url: str
    event_type: EventType = "PO_CREATED"
    purchase_order_id: str = Field(default_factory=lambda: str(uuid.uuid4().int % 10**13))
    lines: list[SandboxOrderLine] = Field(min_length=1)
    event_id: str | None = None


def orders_router(secret: str) -> APIRouter:
    router = APIRouter(tags=["sandbox orders"])

    @router.post("/_sandbox/orders")
    async def send_order(body: SendOrder) -> dict[str, Any]:
        notification = build_notification(body.event_type, body.purchase_order_id, body.lines, body.event_id)
        result = await deliver(body.webhook_url, notification, secret)
        return {
            "order_id": body.purchase_order_id,
            "event_id": notification["source"]["eventId"],
            "payload": notification,
            **result.as_json(),
        }

    return router
