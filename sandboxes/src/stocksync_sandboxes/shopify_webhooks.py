"""Shopify order webhooks, as the sandbox store sends them.

The pure functions (`build_order`, `order_body`, `sign_webhook`, `webhook_headers`) make
exactly what Shopify sends, so a load generator can produce deliveries without running the
sandbox. `WebhookSender` delivers them with Shopify's retry behaviour.

Shopify expects a 2xx within 5 s and otherwise retries the original payload 8 times over
4 hours. The sandbox keeps the behaviour but not the schedule: by default 3 retries after
0.2 s, 0.5 s and 1 s, so tests stay quick. The schedule is a setting.
"""

import asyncio
import base64
import hashlib
import hmac
import uuid
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, get_args

import httpx
import orjson

OrderTopic = Literal["orders/create", "orders/cancelled", "orders/fulfilled"]
ORDER_TOPICS: tuple[str, ...] = get_args(OrderTopic)
CancelReason = Literal["customer", "declined", "fraud", "inventory", "other", "staff"]
CANCEL_REASONS: tuple[str, ...] = get_args(CancelReason)

SHOPIFY_RESPONSE_TIMEOUT_SECONDS = 5.0
SHOPIFY_RETRIES = 8  # over 4 hours, for reference: the sandbox default is shorter
SANDBOX_RETRY_DELAYS = (0.2, 0.5, 1.0)

# Id ranges that look like Shopify's (13 to 14 digits, below 2**53 so JavaScript clients
# read them exactly). Variant and product ids derive from the SKU so that the same SKU
# always carries the same ids, as in a real store.
_VARIANT_ID_BASE = 40_000_000_000_000
_PRODUCT_ID_BASE = 8_000_000_000_000
_FULFILLMENT_ID_BASE = 4_000_000_000_000
_MAX_LINES_PER_ORDER = 999


@dataclass(frozen=True)
class OrderLine:
    sku: str
    quantity: int
    variant_id: int | None = None  # derived from the SKU when None
    product_id: int | None = None
    title: str | None = None
    price: str = "10.00"


def variant_id_for_sku(sku: str) -> int:
    return _VARIANT_ID_BASE + zlib.crc32(sku.encode())


def product_id_for_sku(sku: str) -> int:
    return _PRODUCT_ID_BASE + zlib.crc32(sku.encode())


