"""Walmart Marketplace order notifications (PO_CREATED and order line updates).

The payload carries the purchase order with each line's statuses and the quantity in
each status, so a partial shipment or cancellation is read as such. `source.eventId` is
the dedupe key. The HMAC scheme is in `signatures.verify_walmart_hmac` (unverified).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from order_ingest.adapters.channels import MalformedDelivery
from order_ingest.adapters.signatures import verify_walmart_hmac
from order_ingest.domain.connections import InboundConnection
from order_ingest.domain.movements import LineReport, Notification

SIGNATURE_HEADER = "wm_sec.signature"
TIMESTAMP_HEADER = "wm_sec.timestamp"

_SHIPPED = frozenset({"Shipped", "Delivered"})
_RELEASED = frozenset({"Cancelled"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Quantity(_Model):
    unitOfMeasurement: str = "EACH"
    # Walmart writes amounts as strings ("1"); lax parsing reads them as integers.
    amount: int = Field(ge=0)


class LineStatus(_Model):
    status: str
    statusQuantity: Quantity


class LineStatuses(_Model):
    orderLineStatus: list[LineStatus] = []


class Item(_Model):
    sku: str | None = None


class OrderLine(_Model):
    lineNumber: str = Field(min_length=1)
    item: Item
    orderLineQuantity: Quantity
    orderLineStatuses: LineStatuses = LineStatuses()


class OrderLines(_Model):
    orderLine: list[OrderLine]


class PurchaseOrder(_Model):
    purchaseOrderId: str = Field(min_length=1)
    orderLines: OrderLines


class Source(_Model):
    eventType: str = Field(min_length=1)
    eventId: str = Field(min_length=1)


class WalmartNotification(_Model):
    source: Source
    payload: PurchaseOrder


def verify(connection: InboundConnection, headers: Mapping[str, str], body: bytes, path_and_query: str) -> bool:
    return verify_walmart_hmac(
        connection.webhook_secrets,
        body,
        method="POST",
        path_and_query=path_and_query,
        timestamp=headers.get(TIMESTAMP_HEADER),
        signature=headers.get(SIGNATURE_HEADER),
        now_ms=int(time.time() * 1000),
    )


def parse(headers: Mapping[str, str], body: bytes) -> Notification:
    try:
        notification = WalmartNotification.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedDelivery.from_validation(exc) from None
    order = notification.payload
    reports: list[LineReport] = []
    skipped: list[str] = []
    for line in order.orderLines.orderLine:
        ordered = line.orderLineQuantity.amount
        if not line.item.sku or ordered == 0:
            skipped.append(line.lineNumber)
            continue
        statuses = line.orderLineStatuses.orderLineStatus
        reports.append(
            LineReport(
                order.purchaseOrderId,
                line.lineNumber,
                line.item.sku,
                ordered,
                shipped=sum(s.statusQuantity.amount for s in statuses if s.status in _SHIPPED),
                cancelled=sum(s.statusQuantity.amount for s in statuses if s.status in _RELEASED),
            )
        )
    return Notification(notification.source.eventId, notification.source.eventType, tuple(reports), tuple(skipped))
