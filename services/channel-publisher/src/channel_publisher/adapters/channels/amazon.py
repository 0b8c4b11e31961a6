"""Amazon Selling Partner API: `patchListingsItem`, one SKU per call.

`PATCH /listings/2021-08-01/items/{sellerId}/{sku}?marketplaceIds=...` merges
`/attributes/fulfillment_availability`. Rate limit 5 requests/s per account with a burst
of 5 to 10 (listingsItems_2021-08-01 usage plan). Pacing at exactly 5/s with a burst of
5, measured when a call leaves, let the sixth call of a burst meet a 429 (calls bunch on
the way); the pacer therefore spaces calls evenly at `SAFETY_FACTOR` of the rate with no
burst, which Amazon's bucket absorbs whatever the network does to the spacing.

Authorisation: the `x-amz-access-token` header carries a Login with Amazon access token,
obtained from the connection's client id, secret and refresh token (access_tokens.py).
Amazon answers 403 `Unauthorized` to an expired token: refreshed once, then a
connection-level error.

The answer's `status` is ACCEPTED or INVALID with `issues`. Only ACCEPTED with no issue
of severity ERROR is "accepted" (Amazon can accept a submission and still report an
error on the attribute); warnings are kept in the recorded answer.
"""

from __future__ import annotations

from urllib.parse import quote

from channel_publisher.adapters.channels.access import ChannelAccess
from channel_publisher.adapters.channels.http_answers import (
    raise_for_channel_status,
    send_authorized,
)
from channel_publisher.adapters.channels.pacing import CallPacer, Paced
from channel_publisher.adapters.channels.single_sku_calls import push_each
from channel_publisher.domain.pushes import BatchResult, ItemOutcome, PushItem

API_VERSION = "2021-08-01"
REQUESTS_PER_SECOND = 5.0
SAFETY_FACTOR = 0.8
BURST = 1
# SKUs handled per publisher batch: two seconds of calls at the default rate, so a batch
# holds its rows briefly. Each SKU is still its own call.
DEFAULT_BATCH = 10


class AmazonAdapter(Paced):
    channel_type = "amazon"

    def __init__(self, access: ChannelAccess) -> None:
        self.http = access.http
        self.tokens = access.required_tokens("Amazon")
        self.base = access.base_url.rstrip("/")
        self.seller_id = str(access.credentials["seller_id"])
        self.marketplace_ids = ",".join(access.credentials["marketplace_ids"])
        self.batch_limit = int(access.settings.get("batch_limit", DEFAULT_BATCH))
        self.pacer = CallPacer(
            float(access.settings.get("requests_per_second", REQUESTS_PER_SECOND * SAFETY_FACTOR)),
            int(access.settings.get("burst", BURST)),
        )

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
        response = await send_authorized(
            self.http,
            self.pacer,
            self.tokens,
            lambda token: {"x-amz-access-token": token},
            "PATCH",
            f"{self.base}/listings/{API_VERSION}/items/{quote(self.seller_id, safe='')}/{quote(item.sku, safe='')}",
            params={"marketplaceIds": self.marketplace_ids},
            json=body,
            unauthorized=(401, 403),
        )
        raise_for_channel_status(response)
        answer = response.json()
        issues = [i for i in answer.get("issues") or [] if isinstance(i, dict)]
        described = "; ".join(f"{i.get('severity', '')} {i.get('code', '')}: {i.get('message', '')}" for i in issues)
        errors = [i for i in issues if i.get("severity") == "ERROR"]
        if answer.get("status") == "ACCEPTED" and not errors:
            return ItemOutcome("accepted", f"ACCEPTED submission {answer.get('submissionId', '')} {described}".strip())
        return ItemOutcome("rejected", f"{answer.get('status', 'INVALID')}: {described}")
