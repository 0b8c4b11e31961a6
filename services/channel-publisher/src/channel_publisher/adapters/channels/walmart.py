"""Walmart Marketplace: `PUT /v3/inventory?sku=...`, one SKU per call, 429 with Retry-After.

Auth headers: WM_SEC.ACCESS_TOKEN, a WM_QOS.CORRELATION_ID per call, WM_SVC.NAME.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from channel_publisher.adapters.channels.http_answers import raise_for_channel_status, send
from channel_publisher.adapters.channels.pacing import CallPacer
from channel_publisher.adapters.channels.single_sku_calls import push_each
from channel_publisher.domain.pushes import BatchResult, ItemOutcome, PushItem

# (unverified) Walmart publishes per-endpoint limits in its developer portal; about 200
# inventory updates a minute is assumed here. A connection can set its own.
REQUESTS_PER_SECOND = 3.0
BURST = 3
DEFAULT_BATCH = 10
SERVICE_NAME = "Walmart Marketplace"


class WalmartAdapter:
    channel_type = "walmart"

    def __init__(
        self, http: httpx.AsyncClient, base_url: str, credentials: dict[str, Any], settings: dict[str, Any]
    ) -> None:
        self.http = http
        self.url = base_url.rstrip("/") + "/v3/inventory"
        self.token = str(credentials["access_token"])
        self.batch_limit = int(settings.get("batch_limit", DEFAULT_BATCH))
        self.pacer = CallPacer(
            float(settings.get("requests_per_second", REQUESTS_PER_SECOND)), int(settings.get("burst", BURST))
        )

    def ready_in(self) -> float:
        return self.pacer.ready_in()

    async def push(self, items: list[PushItem]) -> BatchResult:
        return await push_each(items, self._put)

    async def _put(self, item: PushItem) -> ItemOutcome:
        response = await send(
            self.http,
            self.pacer,
            "PUT",
            self.url,
            params={"sku": item.sku},
            json={"sku": item.sku, "quantity": {"unit": "EACH", "amount": item.quantity}},
            headers={
                "WM_SEC.ACCESS_TOKEN": self.token,
                "WM_QOS.CORRELATION_ID": str(uuid.uuid4()),
                "WM_SVC.NAME": SERVICE_NAME,
                "Accept": "application/json",
            },
        )
        raise_for_channel_status(response)
        amount = (response.json().get("quantity") or {}).get("amount")
        return ItemOutcome("accepted", f"amount={amount}")
