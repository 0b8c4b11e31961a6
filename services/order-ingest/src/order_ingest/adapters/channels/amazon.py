"""Amazon SP-API ORDER_CHANGE notifications, forwarded over HTTPS by an EventBridge API
destination that adds the connection's API key in the `x-api-key` header.

`Summary.OrderItems[].QuantityShipped` is cumulative, so a PartiallyShipped order is a
partial shipment; a Canceled (or Unfulfillable) order releases what was not shipped.
`NotificationMetadata.NotificationId` is the dedupe key; notifications can arrive out of
order, which the line state absorbs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from order_ingest.adapters.channels import MalformedDelivery
from order_ingest.adapters.signatures import verify_api_key
from order_ingest.domain.connections import InboundConnection
from order_ingest.domain.movements import LineReport, Notification

API_KEY_HEADER = "x-api-key"

OrderStatus = Literal["Pending", "Unshipped", "PartiallyShipped", "Shipped", "Canceled", "Unfulfillable"]
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


def verify(connection: InboundConnection, headers: Mapping[str, str], body: bytes) -> bool:
    expected = connection.inbound.get("api_key")
    return bool(expected) and verify_api_key([str(expected)], headers.get(API_KEY_HEADER))


def parse(headers: Mapping[str, str], body: bytes) -> Notification:
    try:
        notification = AmazonNotification.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedDelivery.from_validation(exc) from None
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
