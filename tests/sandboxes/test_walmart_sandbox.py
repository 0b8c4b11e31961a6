"""The Walmart sandbox checks PUT /v3/inventory as Walmart does."""

from __future__ import annotations

from fastapi.testclient import TestClient

from stocksync_sandboxes.walmart import WalmartSandboxSettings, create_app

HEADERS = {"WM_SEC.ACCESS_TOKEN": "tok", "WM_QOS.CORRELATION_ID": "c1", "WM_SVC.NAME": "Walmart Marketplace"}


def seller() -> TestClient:
    client = TestClient(create_app(WalmartSandboxSettings("tok")))
    client.post("/_sandbox/listings", json={"listings": [{"sku": "A"}]})
    return client


def test_an_update_sets_the_amount() -> None:
    client = seller()
    answer = client.put(
        "/v3/inventory?sku=A", headers=HEADERS, json={"sku": "A", "quantity": {"unit": "EACH", "amount": 3}}
    )
    assert answer.json()["quantity"]["amount"] == 3
    assert client.get("/_sandbox/listings").json()["listings"][0]["quantity"] == 3


def test_missing_headers_a_mismatched_sku_and_an_unknown_sku_are_refused() -> None:
    client = seller()
    body = {"sku": "A", "quantity": {"unit": "EACH", "amount": 3}}
    assert client.put("/v3/inventory?sku=A", headers={"WM_SEC.ACCESS_TOKEN": "tok"}, json=body).status_code == 400
    assert client.put("/v3/inventory?sku=B", headers=HEADERS, json=body).status_code == 400
    unknown = client.put("/v3/inventory?sku=B", headers=HEADERS, json={**body, "sku": "B"})
    assert unknown.status_code == 404 and "could not be found" in unknown.json()["errors"][0]["description"]


def test_an_injected_429_carries_retry_after() -> None:
    client = seller()
    client.post("/_sandbox/fail-next", json={"status_code": 429, "retry_after": 3})
    answer = client.put(
        "/v3/inventory?sku=A", headers=HEADERS, json={"sku": "A", "quantity": {"unit": "EACH", "amount": 1}}
    )
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "3")