def _shopify_time(moment: datetime) -> str:
    """Order timestamps as Shopify writes them: ISO 8601 to the second with an offset."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def build_order(
    *,
    order_id: int,
    order_number: int,
    lines: Sequence[OrderLine],
    created_at: datetime,
    cancelled_at: datetime | None = None,
    cancel_reason: str | None = None,
    fulfilled_at: datetime | None = None,
    currency: str = "USD",
) -> dict[str, Any]:
    """The REST Admin API Order resource, which is the body of an `orders/*` webhook.

    Line item ids derive from the order number and position, so rebuilding the same order
    (for its cancellation, say) gives the same ids. A cancelled or fulfilled line has
    nothing left to fulfil.
    """
    if not lines:
        raise ValueError("an order needs at least one line")
    if len(lines) > _MAX_LINES_PER_ORDER:
        raise ValueError(f"at most {_MAX_LINES_PER_ORDER} lines per order")
    if cancelled_at is not None and cancel_reason not in CANCEL_REASONS:
        raise ValueError(f"cancel_reason must be one of {CANCEL_REASONS}")
    closed = cancelled_at is not None or fulfilled_at is not None
    updated_at = max(d for d in (created_at, cancelled_at, fulfilled_at) if d is not None)
    line_items = [
        _line_item(
            order_id,
            index,
            line,
            cancelled=cancelled_at is not None,
            fulfilled=fulfilled_at is not None,
        )
        for index, line in enumerate(lines)
    ]
    total = sum((Decimal(line.price) * line.quantity for line in lines), Decimal("0"))
    fulfillments = []
    if fulfilled_at is not None:
        fulfillments.append(
            {
                "id": _FULFILLMENT_ID_BASE + order_number,
                "order_id": order_id,
                "status": "success",
                "created_at": _shopify_time(fulfilled_at),
                "line_items": line_items,
            }
        )
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": f"#{order_number}",
        "order_number": order_number,
        "number": order_number - 1000,
        "token": uuid.UUID(int=order_id).hex,
        "confirmed": True,
        "test": False,
        "created_at": _shopify_time(created_at),
        "updated_at": _shopify_time(updated_at),
        "processed_at": _shopify_time(created_at),
        "cancelled_at": None if cancelled_at is None else _shopify_time(cancelled_at),
        "cancel_reason": cancel_reason if cancelled_at is not None else None,
        "closed_at": _shopify_time(updated_at) if closed else None,
        "currency": currency,
        "presentment_currency": currency,
        "financial_status": "paid",
        "fulfillment_status": "fulfilled" if fulfilled_at is not None else None,
        "source_name": "web",
        "tags": "",
        "subtotal_price": f"{total:.2f}",
        "total_price": f"{total:.2f}",
        "total_discounts": "0.00",
        "total_tax": "0.00",
        "line_items": line_items,
        "fulfillments": fulfillments,
        "refunds": [],
    }


def _line_item(order_id: int, index: int, line: OrderLine, *, cancelled: bool, fulfilled: bool) -> dict[str, Any]:
    # Derived from the order id, which is unique per store across restarts.
    line_item_id = order_id * 1000 + index + 1
    title = line.title or line.sku
    return {
        "id": line_item_id,
        "admin_graphql_api_id": f"gid://shopify/LineItem/{line_item_id}",
        "variant_id": line.variant_id or variant_id_for_sku(line.sku),
        "product_id": line.product_id or product_id_for_sku(line.sku),
        "sku": line.sku,
        "title": title,
        "name": title,
        "variant_title": None,
        "vendor": "Stocksync Sandbox",
        "quantity": line.quantity,
        "current_quantity": 0 if cancelled else line.quantity,
        "fulfillable_quantity": 0 if cancelled or fulfilled else line.quantity,
        "fulfillment_status": "fulfilled" if fulfilled else None,
        "fulfillment_service": "manual",
        "price": f"{Decimal(line.price):.2f}",
        "total_discount": "0.00",
        "grams": 0,
        "requires_shipping": True,
        "taxable": True,
        "gift_card": False,
        "product_exists": True,
        "properties": [],
        "tax_lines": [],
    }


def order_body(order: dict[str, Any]) -> bytes:
    """Serialise once: the signature covers these exact bytes, retries resend them."""
    return orjson.dumps(order)


def sign_webhook(secret: bytes | str, body: bytes) -> str:
    """`X-Shopify-Hmac-Sha256`: base64 of HMAC-SHA256 over the raw body with the app secret."""
    key = secret.encode() if isinstance(secret, str) else secret
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def webhook_headers(
    *,
    topic: str,
    shop_domain: str,
    api_version: str,
    secret: bytes | str,
    body: bytes,
    event_id: str,
    webhook_id: str,
    triggered_at: datetime,
) -> dict[str, str]:
    """The headers of one delivery. `event_id` is the same on every retry of an event (the
    receiver's dedupe key); `webhook_id` is new for every delivery attempt here."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "Shopify-Captain-Hook",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": sign_webhook(secret, body),
        "X-Shopify-Shop-Domain": shop_domain,
        "X-Shopify-API-Version": api_version,
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Event-Id": event_id,
        "X-Shopify-Triggered-At": triggered_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


@dataclass(frozen=True)
class WebhookEvent:
    """One event: its bytes and triggered-at time never change, whatever is redelivered."""

    event_id: str
    topic: str
    order_id: int
    body: bytes
    triggered_at: datetime


@dataclass(frozen=True)
class DeliveryAttempt:
    webhook_id: str
    sent_at: float
    status_code: int | None  # None: no answer (connection refused, timeout)
    body: str
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def as_json(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "sent_at": self.sent_at,
            "status_code": self.status_code,
            "body": self.body,
            "error": self.error,
        }


@dataclass(frozen=True)
class Delivery:
    event: WebhookEvent
    url: str
    attempts: tuple[DeliveryAttempt, ...]

    @property
    def delivered(self) -> bool:
        return self.attempts[-1].succeeded

    def as_json(self) -> dict[str, Any]:
        last = self.attempts[-1]
        return {
            "event_id": self.event.event_id,
            "topic": self.event.topic,
            "order_id": self.event.order_id,
            "url": self.url,
            "delivered": self.delivered,
            "status_code": last.status_code,
            "body": last.body,
            "sent_at": self.attempts[0].sent_at,
            "attempts": [attempt.as_json() for attempt in self.attempts],
        }


class WebhookSender:
    def __init__(
        self,
        *,
        shop_domain: str,
        api_version: str,
        secret: str,
        retry_delays: Sequence[float],
        timeout: float,
        client: Callable[[], httpx.AsyncClient],
        wall_clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._shop_domain = shop_domain
        self._api_version = api_version
        self._secret = secret
        self._retry_delays = tuple(retry_delays)
        self._timeout = timeout
        self._client = client
        self._wall_clock = wall_clock
        self._sleep = sleep

    async def deliver(self, event: WebhookEvent, url: str) -> Delivery:
        """Send until the receiver answers 2xx or the retries run out."""
        attempts: list[DeliveryAttempt] = []
        for delay in (0.0, *self._retry_delays):
            if attempts:
                await self._sleep(delay)
            attempt = await self._attempt(event, url)
            attempts.append(attempt)
            if attempt.succeeded:
                break
        return Delivery(event=event, url=url, attempts=tuple(attempts))

    async def _attempt(self, event: WebhookEvent, url: str) -> DeliveryAttempt:
        webhook_id = str(uuid.uuid4())
        headers = webhook_headers(
            topic=event.topic,
            shop_domain=self._shop_domain,
            api_version=self._api_version,
            secret=self._secret,
            body=event.body,
            event_id=event.event_id,
            webhook_id=webhook_id,
            triggered_at=event.triggered_at,
        )
        sent_at = self._wall_clock()
        try:
            response = await self._client().post(url, content=event.body, headers=headers, timeout=self._timeout)
        except httpx.HTTPError as error:
            return DeliveryAttempt(webhook_id, sent_at, None, "", f"{type(error).__name__}: {error}")
        return DeliveryAttempt(webhook_id, sent_at, response.status_code, response.text, None)
