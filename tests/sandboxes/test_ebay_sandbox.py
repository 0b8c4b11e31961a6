"""The eBay sandbox answers bulk_update_price_quantity per SKU and limits revisions."""

from __future__ import annotations

from fastapi.testclient import TestClient

from stocksync_sandboxes.ebay import EbaySandboxSettings, create_app

HEADERS = {"Authorization": "Bearer tok"}
URL = "/sell/inventory/v1/bulk_update_price_quantity"


def seller(**limits: int) -> TestClient:
    client = TestClient(create_app(EbaySandboxSettings("tok", **limits)))  # type: ignore[arg-type]
    client.post("/_sandbox/listings", json={"listings": [{"sku": "A"}, {"sku": "B"}]})
    return client


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
