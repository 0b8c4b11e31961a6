"""Each push adapter against its sandbox marketplace, with access tokens kept in the real
database (`access_tokens`), as the publisher runs them.

The sandboxes are served in process (httpx's ASGI transport): the same apps the e2e tests
start as processes, which check requests as the marketplaces' specifications do and issue
tokens that expire.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.db import make_engine
from stocksync_sandboxes import amazon, ebay, mirakl, shopify, walmart, woocommerce

from channel_publisher.adapters.channels.access import ChannelAccess
from channel_publisher.adapters.channels.access_tokens import AccessTokens, grant_for
from channel_publisher.adapters.channels.amazon import AmazonAdapter
from channel_publisher.adapters.channels.ebay import EbayAdapter
from channel_publisher.adapters.channels.mirakl import MiraklAdapter
from channel_publisher.adapters.channels.shopify import ShopifyAdapter
from channel_publisher.adapters.channels.walmart import WalmartAdapter
from channel_publisher.adapters.channels.woocommerce import WooCommerceAdapter
from channel_publisher.adapters.tables import access_tokens
from channel_publisher.domain.channels import CHANNELS
from channel_publisher.domain.pushes import CredentialsError, PushItem

BASE = "http://sandbox.test"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


async def seed(http: httpx.AsyncClient, skus: list[str], ids: dict[str, str] | None = None) -> None:
    listings = [{"sku": sku, "quantity": 0, "listing_id": (ids or {}).get(sku, sku)} for sku in skus]
    assert (await http.post("/_sandbox/listings", json={"listings": listings})).status_code == 200


async def stats(http: httpx.AsyncClient) -> dict[str, int]:
    answer: dict[str, int] = (await http.get("/_sandbox/stats")).json()
    return answer


async def quantities(http: httpx.AsyncClient) -> dict[str, int]:
    listings = (await http.get("/_sandbox/listings")).json()["listings"]
    return {listing["sku"]: listing["quantity"] for listing in listings}


def credentials(channel_type: str, given: dict[str, Any]) -> dict[str, Any]:
    """What the API stores for these credentials (validated and completed with defaults)."""
    return CHANNELS[channel_type].credentials.model_validate(given).model_dump(mode="json", exclude_none=True)


TOKEN_CHANNELS: dict[str, tuple[Any, dict[str, Any]]] = {
    "amazon": (
        lambda lifetime: amazon.create_app(
            amazon.AmazonSandboxSettings("S1", "amzn1.c", "cs", "Atzr|r", token_lifetime_s=lifetime)
        ),
        {
            "seller_id": "S1",
            "marketplace_ids": ["A1PA6795UKMFR9"],
            "client_id": "amzn1.c",
            "client_secret": "cs",
            "refresh_token": "Atzr|r",
            "token_url": f"{BASE}/auth/o2/token",
        },
    ),
    "ebay": (
        lambda lifetime: ebay.create_app(ebay.EbaySandboxSettings("app", "cert", "v^1.1#r", token_lifetime_s=lifetime)),
        {"client_id": "app", "client_secret": "cert", "refresh_token": "v^1.1#r"},
    ),
    "walmart": (
        lambda lifetime: walmart.create_app(walmart.WalmartSandboxSettings("cid", "cs", token_lifetime_s=lifetime)),
        {"client_id": "cid", "client_secret": "cs"},
    ),
}
ADAPTER_OF = {"amazon": AmazonAdapter, "ebay": EbayAdapter, "walmart": WalmartAdapter}


def token_adapter(
    channel_type: str, engine: AsyncEngine, http: httpx.AsyncClient, connection_id: uuid.UUID, given: dict[str, Any]
) -> Any:
    stored = credentials(channel_type, given)
    grant = grant_for(channel_type, BASE, stored)
    assert grant is not None
    tokens = AccessTokens(engine, http, connection_id, grant)
    return ADAPTER_OF[channel_type](ChannelAccess(http, BASE, stored, {}, tokens))


@pytest.mark.parametrize("channel_type", list(TOKEN_CHANNELS))
async def test_pushes_continue_across_token_expiry_with_a_refresh_before_it_expires(
    engine: AsyncEngine, channel_type: str
) -> None:
    make_app, given = TOKEN_CHANNELS[channel_type]
    async with client_for(make_app(2.0)) as http:
        await seed(http, ["T-1", "T-2"])
        adapter = token_adapter(channel_type, engine, http, uuid.uuid4(), given)
        first = await adapter.push([PushItem("T-1", "default", 5, {})])
        await asyncio.sleep(2.5)  # the first token has expired
        second = await adapter.push([PushItem("T-2", "default", 6, {})])
        assert [o.status for o in (*first.outcomes.values(), *second.outcomes.values())] == ["accepted", "accepted"]
        assert await quantities(http) == {"T-1": 5, "T-2": 6}
        counted = await stats(http)
        # Refreshed before expiry: no call ever carried an expired token.
        assert (counted["tokens_issued"], counted["expired_token_calls"], counted["unauthorized"]) == (2, 0, 0)


@pytest.mark.parametrize("channel_type", list(TOKEN_CHANNELS))
async def test_a_token_the_channel_refuses_is_refreshed_once_and_the_push_goes_through(
    engine: AsyncEngine, channel_type: str
) -> None:
    make_app, given = TOKEN_CHANNELS[channel_type]
    async with client_for(make_app(3600.0)) as http:
        await seed(http, ["R-1"])
        adapter = token_adapter(channel_type, engine, http, uuid.uuid4(), given)
        await adapter.push([PushItem("R-1", "default", 1, {})])
        assert (await http.post("/_sandbox/revoke-tokens")).json()["revoked"] == 1
        result = await adapter.push([PushItem("R-1", "default", 2, {})])
        assert result.outcomes[0].status == "accepted"
        assert await quantities(http) == {"R-1": 2}
        counted = await stats(http)
        assert (counted["tokens_issued"], counted["unauthorized"]) == (2, 1)


async def test_publisher_instances_share_one_token_through_the_database(engine: AsyncEngine) -> None:
    make_app, given = TOKEN_CHANNELS["walmart"]
    connection_id = uuid.uuid4()
    async with client_for(make_app(900.0)) as http:
        await seed(http, ["S-1", "S-2"])
        one = token_adapter("walmart", engine, http, connection_id, given)
        other = token_adapter("walmart", engine, http, connection_id, given)
        await asyncio.gather(
            one.push([PushItem("S-1", "default", 3, {})]), other.push([PushItem("S-2", "default", 4, {})])
        )
        assert await quantities(http) == {"S-1": 3, "S-2": 4}
        assert (await stats(http))["tokens_issued"] == 1


@pytest.mark.parametrize("channel_type", list(TOKEN_CHANNELS))
async def test_a_refused_refresh_is_a_connection_error_recorded_with_the_channels_answer(
    engine: AsyncEngine, channel_type: str
) -> None:
    make_app, given = TOKEN_CHANNELS[channel_type]
    wrong = {**given, "client_secret": "not-the-secret"}
    connection_id = uuid.uuid4()
    async with client_for(make_app(900.0)) as http:
        await seed(http, ["F-1"])
        adapter = token_adapter(channel_type, engine, http, connection_id, wrong)
        with pytest.raises(CredentialsError, match="token refresh refused: HTTP 40"):
            await adapter.push([PushItem("F-1", "default", 1, {})])
        assert await quantities(http) == {"F-1": 0}
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(access_tokens).where(access_tokens.c.connection_id == connection_id))).one()
    assert row.access_token is None and row.failed_at is not None
    assert "HTTP 40" in row.last_error


async def test_amazon_paces_a_burst_below_the_documented_rate_so_none_meets_a_429(engine: AsyncEngine) -> None:
    make_app, given = TOKEN_CHANNELS["amazon"]
    skus = [f"B-{i}" for i in range(12)]
    async with client_for(make_app(3600.0)) as http:  # the sandbox: 5/s, burst 5
        await seed(http, skus)
        adapter = token_adapter("amazon", engine, http, uuid.uuid4(), given)
        result = await adapter.push([PushItem(sku, "default", 7, {}) for sku in skus])
        assert {o.status for o in result.outcomes.values()} == {"accepted"}
        assert (await stats(http))["rate_limited"] == 0
        assert await quantities(http) == dict.fromkeys(skus, 7)


async def test_ebay_sends_one_sku_per_call_by_default_and_up_to_the_setting(engine: AsyncEngine) -> None:
    make_app, given = TOKEN_CHANNELS["ebay"]
    async with client_for(make_app(7200.0)) as http:
        await seed(http, ["E-1", "E-2", "E-3"])
        items = [PushItem(f"E-{i}", "default", i, {}) for i in (1, 2, 3)]
        adapter = token_adapter("ebay", engine, http, uuid.uuid4(), given)
        await adapter.push(items)
        assert (await stats(http))["calls"] == 3
        stored = credentials("ebay", given)
        grant = grant_for("ebay", BASE, stored)
        assert grant is not None
        batched = EbayAdapter(
            ChannelAccess(http, BASE, stored, {"skus_per_call": 25}, AccessTokens(engine, http, uuid.uuid4(), grant))
        )
        result = await batched.push(items)
        assert {o.status for o in result.outcomes.values()} == {"accepted"}
        assert (await stats(http))["calls"] == 4


async def test_walmart_encodes_a_space_as_percent_20_and_a_plus_as_percent_2b(engine: AsyncEngine) -> None:
    make_app, given = TOKEN_CHANNELS["walmart"]
    async with client_for(make_app(900.0)) as http:
        await seed(http, ["A B", "A+B"])
        adapter = token_adapter("walmart", engine, http, uuid.uuid4(), given)
        result = await adapter.push([PushItem("A B", "default", 1, {}), PushItem("A+B", "default", 2, {})])
        assert [o.status for o in result.outcomes.values()] == ["accepted", "accepted"]
        assert await quantities(http) == {"A B": 1, "A+B": 2}


async def test_woocommerce_sends_manage_stock_and_accepts_only_the_quantity_it_reads_back() -> None:
    app = woocommerce.create_app(woocommerce.WooCommerceSandboxSettings("ck", "cs"))
    async with client_for(app) as http:
        await seed(http, ["W-1", "W-2"], {"W-1": "101", "W-2": "102"})
        await http.post("/_sandbox/stock-management", json={"product_id": 102, "manage_stock": False})
        items = [PushItem("W-1", "default", 4, {"product_id": 101}), PushItem("W-2", "default", 5, {"product_id": 102})]
        creds = {"consumer_key": "ck", "consumer_secret": "cs"}
        # The store's choice kept: the unmanaged product is reported, never accepted.
        kept = await WooCommerceAdapter(ChannelAccess(http, BASE, creds, {"manage_stock": False})).push(items)
        assert kept.outcomes[0].status == "accepted"
        assert kept.outcomes[1].status == "rejected"
        assert "does not manage stock" in kept.outcomes[1].channel_response
        assert await quantities(http) == {"W-1": 4, "W-2": 0}
        # The default turns stock management on with the quantity.
        sent = await WooCommerceAdapter(ChannelAccess(http, BASE, creds)).push(items)
        assert [o.status for o in sent.outcomes.values()] == ["accepted", "accepted"]
        assert await quantities(http) == {"W-1": 4, "W-2": 5}


async def test_mirakl_records_imported_lines_as_accepted_and_the_error_reports_lines_with_mirakls_reason() -> None:
    app = mirakl.create_app(
        mirakl.MiraklSandboxSettings("key", 0.5, processing_delay_s=0.2, status_interval_s=0.3, report_interval_s=0.6)
    )
    async with client_for(app) as http:
        await seed(http, ["M-1", "M-2"])
        settings = {"min_interval_s": 1.0, "status_poll_interval_s": 0.5, "error_report_interval_s": 1.0}
        adapter = MiraklAdapter(ChannelAccess(http, BASE, {"api_key": "key"}, settings))
        items = [PushItem(sku, "default", 9, {}) for sku in ("M-1", "M-2", "M-404")]
        result = await adapter.push(items)
        assert [o.status for o in result.outcomes.values()] == ["accepted", "accepted", "rejected"]
        assert result.outcomes[2].channel_response == "The offer does not exist"
        await asyncio.sleep(adapter.ready_in())
        again = await adapter.push(items[:1])
        assert again.outcomes[0].status == "accepted"
        assert await quantities(http) == {"M-1": 9, "M-2": 9}
        counted = await stats(http)
        assert (counted["rate_limited"], counted["early_retries"]) == (0, 0)


async def test_shopify_expiring_offline_tokens_refresh_across_expiry_with_the_rotated_refresh_token(
    engine: AsyncEngine,
) -> None:
    app = shopify.create_app(
        shopify.ShopifySandboxSettings(
            access_token="shpat_offline",
            webhook_secret="whsec",
            client_id="client",
            client_secret="secret",
            refresh_token="shprt_first",
            token_lifetime_s=2.0,
        )
    )
    given = {"client_id": "client", "client_secret": "secret", "refresh_token": "shprt_first"}
    stored = credentials("shopify", given)
    grant = grant_for("shopify", BASE, stored)
    assert grant is not None
    connection_id = uuid.uuid4()
    async with client_for(app) as http:
        item_id = "gid://shopify/InventoryItem/1001"
        location = "gid://shopify/Location/11"
        seeded = await http.post(
            "/_sandbox/inventory-items",
            json={"items": [{"inventory_item_id": item_id, "location_id": location, "sku": "SH-1"}]},
        )
        assert seeded.status_code == 200, seeded.text
        adapter = ShopifyAdapter(
            ChannelAccess(http, BASE, stored, {}, AccessTokens(engine, http, connection_id, grant))
        )
        listing = {"inventory_item_id": item_id, "location_id": location}
        first = await adapter.push([PushItem("SH-1", "default", 4, listing, 1)])
        await asyncio.sleep(2.5)
        # A second instance, as after a restart: it reads the rotated refresh token from the database.
        other = ShopifyAdapter(ChannelAccess(http, BASE, stored, {}, AccessTokens(engine, http, connection_id, grant)))
        second = await other.push([PushItem("SH-1", "default", 6, listing, 2)])
        assert [first.outcomes[0].status, second.outcomes[0].status] == ["accepted", "accepted"]
        assert app.state.expiring_tokens.issued == 2
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(access_tokens).where(access_tokens.c.connection_id == connection_id))).one()
    assert row.refresh_token not in (None, "shprt_first")
