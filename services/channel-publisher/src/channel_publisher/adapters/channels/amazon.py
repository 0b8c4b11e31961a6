"""Amazon Selling Partner API: `patchListingsItem`, one SKU per call.

`PATCH /listings/2021-08-01/items/{sellerId}/{sku}?marketplaceIds=...` merges
`/attributes/fulfillment_availability`. Rate limit 5 requests/s per account with a burst
of 5 to 10: the pacer keeps 5/s with a burst of 5, so a burst never meets the 429.
The answer's `status` is ACCEPTED or INVALID with `issues` (the channel's messages).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from channel_publisher.adapters.channels.http_answers import raise_for_channel_status, send
from channel_publisher.adapters.channels.pacing import CallPacer
from channel_publisher.adapters.channels.single_sku_calls import push_each
from channel_publisher.domain.pushes import BatchResult, ItemOutcome, PushItem

API_VERSION = "2021-08-01"
REQUESTS_PER_SECOND = 5.0
BURST = 5
# SKUs handled per publisher batch: two seconds of calls at the default rate, so a batch
# holds its rows briefly. Each SKU is still its own call.
DEFAULT_BATCH = 10


class AmazonAdapter:
    channel_type = "amazon"

    def __init__(
        self, http: httpx.AsyncClient, base_url: str, credentials: dict[str, Any], settings: dict[str, Any]
    ) -> None:
        self.http = http
        self.base = base_url.rstrip("/")
        self.seller_id = str(credentials["seller_id"])
        self.marketplace_ids = ",".join(credentials["marketplace_ids"])
        self.headers = {"x-amz-access-token": str(credentials["access_token"])}
        self.batch_limit = int(settings.get("batch_limit", DEFAULT_BATCH))
        self.pacer = CallPacer(
            float(settings.get("requests_per_second", REQUESTS_PER_SECOND)), int(settings.get("burst", BURST))
        )

    def ready_in(self) -> float:
        return self.pacer.ready_in()

    async def push(self, items: list[PushItem]) -> BatchResult:
        return await push_each(items, self._patch)

    async def _patch(self, item: PushItem) -> ItemOutcome:
        body = {
            "productType": item.external.get("product_type", "PRODUCT"),
            "patches": [
                {
                    "op": "merge",
                    "path": "/attributes/fulfillment_availability",
                    "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": item.quantity}],
                }
            ],
        }
        response = await send(
            self.http,
            self.pacer,
            "PATCH",
            f"{self.base}/listings/{API_VERSION}/items/{quote(self.seller_id, safe='')}/{quote(item.sku, safe='')}",
            params={"marketplaceIds": self.marketplace_ids},
            json=body,
            headers=self.headers,
        )
        raise_for_channel_status(response)
        answer = response.json()
        if answer.get("status") == "ACCEPTED":
            return ItemOutcome("accepted", f"ACCEPTED submission {answer.get('submissionId', '')}")
        issues = "; ".join(f"{i.get('code', '')}: {i.get('message', '')}" for i in answer.get("issues") or [])
        return ItemOutcome("rejected", f"{answer.get('status', 'INVALID')}: {issues}")
