"""Shopify: the GraphQL Admin mutation `inventorySetQuantities`.

At most 250 quantities per call. Shopify throttles by query cost with a leaky bucket
(restore 100 points/s on Standard plans); a throttled answer is HTTP 200 with
`errors: [{message: "Throttled"}]` and the bucket state in `extensions.cost`. The
mutation is atomic: with any `userErrors` nothing is applied, so the items without an
error are sent again without the faulty ones.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import orjson

from channel_publisher.adapters.channels.access import ChannelAccess
from channel_publisher.adapters.channels.http_answers import StaticToken, raise_for_channel_status
from channel_publisher.domain.pushes import (
    BatchResult,
    CredentialsError,
    ItemOutcome,
    PermanentChannelError,
    PushItem,
    TransientChannelError,
)

API_VERSION = "2026-10"
# The versions whose mutation document is the one below (2026-04 made `@idempotent` and
# `changeFromQuantity` required); a connection naming another version is refused.
SUPPORTED_API_VERSIONS = ("2026-04", "2026-07", "2026-10")
MAX_ITEMS = 250
# Cost of one call: an estimate until Shopify reports the real one (unverified).
ESTIMATED_COST_BASE = 10

# From API version 2026-04 the compare-and-set field is `changeFromQuantity` (null skips
# the check: Stocksync sends absolute values) and the `@idempotent` key is required.
MUTATION = """mutation SetAvailable($input: InventorySetQuantitiesInput!, $idempotencyKey: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) {
    inventoryAdjustmentGroup {
      createdAt
      reason
      changes(quantityNames: ["available"]) { name delta quantityAfterChange item { id } location { id } }
    }
    userErrors { field message code }
  }
}"""


class ShopifyAdapter:
    channel_type = "shopify"

    def __init__(self, access: ChannelAccess) -> None:
        self.http = access.http
        api_version = access.settings.get("api_version", API_VERSION)
        self.url = f"{access.base_url.rstrip('/')}/admin/api/{api_version}/graphql.json"
        # An expiring offline token is refreshed (access_tokens.py); a plain offline token is used as is.
        self.tokens = access.tokens or StaticToken(str(access.credentials.get("access_token", "")))
        self.batch_limit = min(int(access.settings.get("batch_limit", MAX_ITEMS)), MAX_ITEMS)
        # The bucket as Shopify last reported it, to wait before a call that would be throttled.
        self._available: float | None = None
        self._restore_rate = float(access.settings.get("restore_rate", 100.0))
        self._observed_at = time.monotonic()

    def ready_in(self) -> float:
        # The cost bucket is waited for inside a call: its waits are short (a few seconds).
        return 0.0

    async def read_quantities(self, items: list[PushItem]) -> dict[int, int | None]:
        """The `available` quantity of each item at its location, in one aliased query."""
        declarations: list[str] = []
        fields: list[str] = []
        variables: dict[str, str] = {}
        for index, item in enumerate(items):
            declarations.append(f"$i{index}: ID!, $l{index}: ID!")
            fields.append(
                f"q{index}: inventoryItem(id: $i{index}) {{ inventoryLevel(locationId: $l{index}) "
                '{ quantities(names: ["available"]) { name quantity } } }'
            )
            variables |= {f"i{index}": item.external["inventory_item_id"], f"l{index}": item.external["location_id"]}
        query = f"query ReadAvailable({', '.join(declarations)}) {{ {' '.join(fields)} }}"
        await self._wait_for_bucket(1 + len(items))
        response = await self._post({"query": query, "variables": variables})
        raise_for_channel_status(response)
        body = response.json()
        self._observe_bucket(body)
        if body.get("errors"):
            raise TransientChannelError("; ".join(str(e.get("message")) for e in body["errors"]))
        data = body.get("data") or {}
        shown: dict[int, int | None] = {}
        for index in range(len(items)):
            level = (data.get(f"q{index}") or {}).get("inventoryLevel") or {}
            quantities = {q["name"]: q["quantity"] for q in level.get("quantities") or []}
            shown[index] = quantities.get("available")
        return shown

    async def push(self, items: list[PushItem]) -> BatchResult:
        result = BatchResult()
        remaining = list(enumerate(items))
        while remaining:
            await self._wait_for_bucket(ESTIMATED_COST_BASE + len(remaining))
            errors = await self._call([item for _, item in remaining])
            if not errors:
                for index, _ in remaining:
                    result.outcomes[index] = ItemOutcome("accepted", "applied")
                return result
            faulty = {position for position in errors}
            for position, message in errors.items():
                index = remaining[position][0]
                result.outcomes[index] = ItemOutcome("rejected", message)
            remaining = [pair for position, pair in enumerate(remaining) if position not in faulty]
        return result

    async def _wait_for_bucket(self, cost: int) -> None:
        if self._available is None:
            return
        elapsed = time.monotonic() - self._observed_at
        available = self._available + elapsed * self._restore_rate
        if available < cost:
            await asyncio.sleep((cost - available) / self._restore_rate)

    async def _call(self, items: list[PushItem]) -> dict[int, str]:
        """One mutation; returns {position: message} of user errors, or raises."""
        quantities = [
            {
                "inventoryItemId": item.external["inventory_item_id"],
                "locationId": item.external["location_id"],
                "quantity": item.quantity,
                "changeFromQuantity": None,
            }
            for item in items
        ]
        variables = {
            "input": {"name": "available", "reason": "correction", "quantities": quantities},
            # The same batch retried carries the same key, so Shopify applies it once; the
            # versions make a later batch with equal quantities a different one.
            "idempotencyKey": str(
                uuid.uuid5(
                    uuid.NAMESPACE_URL,
                    self.url
                    + orjson.dumps([(item.sku, item.location, item.version, item.quantity) for item in items]).decode(),
                )
            ),
        }
        response = await self._post({"query": MUTATION, "variables": variables})
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = response.headers.get("Retry-After")
            raise TransientChannelError(f"HTTP {response.status_code}", float(retry_after) if retry_after else None)
        if response.status_code >= 400:
            raise PermanentChannelError(f"HTTP {response.status_code}: {response.text[:500]}")
        body = response.json()
        self._observe_bucket(body)
        if body.get("errors"):
            messages = [str(e.get("message")) for e in body["errors"]]
            if "Throttled" in messages:
                raise TransientChannelError("Throttled", self._throttle_wait(body, len(items)))
            raise PermanentChannelError("; ".join(messages))
        payload = (body.get("data") or {}).get("inventorySetQuantities") or {}
        errors: dict[int, str] = {}
        for error in payload.get("userErrors") or []:
            field = error.get("field") or []
            position = next((int(part) for part in field if str(part).isdigit()), None)
            message = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
            if position is None or position >= len(items):
                raise PermanentChannelError(message)
            errors[position] = message
        return errors

    async def _post(self, payload: dict[str, Any]) -> httpx.Response:
        """One GraphQL call with the current token; a 401 refreshes it once (expiring tokens)."""
        token = await self.tokens.current()
        response = await self._post_with(payload, token)
        if response.status_code == 401:
            response = await self._post_with(payload, await self.tokens.after_unauthorized(token))
            if response.status_code == 401:
                raise CredentialsError(f"Shopify refused a fresh access token: {response.text[:500]}")
        return response

    async def _post_with(self, payload: dict[str, Any], token: str) -> httpx.Response:
        try:
            return await self.http.post(self.url, json=payload, headers={"X-Shopify-Access-Token": token})
        except httpx.TransportError as exc:
            raise TransientChannelError(f"{type(exc).__name__}: {exc}") from exc

    def _observe_bucket(self, body: dict[str, Any]) -> None:
        status = ((body.get("extensions") or {}).get("cost") or {}).get("throttleStatus")
        if status:
            self._available = float(status.get("currentlyAvailable", 0))
            self._restore_rate = float(status.get("restoreRate", self._restore_rate)) or self._restore_rate
            self._observed_at = time.monotonic()

    def _throttle_wait(self, body: dict[str, Any], count: int) -> float:
        cost = (body.get("extensions") or {}).get("cost") or {}
        requested = float(cost.get("requestedQueryCost", ESTIMATED_COST_BASE + count))
        available = float((cost.get("throttleStatus") or {}).get("currentlyAvailable", 0))
        return max(0.0, (requested - available) / self._restore_rate)
