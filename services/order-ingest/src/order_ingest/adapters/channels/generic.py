"""The merchant's own shop or ERP, signed with Standard Webhooks.

Stocksync defines the payload (docs/channels-orders.md): the order's lines with their
cumulative quantities, `{"type": "order.created" | "order.updated" | "order.cancelled" |
"order.shipped", "timestamp", "data": {"order_id", "lines": [{"line_id", "sku",
"quantity", "shipped_quantity", "cancelled_quantity", "returned_quantity"}]}}`. For
`order.cancelled` and `order.shipped`, a missing quantity means the whole line.
`webhook-id` is stable across retries: the dedupe key.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stocksync_common import standard_webhooks

from order_ingest.adapters.channels import MalformedDelivery
from order_ingest.domain.connections import InboundConnection
from order_ingest.domain.movements import LineReport, Notification

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenericLine(_Strict):
    line_id: str = Field(min_length=1, max_length=200)
    sku: str = Field(min_length=1, max_length=200)
    quantity: int = Field(gt=0)
    shipped_quantity: int | None = Field(None, ge=0)
    cancelled_quantity: int | None = Field(None, ge=0)
    returned_quantity: int = Field(0, ge=0)


class GenericOrder(_Strict):
    order_id: str = Field(min_length=1, max_length=200)
    lines: list[GenericLine] = Field(min_length=1)


class GenericEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["order.created", "order.updated", "order.cancelled", "order.shipped"]
    data: GenericOrder


def verify(connection: InboundConnection, headers: Mapping[str, str], body: bytes) -> bool:
    return standard_webhooks.verify(
        connection.webhook_secrets,
        body,
        webhook_id=headers.get(ID_HEADER),
        timestamp=headers.get(TIMESTAMP_HEADER),
        signatures=headers.get(SIGNATURE_HEADER),
        now=time.time(),
    )


def parse(headers: Mapping[str, str], body: bytes) -> Notification:
    webhook_id = headers.get(ID_HEADER)
    if not webhook_id:
        raise MalformedDelivery.missing_header("webhook-id")
    try:
        event = GenericEvent.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedDelivery.from_validation(exc) from None
    whole = {"order.cancelled": "cancelled", "order.shipped": "shipped"}.get(event.type)
    reports = tuple(
        LineReport(
            event.data.order_id,
            line.line_id,
            line.sku,
            line.quantity,
            shipped=line.shipped_quantity
            if line.shipped_quantity is not None
            else (line.quantity if whole == "shipped" else 0),
            cancelled=line.cancelled_quantity
            if line.cancelled_quantity is not None
            else (line.quantity if whole == "cancelled" else 0),
            returned=line.returned_quantity,
        )
        for line in event.data.lines
    )
    return Notification(webhook_id, event.type, reports)
