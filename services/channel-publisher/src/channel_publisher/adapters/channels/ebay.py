"""eBay Inventory API: `POST /sell/inventory/v1/bulk_update_price_quantity`.

How many SKUs one call may carry: eBay's documentation contradicts itself. The call's
reference text says the quantity of one SKU is updated per call in some places, while
the Sell Inventory OpenAPI (1.18) schema lets `requests` hold up to 25. The safe reading
is the default: one SKU per call (`skus_per_call: 1`); a connection can set up to 25.
A batch of the publisher is then several calls, each paced.

Authorisation: `Authorization: Bearer <user access token>`, obtained from the seller's
refresh token with the sell.inventory scope (access_tokens.py), refreshed before its
7,200 s run out and once on a 401.

The answer (200, or 207 when some failed) has a status per SKU: a 5xx status is retried
alone, any other failure is permanent with eBay's own message. A listing can be revised
at most 250 times a day, which is why coalescing matters most here. Read-back for the
drift check: `POST /sell/inventory/v1/bulk_get_inventory_item` (25 SKUs).
"""

from __future__ import annotations

import asyncio

from channel_publisher.adapters.channels.access import ChannelAccess
from channel_publisher.adapters.channels.http_answers import (
    raise_for_channel_status,
    send_authorized,
)
from channel_publisher.adapters.channels.pacing import CallPacer, Paced
from channel_publisher.domain.pushes import (
    BatchResult,
    ItemOutcome,
    PermanentChannelError,
    PushItem,
    TransientChannelError,
)

MAX_SKUS_PER_CALL = 25
SKUS_PER_CALL = 1
# Rows one publisher batch takes: its calls go out concurrently behind the pacer.
MAX_BATCH = 25
# (unverified) eBay meters the Inventory API per day, not per second; this pace only
# spreads calls out. A connection can set its own.
REQUESTS_PER_SECOND = 10.0
BURST = 5
CONTENT_LANGUAGE = "en-US"


class EbayAdapter(Paced):
    channel_type = "ebay"

    def __init__(self, access: ChannelAccess) -> None:
        self.http = access.http
        self.tokens = access.required_tokens("eBay")
        self.base = access.base_url.rstrip("/") + "/sell/inventory/v1"
        self.headers = {"Content-Language": CONTENT_LANGUAGE}
        self.skus_per_call = max(1, min(int(access.settings.get("skus_per_call", SKUS_PER_CALL)), MAX_SKUS_PER_CALL))
        self.batch_limit = max(1, min(int(access.settings.get("batch_limit", MAX_BATCH)), MAX_BATCH))
        self.pacer = CallPacer(
            float(access.settings.get("requests_per_second", REQUESTS_PER_SECOND)),
            int(access.settings.get("burst", BURST)),
        )

    @staticmethod
    def _bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def push(self, items: list[PushItem]) -> BatchResult:
        result = BatchResult()
        chunks = [
            list(range(i, min(i + self.skus_per_call, len(items)))) for i in range(0, len(items), self.skus_per_call)
        ]

        async def one(indexes: list[int]) -> None:
            try:
                await self._call(items, indexes, result)
            except (TransientChannelError, PermanentChannelError) as exc:
                result.outcomes.update(dict.fromkeys(indexes, ItemOutcome.of_failed_call(exc)))

        if len(chunks) == 1:
            # One call: its failures are the whole call's (the publisher counts them).
            await self._call(items, chunks[0], result)
        else:
            await asyncio.gather(*(one(chunk) for chunk in chunks))
        return result

    async def _call(self, items: list[PushItem], indexes: list[int], result: BatchResult) -> None:
        body = {
            "requests": [
                {"sku": items[i].sku, "shipToLocationAvailability": {"quantity": items[i].quantity}} for i in indexes
            ]
        }
        response = await send_authorized(
            self.http,
            self.pacer,
            self.tokens,
            self._bearer,
            "POST",
            f"{self.base}/bulk_update_price_quantity",
            json=body,
            headers=self.headers,
        )
        raise_for_channel_status(response)
        answers = {entry.get("sku"): entry for entry in response.json().get("responses", [])}
        for index in indexes:
            item = items[index]
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

    async def read_quantities(self, items: list[PushItem]) -> dict[int, int | None]:
        response = await send_authorized(
            self.http,
            self.pacer,
            self.tokens,
            self._bearer,
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
