"""The WooCommerce sandbox refuses what WooCommerce refuses and answers per object."""

from __future__ import annotations

from fastapi.testclient import TestClient

from stocksync_sandboxes.woocommerce import WooCommerceSandboxSettings, create_app

AUTH = ("ck_1", "cs_1")


def store(**limits: object) -> TestClient:
    client = TestClient(create_app(WooCommerceSandboxSettings("ck_1", "cs_1", **limits)))  # type: ignore[arg-type]
    client.post("/_sandbox/listings", json={"listings": [{"sku": "A", "listing_id": "11", "quantity": 5}]})
    return client


def test_a_wrong_consumer_secret_is_401_and_changes_nothing() -> None:
    client = store()
    answer = client.post(
        "/wp-json/wc/v3/products/batch", json={"update": [{"id": 11, "stock_quantity": 1}]}, auth=("ck_1", "wrong")
    )
    assert answer.status_code == 401
    assert client.get("/_sandbox/listings").json()["listings"][0]["quantity"] == 5


def test_more_than_100_objects_are_refused_whole() -> None:
    answer = store().post(
        "/wp-json/wc/v3/products/batch", auth=AUTH, json={"update": [{"id": 11, "stock_quantity": 1}] * 101}
    )
    assert answer.status_code == 413
    assert answer.json()["code"] == "rest_request_entity_too_large"


def test_each_object_is_answered_on_its_own() -> None:
    answer = store().post(
        "/wp-json/wc/v3/products/batch",
        auth=AUTH,
        json={"update": [{"id": 11, "stock_quantity": 3}, {"id": 99, "stock_quantity": 3}]},
    )
    assert answer.status_code == 200
    first, second = answer.json()["update"]
    assert (first["id"], first["stock_quantity"]) == (11, 3)
    assert second["error"]["code"] == "woocommerce_rest_product_invalid_id"


def test_a_host_rate_limit_answers_429_with_retry_after() -> None:
    # One call per 100 s: however long the machine stalls between the two calls, the second
    # finds the bucket empty.
    client = store(requests_per_second=0.01, burst=1)
    body = {"update": [{"id": 11, "stock_quantity": 2}]}
    assert client.post("/wp-json/wc/v3/products/batch", auth=AUTH, json=body).status_code == 200
    limited = client.post("/wp-json/wc/v3/products/batch", auth=AUTH, json=body)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert client.get("/_sandbox/stats").json()["rate_limited"] == 1


def test_a_product_not_managing_stock_drops_the_quantity_unless_manage_stock_is_sent() -> None:
    client = store()
    client.post("/_sandbox/stock-management", json={"product_id": 11, "manage_stock": False})
    ignored = client.post(
        "/wp-json/wc/v3/products/batch", auth=AUTH, json={"update": [{"id": 11, "stock_quantity": 3}]}
    )
    assert ignored.json()["update"][0] | {} == {
        "id": 11,
        "sku": "A",
        "manage_stock": False,
        "stock_quantity": None,
        "stock_status": "instock",
    }
    assert client.get("/_sandbox/listings").json()["listings"][0]["quantity"] == 5
    managed = client.post(
        "/wp-json/wc/v3/products/batch",
        auth=AUTH,
        json={"update": [{"id": 11, "manage_stock": True, "stock_quantity": 3}]},
    )
    assert (managed.json()["update"][0]["manage_stock"], managed.json()["update"][0]["stock_quantity"]) == (True, 3)
