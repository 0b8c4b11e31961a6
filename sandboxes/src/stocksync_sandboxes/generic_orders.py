"""The merchant's own shop or ERP sending orders, signed with Standard Webhooks.

Payload (Stocksync's own, docs/channels-orders.md): `{"type", "timestamp", "data":
{"order_id", "lines": [{"line_id", "sku", "quantity", "shipped_quantity",
"cancelled_quantity", "returned_quantity"}]}}` with cumulative quantities.
Signature: `webhook-signature: v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`,
one entry per signing key (several while the sender rotates), the key being the base64
part of the `whsec_` secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from stocksync_sandboxes.order_delivery import DeliveryResult, SandboxOrderLine, post_delivery

EventType = Literal["order.created", "order.updated", "order.cancelled", "order.shipped"]


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(webhook_id: str, timestamp: int, body: bytes, signing_secrets: Sequence[str]) -> dict[str, str]:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    signatures = " ".join(
        "v1," + base64.b64encode(hmac.new(_key(s), signed, hashlib.sha256).digest()).decode() for s in signing_secrets
    )
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }


def build_event(
    event_type: EventType, order_id: str, lines: Sequence[SandboxOrderLine], returned: dict[str, int] | None = None
) -> dict[str, Any]:
    return {
        "type": event_type,
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {
            "order_id": order_id,
            "lines": [
                {
                    "line_id": line.line_id or str(index + 1),
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "shipped_quantity": line.shipped,
                    "cancelled_quantity": line.cancelled,
                    "returned_quantity": (returned or {}).get(line.line_id or str(index + 1), 0),
                }
                for index, line in enumerate(lines)
            ],
        },
    }


async def deliver(
    url: str,
    event: dict[str, Any],
    signing_secrets: Sequence[str],
    *,
    webhook_id: str | None = None,
    timestamp: int | None = None,
) -> tuple[str, DeliveryResult]:
    body = orjson.dumps(event)
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    headers = sign(webhook_id, timestamp if timestamp is not None else int(time.time()), body, signing_secrets)
    return webhook_id, await post_delivery(url, body, headers)


class SendOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook_url: str
    type: EventType = "order.created"
    order_id: str = Field(default_factory=lambda: str(uuid.uuid4().int % 10**9))
    lines: list[SandboxOrderLine] = Field(min_length=1)
    webhook_id: str | None = None


def orders_router(signing_secrets: Sequence[str]) -> APIRouter:
    """`POST /_sandbox/orders`: the shop sends an order event to `webhook_url`."""
    router = APIRouter(tags=["sandbox orders"])

    @router.post("/_sandbox/orders")
    async def send_order(body: SendOrder) -> dict[str, Any]:
        event = build_event(body.type, body.order_id, body.lines)
        webhook_id, result = await deliver(body.webhook_url, event, signing_secrets, webhook_id=body.webhook_id)
        return {"order_id": body.order_id, "event_id": webhook_id, "payload": event, **result.as_json()}

    return router
