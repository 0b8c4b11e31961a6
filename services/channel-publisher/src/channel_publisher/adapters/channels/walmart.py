"""Walmart Marketplace: `PUT /v3/inventory?sku=...`, one SKU per call, 429 with Retry-After.

Follows the US Marketplace Inventory API ("Update inventory for an item"):
- headers `Authorization: Basic base64(clientId:clientSecret)` and `WM_SEC.ACCESS_TOKEN`
  (both required), a `WM_QOS.CORRELATION_ID` per call, `WM_SVC.NAME`; the access token
  comes from the client id and secret (`POST /v3/token`, 900 s; access_tokens.py), is
  refreshed before it expires and once on a 401;
- the `sku` query parameter percent-encodes every reserved character, a space as `%20`
  and `+` as `%2B` (Walmart documents `%20`; form encoding's `+` would not match the
  body's SKU);
- the answer `{sku, quantity: {unit, amount}}` is the quantity Walmart holds now: the
  push is accepted only when that is the quantity sent.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

from channel_publisher.adapters.channels.access import ChannelAccess
from channel_publisher.adapters.channels.access_tokens import WALMART_SERVICE_NAME, basic
from channel_publisher.adapters.channels.http_answers import (
    raise_for_channel_status,
    send_authorized,
)
from channel_publisher.adapters.channels.pacing import CallPacer, Paced
from channel_publisher.adapters.channels.single_sku_calls import push_each
from channel_publisher.domain.pushes import BatchResult, ItemOutcome, PushItem

# (unverified) Walmart publishes per-endpoint limits in its developer portal; about 200
# inventory updates a minute is assumed here. A connection can set its own.
REQUESTS_PER_SECOND = 3.0
BURST = 3
DEFAULT_BATCH = 10


class WalmartAdapter(Paced):
    channel_type = "walmart"

    def __init__(self, access: ChannelAccess) -> None:
        self.http = access.http
        self.tokens = access.required_tokens("Walmart")
        self.url = access.base_url.rstrip("/") + "/v3/inventory"
        self.basic = basic(str(access.credentials["client_id"]), str(access.credentials["client_secret"]))
        self.batch_limit = int(access.settings.get("batch_limit", DEFAULT_BATCH))
        self.pacer = CallPacer(
            float(access.settings.get("requests_per_second", REQUESTS_PER_SECOND)),
            int(access.settings.get("burst", BURST)),
        )

    async def push(self, items: list[PushItem]) -> BatchResult:
        return await push_each(items, self._put)

    async def _put(self, item: PushItem) -> ItemOutcome:
        response = await send_authorized(
            self.http,
            self.pacer,
            self.tokens,
            lambda token: {"WM_SEC.ACCESS_TOKEN": token},
            "PUT",
            f"{self.url}?sku={quote(item.sku, safe='')}",
            json={"sku": item.sku, "quantity": {"unit": "EACH", "amount": item.quantity}},
            headers={
                "Authorization": self.basic,
                "WM_QOS.CORRELATION_ID": str(uuid.uuid4()),
                "WM_SVC.NAME": WALMART_SERVICE_NAME,
                "Accept": "application/json",
            },
        )
        raise_for_channel_status(response)
        answer = response.json()
        amount = (answer.get("quantity") or {}).get("amount") if isinstance(answer, dict) else None
        if amount == item.quantity and answer.get("sku") == item.sku:
            return ItemOutcome("accepted", f"amount={amount}")
        return ItemOutcome("rejected", f"Walmart answered {str(answer)[:500]} for quantity {item.quantity}")
