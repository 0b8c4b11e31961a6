"""WooCommerce: `POST /wp-json/wc/v3/products/batch {"update": [{id, stock_quantity}]}`.

At most 100 objects per call (more is refused whole). Auth: consumer key and secret as
HTTP basic (over HTTPS). WooCommerce documents no rate limit, but hosts often put one in
front of it: the connection may set `requests_per_second`, and a 429 with Retry-After is
honoured. Each object of the answer is either the updated product or `{id, error: {code,
message, data: {status}}}`: an error with a 5xx status is retried alone, any other is
permanent. Read-back for the drift check: `GET /products?include=...`.

WooCommerce applies `stock_quantity` only to a product that manages its stock, and for
one that does not it drops the quantity silently and answers `stock_quantity: null`
(WC_REST_Products_Controller). So:
- by default (`manage_stock: true`, a connection setting) every update carries
  `manage_stock: true`, which turns stock management on for the product with the
  quantity, as a merchant syncing stock to it expects;
- with the setting `manage_stock: false` the store's own choice is left alone, and a
  product not managing stock is reported as such (rejected with that message);
- either way a push is accepted only when the answer's `stock_quantity` is the quantity
  sent.
"""

from __future__ import annotations

from typing import Any

import httpx

from channel_publisher.adapters.channels.access import ChannelAccess
from channel_publisher.adapters.channels.http_answers import raise_for_channel_status, send
from channel_publisher.adapters.channels.pacing import CallPacer, Paced
from channel_publisher.domain.pushes import BatchResult, ItemOutcome, PushItem

MAX_BATCH = 100
API_PREFIX = "/wp-json/wc/v3"


class WooCommerceAdapter(Paced):
    channel_type = "woocommerce"

    def __init__(self, access: ChannelAccess) -> None:
        self.http = access.http
        self.manage_stock = access.settings.get("manage_stock", True) is not False
        self.base = access.base_url.rstrip("/") + API_PREFIX
        self.auth = httpx.BasicAuth(str(access.credentials["consumer_key"]), str(access.credentials["consumer_secret"]))
        self.batch_limit = min(int(access.settings.get("batch_limit", MAX_BATCH)), MAX_BATCH)
        self.pacer = CallPacer(access.settings.get("requests_per_second"), int(access.settings.get("burst", 1)))

    async def push(self, items: list[PushItem]) -> BatchResult:
        extra = {"manage_stock": True} if self.manage_stock else {}
        body = {
            "update": [
                {"id": int(item.external["product_id"]), **extra, "stock_quantity": item.quantity} for item in items
            ]
        }
        response = await send(self.http, self.pacer, "POST", f"{self.base}/products/batch", json=body, auth=self.auth)
        raise_for_channel_status(response)
        answers = {int(entry["id"]): entry for entry in response.json().get("update", []) if "id" in entry}
        result = BatchResult()
        for index, item in enumerate(items):
            entry = answers.get(int(item.external["product_id"]))
            if entry is None:
                result.outcomes[index] = ItemOutcome("retry", "no answer for this product in the batch")
            elif "error" in entry:
                error = entry["error"]
                message = f"{error.get('code', '')}: {error.get('message', '')}"
                transient = int((error.get("data") or {}).get("status", 400)) >= 500
                result.outcomes[index] = ItemOutcome("retry" if transient else "rejected", message)
            else:
                result.outcomes[index] = _applied(entry, item.quantity)
        return result

    async def read_quantities(self, items: list[PushItem]) -> dict[int, int | None]:
        ids = [int(item.external["product_id"]) for item in items]
        response = await send(
            self.http,
            self.pacer,
            "GET",
            f"{self.base}/products",
            auth=self.auth,
            params={"include": ",".join(map(str, ids)), "per_page": MAX_BATCH},
        )
        raise_for_channel_status(response)
        shown = {int(p["id"]): p.get("stock_quantity") for p in response.json()}
        return {index: shown.get(pid) for index, pid in enumerate(ids)}


def _applied(product: dict[str, Any], sent: int) -> ItemOutcome:
    """Accepted only when the store holds the quantity sent (see the module docstring)."""
    shown = product.get("stock_quantity")
    if product.get("manage_stock") is False:
        return ItemOutcome(
            "rejected",
            f"the product does not manage stock (manage_stock: false): WooCommerce ignored the quantity {sent}"
            " (turn stock management on for it, or the connection setting manage_stock)",
        )
    if shown == sent and not isinstance(shown, bool):
        return ItemOutcome("accepted", f"stock_quantity={shown}")
    return ItemOutcome("rejected", f"WooCommerce answered stock_quantity={shown!r} for {sent}")
