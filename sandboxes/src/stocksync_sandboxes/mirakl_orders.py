"""Mirakl orders for a shop: OR11 (`GET /api/orders`) and a control endpoint.

Mirakl has no order webhooks; the shop polls OR11 with `start_update_date`. This
sandbox checks the `Authorization` API key (401), pages with `max` (at most 100) and
`offset` and reports `total_count`, and answers 429 with `Retry-After` when a listing
is started again less than a minute after the previous one (Mirakl allows one call a
minute per operation; the sandbox counts a listing's further pages as the same call).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel, ConfigDict, Field

from stocksync_sandboxes.order_delivery import SandboxOrderLine

LineState = Literal[
    "WAITING_ACCEPTANCE", "WAITING_DEBIT", "SHIPPING", "SHIPPED", "RECEIVED", "CLOSED", "REFUSED", "CANCELED"
]
MIRAKL_MIN_CALL_INTERVAL_S = 60.0
MAX_PAGE_SIZE = 100


def _mirakl_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def build_order(
    order_id: str, state: LineState, lines: list[SandboxOrderLine], updated_at: datetime, created_at: datetime
) -> dict[str, Any]:
    """An order as OR11 lists it (the fields a stock integration reads, and a few more)."""
    return {
        "order_id": order_id,
        "commercial_id": order_id.rsplit("-", 1)[0],
        "order_state": state,
        "created_date": _mirakl_time(created_at),
        "last_updated_date": _mirakl_time(updated_at),
        "currency_iso_code": "EUR",
        "order_lines": [
            {
                "order_line_id": line.line_id or f"{order_id}-{index + 1}",
                "order_line_index": index + 1,
                "offer_sku": line.sku,
                "product_sku": line.sku,
                "quantity": line.quantity,
                "order_line_state": "CANCELED" if line.cancelled >= line.quantity else state,
                "cancelations": [{"quantity": line.cancelled, "reason_code": "34"}]
                if 0 < line.cancelled < line.quantity
                else [],
                "price": 10.0 * line.quantity,
            }
            for index, line in enumerate(lines)
        ],
    }


class MiraklShop:
    """The orders of one shop and its OR11 call budget."""

    def __init__(
        self,
        api_key: str,
        *,
        min_call_interval_s: float = MIRAKL_MIN_CALL_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api_key = api_key
        self.min_call_interval_s = min_call_interval_s
        self._clock = clock
        self._last_listing_at: float | None = None
        self.orders: dict[str, dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []

    def put(self, order_id: str, state: LineState, lines: list[SandboxOrderLine]) -> dict[str, Any]:
        now = datetime.now(UTC)
        created = self.orders.get(order_id, {}).get("created_date")
        created_at = datetime.fromisoformat(created) if created else now
        order = build_order(order_id, state, lines, now, created_at)
        self.orders[order_id] = order
        return order

    def throttled_for(self, offset: int) -> float | None:
        """Seconds until a new listing is allowed, or None if this call may go on."""
        now = self._clock()
        if offset > 0:
            return None
        if self._last_listing_at is not None and now - self._last_listing_at < self.min_call_interval_s:
            return self.min_call_interval_s - (now - self._last_listing_at)
        self._last_listing_at = now
        return None

    def updated_since(self, start: datetime | None) -> list[dict[str, Any]]:
        orders = sorted(self.orders.values(), key=lambda o: o["last_updated_date"])
        if start is None:
            return orders
        return [o for o in orders if datetime.fromisoformat(o["last_updated_date"]) >= start]


class PutOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: str = Field(default_factory=lambda: f"{uuid.uuid4().int % 10**8:08d}-A")
    state: LineState = "WAITING_ACCEPTANCE"
    lines: list[SandboxOrderLine] = Field(min_length=1)


def orders_router(shop: MiraklShop) -> APIRouter:
    router = APIRouter(tags=["sandbox orders"])

    @router.get("/api/orders")
    async def list_orders(
        authorization: Annotated[str | None, Header()] = None,
        start_update_date: datetime | None = None,
        page_size: Annotated[int, Query(alias="max", ge=1, le=MAX_PAGE_SIZE)] = 10,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> ORJSONResponse:
        if authorization != shop.api_key:
            return ORJSONResponse({"status": 401, "message": "Unauthorized"}, status_code=401)
        wait = shop.throttled_for(offset)
        if wait is not None:
            return ORJSONResponse(
                {"status": 429, "message": "Too many requests"},
                status_code=429,
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        shop.calls.append({"start_update_date": start_update_date, "offset": offset, "max": page_size})
        matching = shop.updated_since(start_update_date)
        return ORJSONResponse({"orders": matching[offset : offset + page_size], "total_count": len(matching)})

    @router.post("/_sandbox/orders")
    async def put_order(body: PutOrder) -> dict[str, Any]:
        """Create or update an order; OR11 lists it from now on with its new update date."""
        return shop.put(body.order_id, body.state, body.lines)

    @router.get("/_sandbox/or11-calls")
    async def or11_calls() -> dict[str, Any]:
        return {
            "calls": [
                {**c, "start_update_date": c["start_update_date"].isoformat() if c["start_update_date"] else None}
                for c in shop.calls
            ]
        }

    return router
