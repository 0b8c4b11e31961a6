"""Bad input gets a clear error and changes nothing (docs/design.md section 6)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable

import httpx
import orjson
import pytest

from stocksync_embedded.stack import Stack

from tests.e2e.channel_sandboxes import SandboxShopify
from tests.e2e.conftest import Merchant, new_merchant, wait_for, wait_until_ingest_knows, webhook_url
from tests.e2e.test_order_flow import ITEM_C1, connect

ORDER = {"id": 9001, "name": "#9001", "line_items": [{"id": 1, "sku": "A", "quantity": 1}]}


def sign(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def shopify_headers(secret: str, body: bytes, event_id: str | None = None) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Hmac-Sha256": sign(secret, body),
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
        "X-Shopify-Shop-Domain": "test.myshopify.com",
    }


@pytest.fixture
def channel(api: httpx.Client, merchant: Merchant, sandbox_shopify: Callable[[], SandboxShopify]) -> tuple[str, str]:
    """A Shopify connection known to order-ingest, with SKU A at on_hand 5."""
    sandbox = sandbox_shopify()
    connection_id = connect(api, merchant, sandbox, "C1", ITEM_C1, "gid://shopify/Location/1")
    api.post("/v1/stock/snapshots", headers=merchant.auth, json={"items": [{"sku": "A", "on_hand": 5}]})
    wait_until_ingest_knows(webhook_url(api, connection_id))
    return connection_id, sandbox.webhook_secret


def stock_of_a(api: httpx.Client, merchant: Merchant) -> tuple[int, int, int]:
    stock = api.get("/v1/stock/A", headers=merchant.auth).json()
    return stock["on_hand"], stock["reserved"], stock["version"]


def after_what_came_before(api: httpx.Client, merchant: Merchant, channel: tuple[str, str]) -> tuple[int, int, int]:
    """The stock of A once everything sent before has been applied: a new signed order for A
    (the same SKU, so the same partition, behind whatever came before) is waited for in A's
    ledger; A's stock is then returned without that order's own reserved unit."""
    connection_id, secret = channel
    order_id = 800_000 + uuid.uuid4().int % 100_000
    body = orjson.dumps({"id": order_id, "line_items": [{"id": 1, "sku": "A", "quantity": 1}]})
    answer = api.post(f"/webhooks/shopify/{connection_id}", content=body, headers=shopify_headers(secret, body))
    assert answer.status_code == 200, answer.text

    def applied() -> bool:
        page = api.get("/v1/stock/A/ledger", headers=merchant.auth, params={"order": "desc", "limit": 20})
        ledger = page.json()["entries"]
        return any(f":{order_id}:" in entry["causation_id"] for entry in ledger)

    wait_for(applied)
    on_hand, reserved, version = stock_of_a(api, merchant)
    return on_hand, reserved - 1, version - 1


def test_wrong_signature_gets_401_and_produces_nothing(
    api: httpx.Client, merchant: Merchant, channel: tuple[str, str]
) -> None:
    connection_id, secret = channel
    before = stock_of_a(api, merchant)
    body = orjson.dumps(ORDER)
    answer = api.post(f"/webhooks/shopify/{connection_id}", content=body, headers=shopify_headers(secret + "x", body))
    assert answer.status_code == 401
    # The body signed correctly but altered by one byte is refused too.
    tampered = body.replace(b'"quantity":1', b'"quantity":2')
    answer = api.post(f"/webhooks/shopify/{connection_id}", content=tampered, headers={**shopify_headers(secret, body)})
    assert answer.status_code == 401
    assert after_what_came_before(api, merchant, channel) == before


def test_signed_webhook_is_accepted_once_and_reserves(
    api: httpx.Client, merchant: Merchant, channel: tuple[str, str]
) -> None:
    connection_id, secret = channel
    body = orjson.dumps(ORDER)
    headers = shopify_headers(secret, body)
    first = api.post(f"/webhooks/shopify/{connection_id}", content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "accepted" and first.json()["events"] == 1
    wait_for(lambda: stock_of_a(api, merchant)[1] == 1)
    again = api.post(f"/webhooks/shopify/{connection_id}", content=body, headers=headers)
    assert again.json() == {"status": "duplicate", "events": 0}
    # The same order line under another event id is still the same movement.
    other_event = api.post(f"/webhooks/shopify/{connection_id}", content=body, headers=shopify_headers(secret, body))
    assert other_event.status_code == 200
    assert after_what_came_before(api, merchant, channel)[:2] == (5, 1)


def test_unknown_connection_or_channel_type_gets_404(api: httpx.Client, channel: tuple[str, str]) -> None:
    connection_id, secret = channel
    body = orjson.dumps(ORDER)
    for path in (
        f"/webhooks/shopify/{uuid.uuid4()}",
        "/webhooks/shopify/not-a-uuid",
        f"/webhooks/woocommerce/{connection_id}",
        f"/webhooks/nosuchchannel/{connection_id}",
    ):
        answer = api.post(path, content=body, headers=shopify_headers(secret, body))
        assert answer.status_code == 404, path


def test_malformed_payload_gets_422_naming_the_field(
    api: httpx.Client, merchant: Merchant, channel: tuple[str, str]
) -> None:
    connection_id, secret = channel
    before = stock_of_a(api, merchant)
    body = orjson.dumps({"id": 9002, "line_items": [{"id": 1, "sku": "A", "quantity": "many"}]})
    answer = api.post(f"/webhooks/shopify/{connection_id}", content=body, headers=shopify_headers(secret, body))
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "line_items", 0, "quantity"]
    headers = shopify_headers(secret, body)
    del headers["X-Shopify-Event-Id"]
    answer = api.post(
        f"/webhooks/shopify/{connection_id}",
        content=orjson.dumps(ORDER),
        headers={**headers, "X-Shopify-Hmac-Sha256": sign(secret, orjson.dumps(ORDER))},
    )
    assert answer.status_code == 422
    assert "X-Shopify-Event-Id" in answer.json()["detail"]
    assert after_what_came_before(api, merchant, channel) == before


def test_oversized_body_gets_413(api: httpx.Client, channel: tuple[str, str]) -> None:
    connection_id, secret = channel
    body = b'{"id": 1, "line_items": [], "pad": "' + b"x" * 2_000_000 + b'"}'
    answer = api.post(f"/webhooks/shopify/{connection_id}", content=body, headers=shopify_headers(secret, body))
    assert answer.status_code == 413


def test_missing_or_wrong_api_key_gets_401(api: httpx.Client, merchant: Merchant) -> None:
    assert api.get("/v1/stock/A").status_code == 401
    assert api.get("/v1/rules", headers={"X-API-Key": "ssk_nope"}).status_code == 401
    forged = merchant.api_key[:-4] + "AAAA"
    assert api.get("/v1/connections", headers={"X-API-Key": forged}).status_code == 401
    assert api.post("/v1/merchants", json={"name": "x"}).status_code == 401
    assert api.post("/v1/merchants", json={"name": "x"}, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_a_merchant_sees_nothing_of_another(
    api: httpx.Client, stack: Stack, merchant: Merchant, channel: tuple[str, str]
) -> None:
    connection_id, _ = channel
    auth = new_merchant(api, stack, "other").auth
    assert api.get(f"/v1/connections/{connection_id}", headers=auth).status_code == 404
    assert api.get("/v1/connections", headers=auth).json() == []
    assert api.get("/v1/stock/A", headers=auth).status_code == 404
    assert api.get("/v1/pushes", headers=auth).json() == []
    assert api.get("/v1/rules", headers=auth).json() == []
    # A rule naming another merchant's channel is refused, naming the field.
    answer = api.post(
        "/v1/rules",
        headers=auth,
        json={
            "name": "x",
            "channels": [connection_id],
            "condition": {"op": "always"},
            "action": {"type": "set", "value": 0},
        },
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "channels"]


def test_invalid_rule_and_snapshot_get_422_naming_the_field(api: httpx.Client, merchant: Merchant) -> None:
    bad_percent = api.post(
        "/v1/rules",
        headers=merchant.auth,
        json={"name": "x", "condition": {"op": "always"}, "action": {"type": "percent", "value": 150}},
    )
    assert bad_percent.status_code == 422
    assert bad_percent.json()["detail"][0]["loc"][:2] == ["body", "action"]
    negative = api.post("/v1/stock/snapshots", headers=merchant.auth, json={"items": [{"sku": "A", "on_hand": -1}]})
    assert negative.status_code == 422
    assert negative.json()["detail"][0]["loc"] == ["body", "items", 0, "on_hand"]
    assert api.get("/v1/stock/A", headers=merchant.auth).status_code == 404
