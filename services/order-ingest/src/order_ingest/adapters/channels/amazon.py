"""Amazon SP-API ORDER_CHANGE notifications, forwarded over HTTPS by an EventBridge API
destination that adds the connection's API key in the `x-api-key` header.

The body is either EventBridge's standard event (`version`, `id`, `detail-type`,
`source`, `account`, `time`, `region`, `resources`, `detail`), as an API destination
delivers it by default, or the notification alone, when the rule's input transformer
extracts `$.detail`; both are read.

`OrderStatus` takes the values of Amazon's schema (selling-partner-api-models,
schemas/notifications/OrderChangeNotification.json). Every status but the two released
ones keeps the order's `Quantity` placed: Pending and PendingAvailability (not yet
paid / a pre-order) reserve like Unshipped, since the units are promised to the buyer;
InvoiceUnconfirmed is a shipped order waiting for its invoice. `QuantityShipped` is
cumulative, so PartiallyShipped is a partial shipment; Canceled and Unfulfillable
release what was not shipped. `NotificationMetadata.NotificationId` is the dedupe key;
notifications can arrive out of order, which the line state absorbs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from order_ingest.adapters.channels import MalformedDelivery
from order_ingest.adapters.signatures import verify_api_key
from order_ingest.domain.connections import InboundConnection
from order_ingest.domain.movements import LineReport, Notification

API_KEY_HEADER = "x-api-key"

# The `OrderStatus` enum of OrderChangeNotification.json, in the schema's order.
OrderStatus = Literal[
    "Pending",
    "Unshipped",
    "PartiallyShipped",
    "Shipped",
    "Canceled",
    "Unfulfillable",
    "InvoiceUnconfirmed",
    "PendingAvailability",
]
_RELEASED = frozenset({"Canceled", "Unfulfillable"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class OrderItem(_Model):
    OrderItemId: str = Field(min_length=1)
    SellerSKU: str | None = None
    Quantity: int = Field(ge=0)
    QuantityShipped: int = Field(0, ge=0)


class Summary(_Model):
    OrderStatus: OrderStatus
    OrderItems: list[OrderItem]


class OrderChangeNotification(_Model):
    AmazonOrderId: str = Field(min_length=1)
    OrderChangeType: str | None = None
    Summary: Summary


class Payload(_Model):
    OrderChangeNotification: OrderChangeNotification


class NotificationMetadata(_Model):
    NotificationId: str = Field(min_length=1)


class AmazonNotification(_Model):
    NotificationType: str
    Payload: Payload
    NotificationMetadata: NotificationMetadata


class EventBridgeEvent(_Model):
    """EventBridge's envelope; `detail` is the SP-API notification."""

    version: str
    id: str
    detail_type: str = Field(alias="detail-type")
    source: str
    detail: AmazonNotification


def _read(body: bytes) -> AmazonNotification:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = body  # pydantic names the JSON error
    # The envelope is recognised by its top-level `detail-type`, which a notification never has.
    enveloped = isinstance(document, dict) and "detail-type" in document
    try:
        if enveloped:
            return EventBridgeEvent.model_validate(document).detail
        if isinstance(document, bytes):
            return AmazonNotification.model_validate_json(document)
        return AmazonNotification.model_validate(document)
    except ValidationError as exc:
        raise MalformedDelivery.from_validation(exc) from None


def verify(connection: InboundConnection, headers: Mapping[str, str], body: bytes) -> bool:
    expected = connection.inbound.get("api_key")
    return bool(expected) and verify_api_key([str(expected)], headers.get(API_KEY_HEADER))


def parse(headers: Mapping[str, str], body: bytes) -> Notification:
    notification = _read(body)
    event_id = notification.NotificationMetadata.NotificationId
    if notification.NotificationType != "ORDER_CHANGE":
        return Notification(event_id, notification.NotificationType, ())
    change = notification.Payload.OrderChangeNotification
    status = change.Summary.OrderStatus
    reports: list[LineReport] = []
    skipped: list[str] = []
    for item in change.Summary.OrderItems:
        if not item.SellerSKU or item.Quantity == 0:
            skipped.append(item.OrderItemId)
            continue
        shipped = min(item.QuantityShipped, item.Quantity)
        reports.append(
            LineReport(
                change.AmazonOrderId,
                item.OrderItemId,
                item.SellerSKU,
                item.Quantity,
                shipped=shipped,
                cancelled=item.Quantity - shipped if status in _RELEASED else 0,
            )
        )
    return Notification(event_id, f"ORDER_CHANGE:{status}", tuple(reports), tuple(skipped))
