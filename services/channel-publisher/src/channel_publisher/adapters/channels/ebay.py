"""eBay Inventory API: `POST /sell/inventory/v1/bulk_update_price_quantity`, up to 25 SKUs.

The answer (200, or 207 when some failed) has a status per SKU: a 5xx status is retried
alone, any other failure is permanent with eBay's own message. A listing can be revised
at most 250 times a day, which is why coalescing matters most here. Read-back for the
drift check: `POST /sell/inventory/v1/bulk_get_inventory_item` (25 SKUs).
"""

from __future__ import annotations

from typing import Any

import httpx

from channel_publisher.adapters.channels.http_answers import raise_for_channel_status, send
from channel_publisher.adapters.channels.pacing import CallPacer
from channel_publisher.domain.pushes import BatchResult, ItemOutcome, PushItem

MAX_BATCH = 25
# (unverified) eBay meters the Inventory API per day, not per second; this pace only
# spreads calls out. A connection can set its own.
REQUESTS_PER_SECOND = 10.0
BURST = 5
CONTENT_LANGUAGE = "en-US"


class EbayAdapter:
    channel_type = "ebay"

    def __init__(
        self, http: httpx.AsyncClient, base_url: str, credentials: dict[str, Any], settings: dict[str, Any]
    ) -> None:
        self.http = http
        self.base = base_url.rstrip("/") + "/sell/inventory/v1"
        self.headers = {"Authorization": f"Bearer {credentials['access_token']}", "Content-Language": CONTENT_LANGUAGE}
        self.batch_limit = min(int(settings.get("batch_limit", MAX_BATCH)), MAX_BATCH)
        self.pacer = CallPacer(
            float(settings.get("requests_per_second", REQUESTS_PER_SECOND)), int(settings.get("burst", BURST))
        )

    def ready_in(self) -> float:
        return self.pacer.ready_in()

    async def push(self, items: list[PushItem]) -> BatchResult:
        body = {
            "requests": [{"sku": item.sku, "shipToLocationAvailability": {"quantity": item.quantity}} for item in items]
        }
        response = await send(
            self.http, self.pacer, "POST", f"{self.base}/bulk_update_price_quantity", json=body, headers=self.headers
        )
        raise_for_channel_status(response)
        answers = {entry.get("sku"): entry for entry in response.json().get("responses", [])}
        result = BatchResult()
        for index, item in enumerate(items):
            entry = answers.get(item.sku)
            if entry is None:
                result.outcomes[index] = ItemOutcome("retry", "no status for this SKU in the answer")
                continue
            status = int(entry.get("statusCode", 500))
            if status == 200:
                result.outcomes[index] = ItemOutcome("accepted", "200")
                continue
            message = "; ".join(f"{e.get('errorId', '')}: {e.get('message', '')}" for e in entry.get("errors") or [])
            result.outcomes[index] = ItemOutcome("retry" if status >= 500 else "rejected", f"{status} {message}")
        return result

    async def read_quantities(self, items: list[PushItem]) -> dict[int, int | None]:
        response = await send(
            self.http,
            self.pacer,
            "POST",
            f"{self.base}/bulk_get_inventory_item",
            json={"requests": [{"sku": item.sku} for item in items]},
            headers=self.headers,
        )
        raise_for_channel_status(response)
        shown: dict[str, int | None] = {}
        for entry in response.json().get("responses", []):
            availability = (entry.get("inventoryItem") or {}).get("availability") or {}
            shown[entry.get("sku")] = (availability.get("shipToLocationAvailability") or {}).get("quantity")
        return {index: shown.get(item.sku) for index, item in enumerate(items)}
