"""The eBay sandbox answers bulk_update_price_quantity per SKU and limits revisions."""

from __future__ import annotations

import base64
import time
from typing import Any

from fastapi.testclient import TestClient

from stocksync_sandboxes.ebay import INVENTORY_SCOPE, EbaySandboxSettings, create_app

BASIC = {"Authorization": "Basic " + base64.b64encode(b"app:cert").decode()}
GRANT = {"grant_type": "refresh_token", "refresh_token": "v^1.1#r", "scope": INVENTORY_SCOPE}
HEADERS: dict[str, str] = {}
URL = "/sell/inventory/v1/bulk_update_price_quantity"


def seller(**limits: Any) -> TestClient:
    client = TestClient(create_app(EbaySandboxSettings("app", "cert", "v^1.1#r", **limits)))
    client.post("/_sandbox/listings", json={"listings": [{"sku": "A"}, {"sku": "B"}]})
    token = client.post("/identity/v1/oauth2/token", headers=BASIC, data=GRANT).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_the_refresh_token_grant_needs_the_client_the_refresh_token_and_the_inventory_scope() -> None:
    client = seller()
    issued = client.post("/identity/v1/oauth2/token", headers=BASIC, data=GRANT).json()
    assert (issued["token_type"], issued["expires_in"]) == ("User Access Token", 7200.0)
    other = {"Authorization": "Basic " + base64.b64encode(b"app:wrong").decode()}
    assert client.post("/identity/v1/oauth2/token", headers=other, data=GRANT).status_code == 401
    bad = client.post("/identity/v1/oauth2/token", headers=BASIC, data={**GRANT, "refresh_token": "x"})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_grant")
    scope = client.post("/identity/v1/oauth2/token", headers=BASIC, data={**GRANT, "scope": "https://x/y"})
    assert (scope.status_code, scope.json()["error"]) == (400, "invalid_scope")


def test_an_expired_user_token_is_401_errorid_1001() -> None:
    client = seller(token_lifetime_s=0.2)
    time.sleep(0.3)
    answer = client.post(URL, json={"requests": [request("A", 1)]})
    assert answer.status_code == 401 and answer.json()["errors"][0]["errorId"] == 1001


def request(sku: str, quantity: int) -> dict[str, object]:
    return {"sku": sku, "shipToLocationAvailability": {"quantity": quantity}}


def test_some_skus_fail_while_others_pass_with_207() -> None:
    answer = seller().post(URL, headers=HEADERS, json={"requests": [request("A", 1), request("Z", 1)]})
    assert answer.status_code == 207
    assert [r["statusCode"] for r in answer.json()["responses"]] == [200, 404]


def test_more_than_25_requests_are_refused() -> None:
    answer = seller().post(URL, headers=HEADERS, json={"requests": [request("A", 1)] * 26})
    assert answer.status_code == 400


def test_a_listing_revised_too_often_today_is_refused() -> None:
    client = seller(daily_revisions=2)
    codes = [
        client.post(URL, headers=HEADERS, json={"requests": [request("A", n)]}).json()["responses"][0]["statusCode"]
        for n in range(3)
    ]
    assert codes == [200, 200, 400]


def test_read_back_shows_the_current_quantity() -> None:
    client = seller()
    client.post(URL, headers=HEADERS, json={"requests": [request("B", 6)]})
    answer = client.post(
        "/sell/inventory/v1/bulk_get_inventory_item", headers=HEADERS, json={"requests": [{"sku": "B"}]}
    )
    item = answer.json()["responses"][0]["inventoryItem"]
    assert item["availability"]["shipToLocationAvailability"]["quantity"] == 6
