"""Mirakl orders as OR11 (`GET /api/orders`) returns them: Mirakl has no order webhooks.

Each polled order is one delivery whose dedupe key is the order id and its
`last_updated_date` (an order that did not change since the previous, overlapping, poll
is a duplicate). Line states: REFUSED and CANCELED release the line; SHIPPED,
TO_COLLECT, RECEIVED and CLOSED have shipped what was not cancelled; `cancelations[]`
gives partial cancellations (their quantity semantics are unverified).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from order_ingest.adapters.channels import MalformedDelivery
from order_ingest.domain.movements import LineReport, Notification

API_KEY_HEADER = "Authorization"
ORDERS_PATH = "/api/orders"
TOPIC = "OR11"

_RELEASED = frozenset({"REFUSED", "CANCELED"})
_SHIPPED = frozenset({"SHIPPED", "TO_COLLECT", "RECEIVED", "CLOSED"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Cancelation(_Model):
    quantity: int = Field(ge=0)


class MiraklOrderLine(_Model):
    order_line_id: str = Field(min_length=1)
    offer_sku: str | None = None
    quantity: int = Field(ge=0)
    order_line_state: str
    cancelations: list[Cancelation] = []


class MiraklOrder(_Model):
    order_id: str = Field(min_length=1)
    order_state: str
    last_updated_date: str = Field(min_length=1)
    order_lines: list[MiraklOrderLine]


class MiraklOrderPage(_Model):
    orders: list[dict[str, Any]]
    total_count: int = Field(ge=0)


def parse(headers: Mapping[str, str], body: bytes) -> Notification:
    try:
        order = MiraklOrder.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedDelivery.from_validation(exc) from None
    reports: list[LineReport] = []
    skipped: list[str] = []
    for line in order.order_lines:
        if not line.offer_sku or line.quantity == 0:
            skipped.append(line.order_line_id)
            continue
        cancelled = line.quantity if line.order_line_state in _RELEASED else sum(c.quantity for c in line.cancelations)
        cancelled = min(cancelled, line.quantity)
        shipped = line.quantity - cancelled if line.order_line_state in _SHIPPED else 0
        reports.append(
            LineReport(
                order.order_id, line.order_line_id, line.offer_sku, line.quantity, shipped=shipped, cancelled=cancelled
            )
        )
    return Notification(f"{order.order_id}@{order.last_updated_date}", TOPIC, tuple(reports), tuple(skipped))


class MiraklThrottled(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"throttled; retry after {retry_after_s}s")
        self.retry_after_s = retry_after_s


class MiraklUnavailable(Exception):
    pass


async def fetch_updated_orders(
    http: httpx.AsyncClient, base_url: str, api_key: str, start_update_date: datetime, page_size: int
) -> list[bytes]:
    """Every order updated since `start_update_date`, each serialised on its own (one
    delivery per order), following OR11's `max`/`offset` paging."""
    orders: list[bytes] = []
    offset = 0
    while True:
        answer = await http.get(
            base_url.rstrip("/") + ORDERS_PATH,
            params={
                "start_update_date": start_update_date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "paginate": "true",
                "max": page_size,
                "offset": offset,
            },
            headers={API_KEY_HEADER: api_key, "Accept": "application/json"},
        )
        if answer.status_code == 429:
            retry_after = answer.headers.get("retry-after", "60")
            raise MiraklThrottled(float(retry_after) if retry_after.replace(".", "", 1).isdigit() else 60.0)
        if answer.status_code != 200:
            raise MiraklUnavailable(f"OR11 answered {answer.status_code}: {answer.text[:200]}")
        page = MiraklOrderPage.model_validate_json(answer.content)
        orders.extend(orjson.dumps(order) for order in page.orders)
        offset += len(page.orders)
        if not page.orders or offset >= page.total_count:
            return orders


def last_updated(raw_order: bytes) -> datetime | None:
    value = orjson.loads(raw_order).get("last_updated_date")
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
