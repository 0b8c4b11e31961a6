"""The inputs that once answered 500, through the gateway and straight to the services:
each now gets a 4xx in the error model naming the field, and changes nothing."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from stocksync_embedded.stack import Stack

from tests.e2e.conftest import Merchant

BAD_QUERIES = [
    ("/v1/oversells?sku=a%00", "query.sku"),
    ("/v1/pushes?status=a%00", "query.status"),
    ("/v1/stock/0?location=%00", "query.location"),
    ("/v1/stock?available_at_most=-921093713249891573874206703616", "query.available_at_most"),
    ("/v1/stock/0/ledger?after=99999999999999999999", "query.after"),
    ("/v1/pushes?after=99999999999999999999", "query.after"),
    ("/v1/deliveries?before=0.5", "query.before"),
    ("/v1/deliveries?before=2026-01-01T00:00:00", "query.before"),
    ("/v1/pushes?since=0001-01-01T00:00:00%2B01:00", "query.since"),
    ("/v1/stock/a%00b", "path.sku"),
]


@pytest.mark.parametrize(("url", "field"), BAD_QUERIES)
def test_bad_parameters_get_422_naming_the_field_through_the_gateway_and_straight(
    api: httpx.Client, merchant: Merchant, stack: Stack, url: str, field: str
) -> None:
    service = "stock-ledger" if url.startswith(("/v1/stock", "/v1/oversells")) else "channel-publisher"
    if url.startswith("/v1/deliveries"):
        service = "order-ingest"
    for base in (stack.base_url, stack.service_url(service)):
        answer = httpx.get(base + url, headers=merchant.auth, timeout=30)
        assert answer.status_code == 422, (base, answer.text)
        body = answer.json()
        assert body["code"] == "invalid_request"
        assert body["field"] == field
        assert body["message"] and body["detail"][0]["loc"] == field.split(".")


def test_a_control_character_in_a_path_is_a_client_error_not_a_500(api: httpx.Client, merchant: Merchant) -> None:
    answer = api.get("/v1/stock/%3D%12/ledger", headers=merchant.auth)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "path.sku"


@pytest.mark.parametrize("sku", ["AB/12", "50% off", "a b", "blé/été", "x/ledger/y", "%2F"])
def test_any_sku_a_snapshot_accepts_reads_back_by_its_path(api: httpx.Client, merchant: Merchant, sku: str) -> None:
    snapshot = api.post("/v1/stock/snapshots", headers=merchant.auth, json={"items": [{"sku": sku, "on_hand": 3}]})
    assert snapshot.status_code == 200 and snapshot.json()["applied"] == 1, snapshot.text
    answer = api.get(f"/v1/stock/{quote(sku, safe='')}", headers=merchant.auth)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["sku"], answer.json()["on_hand"]) == (sku, 3)
    ledger = api.get(f"/v1/stock/{quote(sku, safe='')}/ledger", headers=merchant.auth)
    assert [e["kind"] for e in ledger.json()["entries"]] == ["snapshot"]


def test_a_snapshot_refuses_a_nul_in_a_sku_and_applies_nothing(api: httpx.Client, merchant: Merchant) -> None:
    answer = api.post("/v1/stock/snapshots", headers=merchant.auth, json={"items": [{"sku": "A\u0000B", "on_hand": 1}]})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "body.items.0.sku"
    assert api.get("/v1/stock", headers=merchant.auth).json()["items"] == []


def test_unknown_ids_answer_404_in_the_error_model(api: httpx.Client, merchant: Merchant) -> None:
    answer = api.get("/v1/connections/00000000-0000-0000-0000-000000000000", headers=merchant.auth)
    assert answer.status_code == 404
    assert answer.json() == {
        "code": "not_found",
        "message": "no such connection",
        "field": None,
        "detail": "no such connection",
    }
    assert api.get("/v1/stock").json()["code"] == "unauthorized"


def test_a_shopify_connection_naming_a_version_the_adapter_does_not_speak_is_refused(
    api: httpx.Client, merchant: Merchant
) -> None:
    body = {
        "type": "shopify",
        "name": "old shop",
        "base_url": "http://127.0.0.1:9",
        "credentials": {"access_token": "shpat_test"},
        "webhook_secret": "shopify-secret-1",
        "settings": {"api_version": "2025-07"},
    }
    answer = api.post("/v1/connections", headers=merchant.auth, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "body.settings.api_version"
    assert "2026-04, 2026-07, 2026-10" in answer.json()["message"]
    assert api.get("/v1/connections", headers=merchant.auth).json() == []
    supported = api.post(
        "/v1/connections", headers=merchant.auth, json={**body, "settings": {"api_version": "2026-07"}}
    )
    assert supported.status_code == 201, supported.text
