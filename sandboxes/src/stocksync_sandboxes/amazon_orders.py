"""Amazon SP-API ORDER_CHANGE notifications, as an EventBridge API destination forwards
them over HTTPS with the connection's API key in `x-api-key`.

The notification follows Amazon's schema (selling-partner-api-models,
schemas/notifications/OrderChangeNotification.json): `OrderStatus` takes every value of
its enum, `QuantityShipped` is cumulative. By default it is delivered as EventBridge
does, in the standard event envelope (`version`, `id`, `detail-type`, `source`,
`account`, `time`, `region`, `resources`, `detail`); `envelope: false` sends what a rule
whose input transformer extracts `$.detail` sends. Each notification has its own
`NotificationId` (a retry keeps it); notifications can arrive out of order.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from stocksync_sandboxes.order_delivery import DeliveryResult, SandboxOrderLine, post_delivery

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
API_KEY_HEADER = "x-api-key"
# What EventBridge writes in `source` and `detail-type` for SP-API notifications
# (the partner event source is `aws.partner/sellingpartnerapi.amazon/<account>`).
EVENT_SOURCE = "aws.partner/sellingpartnerapi.amazon/amzn1.sellerapps.app.sandbox"
DETAIL_TYPE = "ORDER_CHANGE"


def amazon_order_id() -> str:
    digits = f"{uuid.uuid4().int % 10**17:017d}"
    return f"{digits[:3]}-{digits[3:10]}-{digits[10:]}"


def build_notification(
    *,
    seller_id: str,
    order_id: str,
    status: OrderStatus,
    lines: Sequence[SandboxOrderLine],
    notification_id: str | None = None,
    marketplace_id: str = "A1PA6795UKMFR9",
    change_type: str = "OrderStatusChange",
) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "NotificationVersion": "1.0",
        "NotificationType": "ORDER_CHANGE",
        "PayloadVersion": "1.0",
        "EventTime": now,
        "Payload": {
            "OrderChangeNotification": {
                "NotificationLevel": "OrderLevel",
                "SellerId": seller_id,
                "AmazonOrderId": order_id,
                "OrderChangeType": change_type,
                "OrderChangeTrigger": {"TimeOfOrderChange": now, "ChangeReason": "OrderStatusChange"},
                "Summary": {
                    "MarketplaceId": marketplace_id,
                    "OrderStatus": status,
                    "PurchaseDate": now,
                    "DestinationPostalCode": "10115",
                    "FulfillmentType": "MFN",
                    "OrderType": "StandardOrder",
                    "NumberOfItemsShipped": sum(line.shipped for line in lines),
                    "NumberOfItemsUnshipped": sum(line.quantity - line.shipped for line in lines),
                    "OrderItems": [
                        {
                            "OrderItemId": line.line_id or f"{int(uuid.uuid4().int % 10**14):014d}",
                            "SellerSKU": line.sku,
                            "SupplySourceId": None,
                            "Quantity": line.quantity,
                            "QuantityShipped": line.shipped,
                        }
                        for line in lines
                    ],
                },
            }
        },
        "NotificationMetadata": {
            "ApplicationId": "amzn1.sellerapps.app.sandbox",
            "SubscriptionId": "sandbox-subscription",
            "PublishTime": now,
            "NotificationId": notification_id or str(uuid.uuid4()),
        },
    }


def eventbridge_event(notification: dict[str, Any], account: str = "123456789012") -> dict[str, Any]:
    """The notification in EventBridge's standard event envelope."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": EVENT_SOURCE,
        "account": account,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [],
        "detail": notification,
    }


def headers(api_key: str) -> dict[str, str]:
    return {"Content-Type": "application/json", API_KEY_HEADER: api_key}


async def deliver(url: str, notification: dict[str, Any], api_key: str) -> DeliveryResult:
    return await post_delivery(url, orjson.dumps(notification), headers(api_key))


class SendOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook_url: str
    status: OrderStatus = "Unshipped"
    order_id: str = Field(default_factory=amazon_order_id)
    lines: list[SandboxOrderLine] = Field(min_length=1)
    notification_id: str | None = None
    envelope: bool = True


def orders_router(seller_id: str, api_key: str) -> APIRouter:
    router = APIRouter(tags=["sandbox orders"])

    @router.post("/_sandbox/orders")
    async def send_order(body: SendOrder) -> dict[str, Any]:
        notification = build_notification(
            seller_id=seller_id,
            order_id=body.order_id,
            status=body.status,
            lines=body.lines,
            notification_id=body.notification_id,
        )
        delivered = eventbridge_event(notification) if body.envelope else notification
        result = await deliver(body.webhook_url, delivered, api_key)
        return {
            "order_id": body.order_id,
            "event_id": notification["NotificationMetadata"]["NotificationId"],
            "payload": notification,
            **result.as_json(),
        }

    return router
