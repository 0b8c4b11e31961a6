"""The sandboxes' order notifications against fragments of the marketplaces' own
specifications (sources and versions in schemas/README.md)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from stocksync_sandboxes import amazon_orders, ebay_orders, walmart_orders, woocommerce_orders
from stocksync_sandboxes.order_delivery import SandboxOrderLine

from tests.sandboxes.conftest import WebhookReceiver

SCHEMAS = Path(__file__).parent / "schemas"
LINES = [SandboxOrderLine(sku="SKU 1", quantity=2, line_id="1"), SandboxOrderLine(sku="SKU-2", quantity=1)]


def schema(path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / path).read_text())
    return loaded


def validate(document: Any, path: str, definition: str | None = None) -> None:
    root = schema(path)
    target = {**root["definitions"][definition], "definitions": root["definitions"]} if definition else root
    jsonschema.Draft7Validator(target).validate(document)


AMAZON_STATUSES: list[str] = schema("amazon/OrderChangeNotification.json")["properties"]["Payload"]["properties"][
    "OrderChangeNotification"
]["properties"]["Summary"]["properties"]["OrderStatus"]["enum"]


def test_the_amazon_fragment_is_amazons_with_its_own_example() -> None:
    official = schema("amazon/OrderChangeNotification.json")
    validate(official["examples"][0], "amazon/OrderChangeNotification.json")
    assert "PendingAvailability" in AMAZON_STATUSES and "InvoiceUnconfirmed" in AMAZON_STATUSES


@pytest.mark.parametrize("status", AMAZON_STATUSES)
def test_amazon_sandbox_notifications_follow_amazons_schema_for_every_status(status: str) -> None:
    notification = amazon_orders.build_notification(
        seller_id="A2SANDBOXSELLER",
        order_id=amazon_orders.amazon_order_id(),
        status=status,  # type: ignore[arg-type]
        lines=LINES,  # type: ignore[arg-type]
    )
    validate(notification, "amazon/OrderChangeNotification.json")


def test_amazon_sandbox_sends_the_eventbridge_envelope_with_the_api_key(webhook_receiver: WebhookReceiver) -> None:
    notification = amazon_orders.build_notification(
        seller_id="A2SANDBOXSELLER", order_id="903-8868176-2219830", status="Unshipped", lines=LINES
    )
    event = amazon_orders.eventbridge_event(notification)
    result = asyncio.run(amazon_orders.deliver(webhook_receiver.url, event, "k" * 32))
    assert result.status_code == 200
    received = webhook_receiver.received[0]
    assert received.headers["x-api-key"] == "k" * 32
    sent = orjson.loads(received.body)
    validate(sent, "amazon/EventBridgeEvent.schema.json")
    validate(sent["detail"], "amazon/OrderChangeNotification.json")


def test_ebays_own_test_message_fits_the_ebay_fragment() -> None:
    from tests.unit.test_ingest_ebay_signature import EBAY_MESSAGE, EBAY_PUBLIC_KEY_RESPONSE, EBAY_SIGNATURE_HEADER

    validate(EBAY_MESSAGE, "ebay/Message.schema.json")
    validate(orjson.loads(base64.b64decode(EBAY_SIGNATURE_HEADER)), "ebay/Message.schema.json", "SignatureHeader")
    validate(EBAY_PUBLIC_KEY_RESPONSE, "ebay/Message.schema.json", "PublicKey")


def test_ebay_sandbox_notifications_signature_and_public_key_follow_ebays_shapes(
    webhook_receiver: WebhookReceiver,
) -> None:
    key = ebay_orders.SigningKey()
    notification = ebay_orders.build_notification("12-34567", LINES, cancelled=True)
    result = asyncio.run(ebay_orders.deliver(webhook_receiver.url, notification, key))
    assert result.status_code == 200
    received = webhook_receiver.received[0]
    validate(orjson.loads(received.body), "ebay/Message.schema.json")
    signature = orjson.loads(base64.b64decode(received.headers["x-ebay-signature"]))
    validate(signature, "ebay/Message.schema.json", "SignatureHeader")
    assert signature["kid"] == key.kid

    app = FastAPI()
    app.include_router(ebay_orders.orders_router(key, "app-token"))
    client = TestClient(app)
    answer = client.get(
        f"/commerce/notification/v1/public_key/{key.kid}", headers={"Authorization": "Bearer app-token"}
    )
    validate(answer.json(), "ebay/Message.schema.json", "PublicKey")
    assert client.get(f"/commerce/notification/v1/public_key/{key.kid}").status_code == 401


@pytest.mark.parametrize(
    ("event_type", "lines", "status"),
    [
        ("PO_CREATED", LINES, "CREATED"),
        ("PO_LINE_AUTOCANCELLED", [SandboxOrderLine(sku="SKU-2", quantity=1, cancelled=1)], "CANCELLED"),
    ],
)
def test_walmart_sandbox_notifications_follow_walmarts_documented_payload(
    webhook_receiver: WebhookReceiver, event_type: str, lines: list[SandboxOrderLine], status: str
) -> None:
    notification = walmart_orders.build_notification(event_type, "1800001", lines)  # type: ignore[arg-type]
    result = asyncio.run(walmart_orders.deliver(webhook_receiver.url, notification, "client-secret", "X-Signature"))
    assert result.status_code == 200
    received = webhook_receiver.received[0]
    sent = orjson.loads(received.body)
    validate(sent, "walmart/PO_CREATED.schema.json")
    assert {line["status"] for line in sent["payload"]["orderLines"]} == {status}
    # Signed in the header the subscriber named: the HMAC-SHA256 of the complete body.
    assert received.headers["x-signature"] == walmart_orders.sign("client-secret", received.body)["Authorization"]


def test_walmart_sandbox_refuses_a_line_its_events_cannot_describe() -> None:
    app = FastAPI()
    app.include_router(walmart_orders.orders_router("client-secret"))
    answer = TestClient(app).post(
        "/_sandbox/orders",
        json={"webhook_url": "http://127.0.0.1:9/x", "lines": [{"sku": "A", "quantity": 2, "shipped": 1}]},
    )
    assert answer.status_code == 422 and "shipment" in answer.text


def test_woocommerces_own_examples_fit_the_woocommerce_fragment() -> None:
    examples = Path(__file__).parents[1] / "unit" / "official_examples"
    for name in ("woocommerce_order_created.json", "woocommerce_order_updated.json"):
        validate(json.loads((examples / name).read_text()), "woocommerce/Order.schema.json")


@pytest.mark.parametrize("status", ["pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed"])
def test_woocommerce_sandbox_orders_follow_the_rest_order_schema(status: str) -> None:
    validate(woocommerce_orders.build_order(1234, status, LINES), "woocommerce/Order.schema.json")  # type: ignore[arg-type]
