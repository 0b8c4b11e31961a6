"""Walmart Marketplace order notifications (Notifications API, resource ORDER).

Two shapes of purchase order are read:

- the event payload Walmart documents for `PO_CREATED` and `PO_LINE_AUTOCANCELLED`
  (developer.walmart.com, us-marketplace "Purchase order (PO) created event" and
  "(PO) line auto-canceled event", event version V1): `payload.orderLines` is a list of
  lines, each with `sku`, `quantity.measurementValue` (a string) and one `status`
  (`CREATED`, `CANCELLED`, ...);
- the Orders API purchase order (`orderLines.orderLine[]` with `item.sku`,
  `orderLineQuantity.amount` and the quantity in each of `orderLineStatuses`), which
  says how much of a line is shipped or cancelled.

Statuses are compared without regard to case (the events write `CANCELLED`, the Orders
API `Cancelled`). `source.eventId` is the dedupe key.

Verification is Walmart's subscription `authMethod: HMAC`: the HMAC-SHA256 of the
complete body with the subscription's `clientSecret` (the connection's webhook secret),
in the header the merchant named as `authHeaderName` when subscribing: the connection's
`inbound.signature_header`, `Authorization` when not set (Walmart's guide: "HMACSHA256
and clientSecret in the authorization header"). See `signatures.verify_hmac_sha256_of_body`.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from order_ingest.adapters.channels import MalformedDelivery
from order_ingest.adapters.signatures import verify_hmac_sha256_of_body
from order_ingest.domain.connections import InboundConnection
from order_ingest.domain.movements import LineReport, Notification

# The header Walmart puts the HMAC in unless the connection names another one.
DEFAULT_SIGNATURE_HEADER = "Authorization"

_SHIPPED = frozenset({"shipped", "delivered"})
_RELEASED = frozenset({"cancelled"})


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
    """A line of the Orders API purchase order."""

    lineNumber: str = Field(min_length=1)
    item: Item
    orderLineQuantity: Quantity
    orderLineStatuses: LineStatuses = LineStatuses()


class OrderLines(_Model):
    orderLine: list[OrderLine]


class EventQuantity(_Model):
    unitOfMeasure: str = "EACH"
    measurementValue: int = Field(ge=0)


class EventOrderLine(_Model):
    """A line of the PO_CREATED / PO_LINE_AUTOCANCELLED event payload."""

    lineNumber: str = Field(min_length=1)
    sku: str | None = None
    quantity: EventQuantity
    status: str = "CREATED"


class PurchaseOrder(_Model):
    purchaseOrderId: str = Field(min_length=1)
    orderLines: list[EventOrderLine] | OrderLines


class Source(_Model):
    eventType: str = Field(min_length=1)
    eventId: str = Field(min_length=1)


class WalmartNotification(_Model):
    source: Source
    payload: PurchaseOrder


def signature_header(connection: InboundConnection) -> str:
    """The header (lower case) the connection's Walmart subscription signs in."""
    return str(connection.inbound.get("signature_header") or DEFAULT_SIGNATURE_HEADER).lower()


def verify(connection: InboundConnection, headers: Mapping[str, str], body: bytes) -> bool:
    return verify_hmac_sha256_of_body(connection.webhook_secrets, body, headers.get(signature_header(connection)))


def _event_line(order_id: str, line: EventOrderLine) -> LineReport:
    ordered, status = line.quantity.measurementValue, line.status.lower()
    assert line.sku is not None
    return LineReport(
        order_id,
        line.lineNumber,
        line.sku,
        ordered,
        shipped=ordered if status in _SHIPPED else 0,
        cancelled=ordered if status in _RELEASED else 0,
    )


def _orders_api_line(order_id: str, line: OrderLine) -> LineReport:
    statuses = line.orderLineStatuses.orderLineStatus
    assert line.item.sku is not None
    return LineReport(
        order_id,
        line.lineNumber,
        line.item.sku,
        line.orderLineQuantity.amount,
        shipped=sum(s.statusQuantity.amount for s in statuses if s.status.lower() in _SHIPPED),
        cancelled=sum(s.statusQuantity.amount for s in statuses if s.status.lower() in _RELEASED),
    )


def parse(headers: Mapping[str, str], body: bytes) -> Notification:
    try:
        notification = WalmartNotification.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedDelivery.from_validation(exc) from None
    order = notification.payload
    reports: list[LineReport] = []
    skipped: list[str] = []
    if isinstance(order.orderLines, OrderLines):
        for line in order.orderLines.orderLine:
            if not line.item.sku or line.orderLineQuantity.amount == 0:
                skipped.append(line.lineNumber)
            else:
                reports.append(_orders_api_line(order.purchaseOrderId, line))
    else:
        for event_line in order.orderLines:
            if not event_line.sku or event_line.quantity.measurementValue == 0:
                skipped.append(event_line.lineNumber)
            else:
                reports.append(_event_line(order.purchaseOrderId, event_line))
    return Notification(notification.source.eventId, notification.source.eventType, tuple(reports), tuple(skipped))
