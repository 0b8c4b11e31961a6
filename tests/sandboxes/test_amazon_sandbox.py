"""The Amazon sandbox checks patchListingsItem as the Selling Partner API does."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from stocksync_sandboxes.amazon import AmazonSandboxSettings, create_app

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


LWA = {"grant_type": "refresh_token", "refresh_token": "Atzr|r", "client_id": "amzn1.c", "client_secret": "s"}


def account(**limits: Any) -> TestClient:
    client = TestClient(create_app(AmazonSandboxSettings("S1", "amzn1.c", "s", "Atzr|r", **limits)))
    client.post("/_sandbox/listings", json={"listings": [{"sku": "A", "quantity": 0}]})
    token = client.post("/auth/o2/token", data=LWA).json()["access_token"]
    client.headers["x-amz-access-token"] = token
    return client


HEADERS: dict[str, str] = {}


def test_lwa_issues_a_bearer_token_for_the_refresh_token_and_refuses_a_wrong_grant() -> None:
    client = account(token_lifetime_s=3600.0)
    answer = client.post("/auth/o2/token", data=LWA).json()
    assert (answer["token_type"], answer["expires_in"], answer["refresh_token"]) == ("bearer", 3600.0, "Atzr|r")
    wrong = client.post("/auth/o2/token", data={**LWA, "refresh_token": "Atzr|other"})
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    assert client.post("/auth/o2/token", data={**LWA, "client_secret": "x"}).status_code == 401


def test_an_expired_access_token_is_refused_with_amazons_403() -> None:
    client = account(token_lifetime_s=0.2)
    time.sleep(0.3)
    answer = client.patch(PATH.format(sku="A"), json=body(4))
    assert answer.status_code == 403
    assert answer.json()["errors"][0]["details"] == "The access token you provided has expired."
    assert client.get("/_sandbox/listings").json()["listings"][0]["history"] == []


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
    # A refill far slower than the requests: a loaded machine cannot turn the burst's
    # refill into extra tokens between two of the eight calls.
    client = account(requests_per_second=0.01, burst=5)
    statuses = [client.patch(PATH.format(sku="A"), json=body(1), headers=HEADERS).status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429] * 3
