"""WooCommerce order webhooks as a store sends them.

Topics `order.created` and `order.updated`; the body is the REST v3 order; the
signature `X-WC-Webhook-Signature` is base64(HMAC-SHA256(secret, raw body)). Every
delivery has a new `X-WC-Webhook-Delivery-ID`. Creating a webhook sends a ping whose
body is `webhook_id=<n>` (form-encoded, unsigned).
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
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from stocksync_sandboxes.order_delivery import DeliveryResult, SandboxOrderLine, post_delivery

OrderStatus = Literal["pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed"]
Topic = Literal["order.created", "order.updated"]
SOURCE_URL = "https://sandbox-woocommerce.example/"


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def build_order(
    order_id: int, status: OrderStatus, lines: Sequence[SandboxOrderLine], modified_at: datetime | None = None
) -> dict[str, Any]:
    """The REST order (`GET /wp-json/wc/v3/orders/<id>`), the body of order.* webhooks."""
    modified = modified_at or datetime.now(UTC)
    return {
        "id": order_id,
        "parent_id": 0,
        "status": status,
        "currency": "EUR",
        "version": "9.4.0",
        "prices_include_tax": False,
        "date_created_gmt": _time(modified),
        "date_modified_gmt": _time(modified),
        "total": f"{sum(line.quantity * 10 for line in lines):.2f}",
        "customer_id": 0,
        "order_key": f"wc_order_{uuid.UUID(int=order_id).hex[:13]}",
        "payment_method": "bacs",
        "line_items": [
            {
                "id": int(line.line_id) if line.line_id else order_id * 100 + index + 1,
                "name": line.sku,
                "product_id": 1000 + index,
                "variation_id": 0,
                "quantity": line.quantity,
                "tax_class": "",
                "subtotal": f"{line.quantity * 10:.2f}",
                "total": f"{line.quantity * 10:.2f}",
                "sku": line.sku,
                "price": 10,
                "meta_data": [],
            }
            for index, line in enumerate(lines)
        ],
        "refunds": [],
    }


def sign(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def webhook_headers(
    topic: Topic, secret: str, body: bytes, *, webhook_id: int = 1, delivery_id: str | None = None
) -> dict[str, str]:
    resource, event = topic.split(".")
    return {
        "Content-Type": "application/json",
        "User-Agent": "WooCommerce/9.4.0 Hookshot (WordPress/6.7)",
        "X-WC-Webhook-Source": SOURCE_URL,
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": sign(secret, body),
        "X-WC-Webhook-ID": str(webhook_id),
        "X-WC-Webhook-Delivery-ID": delivery_id or uuid.uuid4().hex,
    }


async def deliver(url: str, topic: Topic, order: dict[str, Any], secret: str) -> DeliveryResult:
    body = orjson.dumps(order)
    return await post_delivery(url, body, webhook_headers(topic, secret, body))


async def ping(url: str, webhook_id: int = 1) -> DeliveryResult:
    return await post_delivery(
        url, f"webhook_id={webhook_id}".encode(), {"Content-Type": "application/x-www-form-urlencoded"}
    )


class SendOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook_url: str
    topic: Topic = "order.created"
    status: OrderStatus = "processing"
    order_id: int = Field(default_factory=lambda: uuid.uuid4().int % 10**7)
    lines: list[SandboxOrderLine] = Field(min_length=1)


def orders_router(secret: str) -> APIRouter:
    router = APIRouter(tags=["sandbox orders"])

    @router.post("/_sandbox/orders")
    async def send_order(body: SendOrder) -> dict[str, Any]:
        order = build_order(body.order_id, body.status, body.lines)
        result = await deliver(body.webhook_url, body.topic, order, secret)
        return {"order_id": body.order_id, "payload": order, **result.as_json()}

    return router
