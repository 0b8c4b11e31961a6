"""The sandboxes and the push adapters hold to schema fragments of the official specifications.

Each fragment under `schemas/` names its source and version: Amazon's listingsItems
2021-08-01 model (selling-partner-api-models), eBay's Sell Inventory OpenAPI, Mirakl's STO02
and STO03 pages. The requests are the adapters' own, captured on the wire; the answers are
the sandboxes'. A sandbox written from notes instead of these sources fails here.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from stocksync_sandboxes import amazon, ebay, mirakl

from channel_publisher.adapters.channels.access import ChannelAccess
from channel_publisher.adapters.channels.amazon import AmazonAdapter
from channel_publisher.adapters.channels.ebay import EbayAdapter
from channel_publisher.adapters.channels.mirakl import MiraklAdapter
from channel_publisher.domain.pushes import PushItem

SCHEMAS = Path(__file__).parent / "schemas"
BASE = "http://sandbox.test"


def fragment(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    assert loaded["source"] and loaded["api_version"]
    return loaded


def validate(document: dict[str, Any], ref: str, instance: Any) -> None:
    """Validate against `ref` inside the fragment (its $refs resolve within it)."""
    jsonschema.validate(instance, {**document, "$ref": ref})


class TokenOf:
    """The token source for an adapter under a schema test: one token from the sandbox."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def current(self) -> str:
        return self.token

    async def after_unauthorized(self, refused: str) -> str:
        raise AssertionError("the sandbox refused its own token")


def recorder() -> tuple[list[httpx.Request], dict[str, Any]]:
    seen: list[httpx.Request] = []

    async def keep(request: httpx.Request) -> None:
        await request.aread()
        seen.append(request)

    return seen, {"request": [keep]}


async def test_amazon_patch_requests_and_answers_follow_listings_items_2021_08_01() -> None:
    spec = fragment("amazon_listingsItems_2021-08-01.json")
    assert (spec["usage_plan"]["rate_per_second"], spec["usage_plan"]["burst"]) == (
        amazon.REQUESTS_PER_SECOND,
        amazon.BURST,
    )
    app = amazon.create_app(amazon.AmazonSandboxSettings("S1", "c", "s", "r"))
    seen, hooks = recorder()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, event_hooks=hooks) as http:
        await http.post("/_sandbox/listings", json={"listings": [{"sku": "A B/1"}]})
        token = (
            await http.post(
                "/auth/o2/token",
                data={"grant_type": "refresh_token", "refresh_token": "r", "client_id": "c", "client_secret": "s"},
            )
        ).json()["access_token"]
        adapter = AmazonAdapter(
            ChannelAccess(http, BASE, {"seller_id": "S1", "marketplace_ids": ["A1PA6795UKMFR9"]}, {}, TokenOf(token))
        )
        await adapter.push([PushItem("A B/1", "default", 3, {}), PushItem("UNKNOWN", "default", 1, {})])
        patches = [r for r in seen if r.method == "PATCH"]
        assert len(patches) == 2
        for request in patches:
            validate(spec, "#/definitions/ListingsItemPatchRequest", json.loads(request.content))
            assert request.url.params["marketplaceIds"] == "A1PA6795UKMFR9"
            assert request.headers["x-amz-access-token"] == token
        assert patches[0].url.raw_path.startswith(b"/listings/2021-08-01/items/S1/A%20B%2F1")
        for sku in ("A%20B%2F1", "UNKNOWN"):
            answer = await http.patch(
                f"/listings/2021-08-01/items/S1/{sku}?marketplaceIds=A1PA6795UKMFR9",
                json=json.loads(patches[0].content),
                headers={"x-amz-access-token": token},
            )
            validate(spec, "#/definitions/ListingsItemSubmissionResponse", answer.json())
        refused = await http.patch(
            "/listings/2021-08-01/items/S1/A?marketplaceIds=A1PA6795UKMFR9",
            json={},
            headers={"x-amz-access-token": "x"},
        )
        validate(spec, "#/definitions/ErrorList", refused.json())


async def test_ebay_bulk_update_requests_and_answers_follow_the_sell_inventory_openapi() -> None:
    spec = fragment("ebay_sell_inventory_v1.json")
    app = ebay.create_app(ebay.EbaySandboxSettings("app", "cert", "r"))
    seen, hooks = recorder()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, event_hooks=hooks) as http:
        await http.post("/_sandbox/listings", json={"listings": [{"sku": "A"}, {"sku": "B"}]})
        token = (
            await http.post(
                "/identity/v1/oauth2/token",
                auth=("app", "cert"),
                data={"grant_type": "refresh_token", "refresh_token": "r", "scope": ebay.INVENTORY_SCOPE},
            )
        ).json()["access_token"]
        adapter = EbayAdapter(ChannelAccess(http, BASE, {}, {"skus_per_call": 25}, TokenOf(token)))
        await adapter.push([PushItem(sku, "default", 2, {}) for sku in ("A", "B", "Z")])
        await adapter.read_quantities([PushItem("A", "default", 0, {})])
        update = next(r for r in seen if r.url.path.endswith("/bulk_update_price_quantity"))
        validate(spec, "#/components/schemas/BulkPriceQuantity", json.loads(update.content))
        read = next(r for r in seen if r.url.path.endswith("/bulk_get_inventory_item"))
        validate(spec, "#/components/schemas/BulkGetInventoryItem", json.loads(read.content))
        answer = await http.post(
            "/sell/inventory/v1/bulk_update_price_quantity",
            content=update.content,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        assert answer.status_code == 207
        validate(spec, "#/components/schemas/BulkPriceQuantityResponse", answer.json())
        got = await http.post(
            "/sell/inventory/v1/bulk_get_inventory_item",
            content=read.content,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        validate(spec, "#/components/schemas/BulkGetInventoryItemResponse", got.json())


@pytest.mark.parametrize("lines", [["A"], ["A", "Z"]], ids=["complete", "with-errors"])
async def test_mirakl_status_and_error_report_follow_sto02_and_sto03(lines: list[str]) -> None:
    spec = fragment("mirakl_sto02_sto03.json")
    assert spec["call_frequency_max_s"] == {
        "STO01": mirakl.MIN_INTERVAL_S,
        "STO02": mirakl.STATUS_INTERVAL_S,
        "STO03": mirakl.REPORT_INTERVAL_S,
    }
    app = mirakl.create_app(mirakl.MiraklSandboxSettings("key", 0.1, processing_delay_s=0.0, status_interval_s=0.1))
    seen, hooks = recorder()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, event_hooks=hooks) as http:
        await http.post("/_sandbox/listings", json={"listings": [{"sku": "A"}]})
        settings = {"min_interval_s": 0.2, "status_poll_interval_s": 0.2}
        result = await MiraklAdapter(ChannelAccess(http, BASE, {"api_key": "key"}, settings)).push(
            [PushItem(sku, "default", 4, {}) for sku in lines]
        )
        assert [o.status for o in result.outcomes.values()] == ["accepted"] + ["rejected"] * (len(lines) - 1)
        status_reads = [r for r in seen if r.url.path.endswith("/status")]
        assert status_reads, "STO02 is read at .../{import_id}/status"
        import_id = status_reads[0].url.path.split("/")[-2]
        await asyncio.sleep(0.2)
        answer = await http.get(f"/api/offers/stock/imports/{import_id}/status", headers={"Authorization": "key"})
        jsonschema.validate(answer.json(), spec["sto02_response"])
        if len(lines) > 1:
            assert result.outcomes[1].channel_response == mirakl.UNKNOWN_OFFER_MESSAGE
