"""Amazon and Walmart order notifications read as the marketplaces document them."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from stocksync_sandboxes import amazon_orders, walmart_orders
from stocksync_sandboxes.order_delivery import SandboxOrderLine

from order_ingest.adapters.channels import MalformedDelivery, amazon, walmart
from order_ingest.domain.connections import InboundConnection
from order_ingest.domain.movements import LineReport

SCHEMAS = Path(__file__).parents[1] / "sandboxes" / "schemas"
# Amazon's schema (selling-partner-api-models, schemas/notifications/OrderChangeNotification.json).
AMAZON_SCHEMA: dict[str, Any] = json.loads((SCHEMAS / "amazon" / "OrderChangeNotification.json").read_text())
AMAZON_EXAMPLE: dict[str, Any] = AMAZON_SCHEMA["examples"][0]
AMAZON_STATUSES: list[str] = AMAZON_SCHEMA["properties"]["Payload"]["properties"]["OrderChangeNotification"][
    "properties"
]["Summary"]["properties"]["OrderStatus"]["enum"]


def amazon_with(status: str, shipped: int = 0) -> dict[str, Any]:
    notification = copy.deepcopy(AMAZON_EXAMPLE)
    summary = notification["Payload"]["OrderChangeNotification"]["Summary"]
    summary["OrderStatus"] = status
    summary["OrderItems"][0]["QuantityShipped"] = shipped
    return notification


def test_amazons_own_example_places_its_ten_units() -> None:
    parsed = amazon.parse({}, orjson.dumps(AMAZON_EXAMPLE))
    assert parsed.channel_event_id == "d0e9e693-c3ad-4373-979f-ed4ec98dd746"
    assert parsed.topic == "ORDER_CHANGE:Unshipped"
    assert parsed.lines == (LineReport("903-8868176-2219830", "OIID34853450", "SellerSKUID1", 10),)


def test_the_statuses_read_are_exactly_those_of_amazons_schema() -> None:
    assert set(AMAZON_STATUSES) == set(amazon.OrderStatus.__args__)  # type: ignore[attr-defined]


# What each status does to a line of 10 with 4 shipped (QuantityShipped is cumulative).
EXPECTED = {
    "Pending": (4, 0),
    "PendingAvailability": (4, 0),
    "Unshipped": (4, 0),
    "PartiallyShipped": (4, 0),
    "Shipped": (4, 0),
    "InvoiceUnconfirmed": (4, 0),
    "Canceled": (4, 6),
    "Unfulfillable": (4, 6),
}


@pytest.mark.parametrize("status", AMAZON_STATUSES)
def test_every_amazon_status_is_read_and_only_canceled_and_unfulfillable_release(status: str) -> None:
    (line,) = amazon.parse({}, orjson.dumps(amazon_with(status, shipped=4))).lines
    assert (line.ordered, line.shipped, line.cancelled) == (10, *EXPECTED[status])


def test_the_eventbridge_envelope_is_read_like_the_extracted_detail() -> None:
    notification = amazon_with("PendingAvailability")
    enveloped = amazon_orders.eventbridge_event(notification)
    assert set(enveloped) == {
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    }
    assert amazon.parse({}, orjson.dumps(enveloped)) == amazon.parse({}, orjson.dumps(notification))


def test_a_malformed_envelope_or_an_unknown_status_is_refused_naming_the_field() -> None:
    enveloped = amazon_orders.eventbridge_event(amazon_with("Unshipped"))
    del enveloped["detail"]["NotificationMetadata"]
    with pytest.raises(MalformedDelivery) as missing:
        amazon.parse({}, orjson.dumps(enveloped))
    assert isinstance(missing.value.detail, list)
    assert ["body", "detail", "NotificationMetadata"] in [e["loc"] for e in missing.value.detail]
    with pytest.raises(MalformedDelivery) as unknown:
        amazon.parse({}, orjson.dumps(amazon_with("Lost")))
    assert isinstance(unknown.value.detail, list)
    assert unknown.value.detail[0]["loc"][-1] == "OrderStatus"
    for bad in (b"", b"[]", b"{", b'{"detail-type": "ORDER_CHANGE"}'):
        with pytest.raises(MalformedDelivery):
            amazon.parse({}, bad)


def test_a_sku_that_looks_like_an_envelope_field_is_still_a_sku() -> None:
    notification = amazon_with("Unshipped")
    notification["Payload"]["OrderChangeNotification"]["Summary"]["OrderItems"][0]["SellerSKU"] = "detail-type"
    (line,) = amazon.parse({}, orjson.dumps(notification)).lines
    assert line.sku == "detail-type"


def walmart_connection(**inbound: str) -> InboundConnection:
    return InboundConnection(uuid.uuid4(), uuid.uuid4(), "walmart", ("new-secret", "client-secret"), dict(inbound))


def test_walmart_notifications_are_verified_in_the_header_the_subscription_names() -> None:
    body = orjson.dumps(walmart_orders.build_notification("PO_CREATED", "1", [SandboxOrderLine(sku="A", quantity=1)]))
    signed = walmart_orders.sign("client-secret", body)["Authorization"]
    assert walmart.verify(walmart_connection(), {"authorization": signed}, body)
    named = walmart_connection(signature_header="WM-Notification-Signature")
    assert walmart.verify(named, {"wm-notification-signature": signed}, body)
    assert not walmart.verify(named, {"authorization": signed}, body)
    assert not walmart.verify(walmart_connection(), {"authorization": signed}, body + b" ")
    assert named.signature_headers == frozenset({"wm-notification-signature"})


def test_walmarts_po_created_and_autocancel_events_become_placed_and_cancelled_lines() -> None:
    lines = [
        SandboxOrderLine(sku="WM 1", quantity=2, line_id="1"),
        SandboxOrderLine(sku="WM-2", quantity=1, line_id="2"),
    ]
    created = walmart.parse({}, orjson.dumps(walmart_orders.build_notification("PO_CREATED", "P1", lines, "e1")))
    assert (created.channel_event_id, created.topic) == ("e1", "PO_CREATED")
    assert created.lines == (LineReport("P1", "1", "WM 1", 2), LineReport("P1", "2", "WM-2", 1))
    cancelled_line = [SandboxOrderLine(sku="WM-2", quantity=1, line_id="2", cancelled=1)]
    autocancel = orjson.dumps(walmart_orders.build_notification("PO_LINE_AUTOCANCELLED", "P1", cancelled_line))
    assert walmart.parse({}, autocancel).lines == (LineReport("P1", "2", "WM-2", 1, cancelled=1),)


def test_walmarts_orders_api_purchase_order_is_read_with_quantities_per_status() -> None:
    quantity = {"unitOfMeasurement": "EACH", "amount": "3"}
    body = {
        "source": {"eventType": "PO_CREATED", "eventId": "e2"},
        "payload": {
            "purchaseOrderId": "P2",
            "orderLines": {
                "orderLine": [
                    {
                        "lineNumber": "1",
                        "item": {"sku": "A"},
                        "orderLineQuantity": quantity,
                        "orderLineStatuses": {
                            "orderLineStatus": [
                                {"status": "Shipped", "statusQuantity": {"amount": "1"}},
                                {"status": "Cancelled", "statusQuantity": {"amount": "1"}},
                                {"status": "Acknowledged", "statusQuantity": {"amount": "1"}},
                            ]
                        },
                    },
                    {"lineNumber": "2", "item": {}, "orderLineQuantity": quantity},
                ]
            },
        },
    }
    parsed = walmart.parse({}, orjson.dumps(body))
    assert parsed.lines == (LineReport("P2", "1", "A", 3, shipped=1, cancelled=1),)
    assert parsed.skipped_lines == ("2",)
