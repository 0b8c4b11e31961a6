"""The Amazon sandbox checks patchListingsItem as the Selling Partner API does."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from stocksync_sandboxes.amazon import AmazonSandboxSettings, create_app

HEADERS = {"x-amz-access-token": "tok"}
PATH = "/listings/2021-08-01/items/S1/{sku}?marketplaceIds=A1PA6795UKMFR9"


def body(quantity: Any) -> dict[str, Any]:
    return {
        "productType": "PRODUCT",
        "patches": [
            {
                "op": "merge",
                "path": "/attributes/fulfillment_availability",
                "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": quantity}],
            }
        ],
    }


def account(**limits: Any) -> TestClient:
    client = TestClient(create_app(AmazonSandboxSettings("S1", "tok", **limits)))
    client.post("/_sandbox/listings", json={"listings": [{"sku": "A", "quantity": 0}]})
    return client


def test_an_accepted_patch_sets_the_quantity() -> None:
    client = account()
    answer = client.patch(PATH.format(sku="A"), json=body(4), headers=HEADERS)
    assert answer.json()["status"] == "ACCEPTED"
    assert client.get("/_sandbox/listings").json()["listings"][0]["history"] == [4]


def test_an_unknown_sku_is_invalid_with_an_issue() -> None:
    answer = account().patch(PATH.format(sku="NOPE"), json=body(4), headers=HEADERS)
    assert answer.json()["status"] == "INVALID"
    assert "does not match any listing" in answer.json()["issues"][0]["message"]


def test_a_bad_token_or_bad_body_is_refused() -> None:
    client = account()
    assert client.patch(PATH.format(sku="A"), json=body(4), headers={"x-amz-access-token": "x"}).status_code == 403
    assert client.patch(PATH.format(sku="A"), json=body(-1), headers=HEADERS).status_code == 400
    assert client.patch("/listings/2021-08-01/items/S1/A", json=body(1), headers=HEADERS).status_code == 400


def test_more_than_the_burst_is_throttled() -> None:
    client = account(requests_per_second=5.0, burst=10)
    statuses = [client.patch(PATH.format(sku="A"), json=body(1), headers=HEADERS).status_code for _ in range(12)]
    assert statuses.count(200) >= 10 and 429 in statuses
