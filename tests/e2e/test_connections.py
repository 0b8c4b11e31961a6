"""Connections: validated per channel type, secrets never returned, webhook secrets rotate."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import orjson

from tests.e2e.channel_sandboxes import SandboxShopify
from tests.e2e.conftest import Merchant, wait_for
from tests.e2e.test_bad_input import ORDER, shopify_headers
from tests.e2e.test_order_flow import ITEM_C1, connect


def test_connection_fields_are_checked_against_the_channel_type(api: httpx.Client, merchant: Merchant) -> None:
    answer = api.post(
        "/v1/connections",
        headers=merchant.auth,
        json={
            "type": "woocommerce",
            "name": "shop",
            "base_url": "https://shop.example",
            "webhook_secret": "s3cr3t-value",
            "credentials": {"consumer_key": "ck"},
            "listings": [{"sku": "A", "product_id": "not-a-number"}],
        },
    )
    assert answer.status_code == 422
    locs = [e["loc"] for e in answer.json()["detail"]]
    assert ["body", "credentials", "consumer_secret"] in locs
    assert ["body", "listings", 0, "product_id"] in locs
    assert api.get("/v1/connections", headers=merchant.auth).json() == []


def test_a_signing_channel_needs_a_webhook_secret(api: httpx.Client, merchant: Merchant) -> None:
    answer = api.post(
        "/v1/connections",
        headers=merchant.auth,
        json={"type": "shopify", "name": "s", "base_url": "https://s.example", "credentials": {"access_token": "t"}},
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "webhook_secret"]


def test_secrets_are_never_returned(
    api: httpx.Client, merchant: Merchant, sandbox_shopify: Callable[[], SandboxShopify]
) -> None:
    sandbox = sandbox_shopify()
    connection_id = connect(api, merchant, sandbox, "C1", ITEM_C1, "gid://shopify/Location/1")
    for text in (
        api.get("/v1/connections", headers=merchant.auth).text,
        api.get(f"/v1/connections/{connection_id}", headers=merchant.auth).text,
    ):
        assert sandbox.access_token not in text and sandbox.webhook_secret not in text


def test_webhook_secret_rotation_accepts_both_during_the_overlap_then_only_the_new(
    api: httpx.Client, merchant: Merchant, sandbox_shopify: Callable[[], SandboxShopify]
) -> None:
    sandbox = sandbox_shopify()
    connection_id = connect(api, merchant, sandbox, "C1", ITEM_C1, "gid://shopify/Location/1")
    old, new = sandbox.webhook_secret, "rotated-" + uuid.uuid4().hex

    def status_with(secret: str) -> int:
        body = orjson.dumps({**ORDER, "id": uuid.uuid4().int % 10**12})
        return api.post(
            f"/webhooks/shopify/{connection_id}", content=body, headers=shopify_headers(secret, body)
        ).status_code

    wait_for(lambda: status_with(old) == 200)
    assert status_with(new) == 401
    rotated = api.post(f"/v1/connections/{connection_id}/webhook-secrets", headers=merchant.auth, json={"secret": new})
    assert rotated.json()["active_secrets"] == 2
    wait_for(lambda: status_with(new) == 200)
    assert status_with(old) == 200
    retired = api.delete(f"/v1/connections/{connection_id}/webhook-secrets/previous", headers=merchant.auth)
    assert retired.json()["active_secrets"] == 1
    wait_for(lambda: status_with(old) == 401)
    assert status_with(new) == 200
