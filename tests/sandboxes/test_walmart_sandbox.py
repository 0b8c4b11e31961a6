"""The Walmart sandbox checks PUT /v3/inventory as Walmart does."""

from __future__ import annotations

import base64
import time

from fastapi.testclient import TestClient

from stocksync_sandboxes.walmart import WalmartSandboxSettings, create_app

BASIC = "Basic " + base64.b64encode(b"cid:csecret").decode()
SERVICE = {"WM_QOS.CORRELATION_ID": "c1", "WM_SVC.NAME": "Walmart Marketplace"}
HEADERS: dict[str, str] = {}


def seller(token_lifetime_s: float = 900.0) -> TestClient:
    client = TestClient(create_app(WalmartSandboxSettings("cid", "csecret", token_lifetime_s=token_lifetime_s)))
    client.post("/_sandbox/listings", json={"listings": [{"sku": "A"}, {"sku": "A B"}, {"sku": "A+B"}]})
    issued = client.post(
        "/v3/token", headers={"Authorization": BASIC, **SERVICE}, data={"grant_type": "client_credentials"}
    ).json()
    assert (issued["token_type"], issued["expires_in"]) == ("Bearer", token_lifetime_s)
    client.headers.update({"Authorization": BASIC, "WM_SEC.ACCESS_TOKEN": issued["access_token"], **SERVICE})
    return client


def update(client: TestClient, query: str, sku: str) -> int:
    body = {"sku": sku, "quantity": {"unit": "EACH", "amount": 2}}
    status_code: int = client.put(f"/v3/inventory?sku={query}", json=body).status_code
    return status_code


def test_the_basic_header_is_required_beside_the_access_token() -> None:
    client = seller()
    client.headers.pop("Authorization")
    assert update(client, "A", "A") == 401
    assert client.post("/v3/token", headers=SERVICE, data={"grant_type": "client_credentials"}).status_code == 401


def test_an_expired_token_is_401_and_a_new_one_works() -> None:
    client = seller(token_lifetime_s=0.2)
    time.sleep(0.3)
    assert update(client, "A", "A") == 401
    fresh = client.post("/v3/token", data={"grant_type": "client_credentials"}).json()["access_token"]
    client.headers["WM_SEC.ACCESS_TOKEN"] = fresh
    assert update(client, "A", "A") == 200


def test_the_sku_query_is_percent_decoded_so_a_plus_is_not_a_space() -> None:
    client = seller()
    assert update(client, "A%20B", "A B") == 200
    assert update(client, "A%2BB", "A+B") == 200
    assert update(client, "A+B", "A B") == 400  # form encoding: the query names "A+B", the body "A B"


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
    for name in SERVICE:
        client.headers.pop(name)
    assert client.put("/v3/inventory?sku=A", json=body).status_code == 400
    client.headers.update(SERVICE)
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
