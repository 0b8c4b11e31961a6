"""Every channel's orders, signed by its sandbox, through order-ingest and the real broker.

Each test drives the channel's sandbox (`POST /_sandbox/orders` of the channel's order
router, which builds, signs and delivers the payload exactly as the channel does) and
reads the resulting `orders.v1` events from the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI
from pydantic import ValidationError

from stocksync_common.contracts import OrderLineMoved
from stocksync_common.topics import ORDERS
from stocksync_embedded.stack import Stack
from stocksync_sandboxes import (
    amazon_orders,
    ebay_orders,
    generic_orders,
    mirakl_orders,
    walmart_orders,
    woocommerce_orders,
)
from stocksync_sandboxes.order_delivery import SandboxOrderLine

from tests.e2e.channel_sandboxes import SandboxShopify
from tests.e2e.conftest import Merchant, new_merchant, wait_for, wait_until_ingest_knows, webhook_url
from tests.e2e.test_order_flow import ITEM_C1
from tests.e2e.test_order_flow import connect as connect_shopify
from tests.served_app import serve

Movement = tuple[str, str, int]
"""(line id, movement, quantity)"""


class OrderEvents:
    """Every orders.v1 event of a broker, read from the start by a consumer in a thread."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.events: list[OrderLineMoved] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._consume()), daemon=True)

    def start(self) -> OrderEvents:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            ORDERS.name,
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
            metadata_max_age_ms=1000,
        )
        await consumer.start()
        try:
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        # The session's broker also holds poison records (test_poison_events).
                        with contextlib.suppress(ValidationError):
                            self.events.append(OrderLineMoved.model_validate_json(record.value))
        finally:
            await consumer.stop()

    def of(self, connection_id: str) -> list[OrderLineMoved]:
        """The connection's events, each once: the topic is at-least-once (a produce retried
        after a timeout can land twice, with the same event id) and consumers dedupe on it."""
        distinct = {e.event_id: e for e in list(self.events) if str(e.connection_id) == connection_id}
        return list(distinct.values())

    def movements(self, connection_id: str, order_id: str | None = None) -> list[Movement]:
        return [
            (e.line_id, e.movement, e.quantity)
            for e in self.of(connection_id)
            if order_id is None or e.external_order_id == order_id
        ]

    def wait_for(
        self, connection_id: str, count: int, order_id: str | None = None, settle_s: float = 1.0
    ) -> dict[str, list[tuple[str, int]]]:
        """Wait for `count` movements, then a moment more so that an extra one would show;
        return them per line id, in order. (Lines of different SKUs are in different
        partitions, so only the order within a line is defined.)"""
        wait_for(lambda: len(self.movements(connection_id, order_id)) >= count, timeout=30)
        time.sleep(settle_s)
        per_line: dict[str, list[tuple[str, int]]] = {}
        for line_id, movement, quantity in self.movements(connection_id, order_id):
            per_line.setdefault(line_id, []).append((movement, quantity))
        return per_line


@dataclass
class Sandboxes:
    """The order side of every sandbox channel in one app, each under its own prefix."""

    url: str
    woocommerce_secret: str
    amazon_api_key: str
    walmart_secret: str
    generic_secret: str
    ebay_key: ebay_orders.SigningKey
    ebay_token: str
    mirakl_shop: mirakl_orders.MiraklShop

    def send(self, channel: str, **body: Any) -> dict[str, Any]:
        answer = httpx.post(f"{self.url}/{channel}/_sandbox/orders", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


def sandbox_app(sandboxes: Sandboxes) -> FastAPI:
    app = FastAPI()
    app.include_router(woocommerce_orders.orders_router(sandboxes.woocommerce_secret), prefix="/woocommerce")
    app.include_router(amazon_orders.orders_router("A2SANDBOXSELLER", sandboxes.amazon_api_key), prefix="/amazon")
    app.include_router(walmart_orders.orders_router(sandboxes.walmart_secret), prefix="/walmart")
    app.include_router(generic_orders.orders_router([sandboxes.generic_secret]), prefix="/generic")
    app.include_router(ebay_orders.orders_router(sandboxes.ebay_key, sandboxes.ebay_token), prefix="/ebay")
    app.include_router(mirakl_orders.orders_router(sandboxes.mirakl_shop), prefix="/mirakl")

    @app.post("/ebay/identity/v1/oauth2/token")
    async def ebay_application_token() -> dict[str, Any]:
        # eBay's client credentials grant: the application token getPublicKey takes.
        return {"access_token": sandboxes.ebay_token, "expires_in": 7200, "token_type": "Application Access Token"}

    return app


@contextlib.contextmanager
def served_sandboxes(mirakl_min_call_interval_s: float = 60.0) -> Iterator[Sandboxes]:
    """Every channel's order sandbox with secrets of its own, served until the `with` ends."""
    sandboxes = Sandboxes(
        url="",
        woocommerce_secret=secrets.token_hex(16),
        amazon_api_key=secrets.token_hex(16),
        walmart_secret=secrets.token_hex(16),
        generic_secret=generic_orders.new_secret(),
        ebay_key=ebay_orders.SigningKey(),
        ebay_token=secrets.token_hex(12),
        mirakl_shop=mirakl_orders.MiraklShop(secrets.token_hex(12), min_call_interval_s=mirakl_min_call_interval_s),
    )
    served = serve(sandbox_app(sandboxes))
    sandboxes.url = served.url
    try:
        yield sandboxes
    finally:
        served.stop()


def connection_body(channel: str, sandboxes: Sandboxes) -> dict[str, Any]:
    """`POST /v1/connections` for a channel type, pointing at its sandbox."""
    base = {"type": channel, "name": f"{channel} orders", "base_url": f"{sandboxes.url}/{channel}"}
    per_type: dict[str, dict[str, Any]] = {
        "woocommerce": {
            "credentials": {"consumer_key": "ck_x", "consumer_secret": "cs_x"},
            "webhook_secret": sandboxes.woocommerce_secret,
        },
        "amazon": {
            "credentials": {
                "seller_id": "A2SANDBOXSELLER",
                "marketplace_ids": ["A1PA6795UKMFR9"],
                "client_id": "amzn1.application-oa2-client.x",
                "client_secret": "x",
                "refresh_token": "Atzr|x",
            },
            "inbound": {"api_key": sandboxes.amazon_api_key},
        },
        "walmart": {
            "credentials": {"client_id": "x", "client_secret": "x"},
            "webhook_secret": sandboxes.walmart_secret,
        },
        "generic": {
            "credentials": {"signing_secret": generic_orders.new_secret()},
            "webhook_secret": sandboxes.generic_secret,
        },
        "ebay": {"credentials": {"client_id": "app-x", "client_secret": "cert-x", "refresh_token": "v^1.1#x"}},
        "mirakl": {"credentials": {"api_key": sandboxes.mirakl_shop.api_key}, "inbound": {"poll_interval_s": 60}},
    }
    return {**base, **per_type[channel]}


def create_connection(
    api: httpx.Client, auth: dict[str, str], channel: str, sandboxes: Sandboxes, ingest: httpx.Client | None = None
) -> str:
    """A connection to the channel's sandbox, once order-ingest (`ingest`, else `api`) knows it."""
    answer = api.post("/v1/connections", headers=auth, json=connection_body(channel, sandboxes))
    assert answer.status_code == 201, answer.text
    connection_id: str = answer.json()["connection_id"]
    if channel != "mirakl":
        wait_until_ingest_knows(webhook_url(ingest or api, connection_id, channel))
    return connection_id


@contextlib.contextmanager
def reading_orders(stack: Stack) -> Iterator[OrderEvents]:
    """The orders.v1 events of the stack's broker, read from the start until the `with` ends."""
    assert stack.kafka_bootstrap_servers is not None
    events = OrderEvents(stack.kafka_bootstrap_servers).start()
    try:
        yield events
    finally:
        events.stop()


@pytest.fixture(scope="session")
def order_events(stack: Stack) -> Iterator[OrderEvents]:
    with reading_orders(stack) as events:
        yield events


@pytest.fixture(scope="session")
def sandboxes() -> Iterator[Sandboxes]:
    with served_sandboxes() as made:
        yield made


@pytest.fixture
def connect(api: httpx.Client, merchant: Merchant, sandboxes: Sandboxes) -> Callable[[str], str]:
    def make(channel: str) -> str:
        return create_connection(api, merchant.auth, channel, sandboxes)

    return make


def line(sku: str, quantity: int, line_id: str, shipped: int = 0, cancelled: int = 0) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity, "line_id": line_id, "shipped": shipped, "cancelled": cancelled}


def test_woocommerce_created_completed_and_cancelled_orders_become_movements(
    api: httpx.Client, connect: Callable[[str], str], sandboxes: Sandboxes, order_events: OrderEvents
) -> None:
    connection_id = connect("woocommerce")
    url = webhook_url(api, connection_id, "woocommerce")
    ping = asyncio.run(woocommerce_orders.ping(url, webhook_id=7))
    assert (ping.status_code, ping.body) == (200, '{"status":"ping","events":0}')

    shipped = [line("W-1", 2, "101")]
    first = sandboxes.send("woocommerce", webhook_url=url, order_id=501, status="processing", lines=shipped)
    assert first["status_code"] == 200, first
    sandboxes.send(
        "woocommerce", webhook_url=url, topic="order.updated", order_id=501, status="completed", lines=shipped
    )
    cancelled = [line("W-2", 3, "201")]
    sandboxes.send("woocommerce", webhook_url=url, order_id=502, status="processing", lines=cancelled)
    last = sandboxes.send(
        "woocommerce", webhook_url=url, topic="order.updated", order_id=502, status="cancelled", lines=cancelled
    )
    assert last["status_code"] == 200, last

    assert order_events.wait_for(connection_id, 4) == {
        "101": [("placed", 2), ("shipped", 2)],
        "201": [("placed", 3), ("cancelled", 3)],
    }
    event = next(e for e in order_events.of(connection_id) if e.line_id == "101")
    assert (event.channel_type, event.external_order_id, event.sku) == ("woocommerce", "501", "W-1")


def test_amazon_partial_shipments_emit_the_delta_and_a_cancellation_releases_the_rest(
    api: httpx.Client, connect: Callable[[str], str], sandboxes: Sandboxes, order_events: OrderEvents
) -> None:
    connection_id = connect("amazon")
    url = webhook_url(api, connection_id, "amazon")
    order_id = amazon_orders.amazon_order_id()
    # In EventBridge's envelope, as an API destination forwards it, and as the extracted
    # `$.detail`; PendingAvailability (a pre-order) reserves like Unshipped.
    for status, shipped, envelope in (
        ("PendingAvailability", 0, True),
        ("Unshipped", 0, False),
        ("PartiallyShipped", 1, True),
        ("PartiallyShipped", 2, False),
    ):
        sent = sandboxes.send(
            "amazon",
            webhook_url=url,
            order_id=order_id,
            status=status,
            envelope=envelope,
            lines=[line("AMZ-1", 4, "11111111111111", shipped=shipped)],
        )
        assert sent["status_code"] == 200, sent
    sandboxes.send(
        "amazon",
        webhook_url=url,
        order_id=order_id,
        status="Canceled",
        lines=[line("AMZ-1", 4, "11111111111111", shipped=2)],
    )

    assert order_events.wait_for(connection_id, 4) == {
        "11111111111111": [("placed", 4), ("shipped", 1), ("shipped", 1), ("cancelled", 2)]
    }
    refs = [e.movement_ref for e in order_events.of(connection_id)]
    assert refs == [None, None, "upto:2", None]


def test_walmart_purchase_order_and_auto_cancelled_line_become_movements(
    api: httpx.Client, connect: Callable[[str], str], sandboxes: Sandboxes, order_events: OrderEvents
) -> None:
    connection_id = connect("walmart")
    url = webhook_url(api, connection_id, "walmart")
    lines = [line("WM-1", 2, "1"), line("WM-2", 1, "2")]
    created = sandboxes.send("walmart", webhook_url=url, purchase_order_id="1800001", lines=lines)
    assert created["status_code"] == 200, created
    cancelled = sandboxes.send(
        "walmart",
        webhook_url=url,
        event_type="PO_LINE_AUTOCANCELLED",
        purchase_order_id="1800001",
        lines=[line("WM-2", 1, "2", cancelled=1)],
    )
    assert cancelled["status_code"] == 200, cancelled

    assert order_events.wait_for(connection_id, 3) == {
        "1": [("placed", 2)],
        "2": [("placed", 1), ("cancelled", 1)],
    }


def test_walmart_hmac_is_read_from_the_header_the_subscription_names_and_kept_out_of_the_audit(
    api: httpx.Client, merchant: Merchant, sandboxes: Sandboxes, order_events: OrderEvents
) -> None:
    body = {**connection_body("walmart", sandboxes), "inbound": {"signature_header": "X-Walmart-Signature"}}
    answer = api.post("/v1/connections", headers=merchant.auth, json=body)
    assert answer.status_code == 201, answer.text
    connection_id = answer.json()["connection_id"]
    url = webhook_url(api, connection_id, "walmart")
    wait_until_ingest_knows(url)
    notification = walmart_orders.build_notification(
        "PO_CREATED", "1800002", [SandboxOrderLine(sku="WM-9", quantity=1, line_id="1")]
    )

    in_default_header = asyncio.run(walmart_orders.deliver(url, notification, sandboxes.walmart_secret))
    assert in_default_header.status_code == 401
    named = asyncio.run(walmart_orders.deliver(url, notification, sandboxes.walmart_secret, "X-Walmart-Signature"))
    assert named.status_code == 200, named.body

    assert order_events.wait_for(connection_id, 1) == {"1": [("placed", 1)]}
    [delivery] = api.get("/v1/deliveries", headers=merchant.auth, params={"connection_id": connection_id}).json()
    signature = walmart_orders.sign(sandboxes.walmart_secret, orjson.dumps(notification))["Authorization"]
    assert "x-walmart-signature" not in delivery["headers"] and signature not in str(delivery)


def test_ebay_notifications_are_verified_with_ebays_public_key_and_deduplicated_on_notification_id(
    api: httpx.Client, connect: Callable[[str], str], sandboxes: Sandboxes, order_events: OrderEvents
) -> None:
    connection_id = connect("ebay")
    url = webhook_url(api, connection_id, "ebay")
    notification_id = str(uuid.uuid4())
    for _ in range(2):
        sent = sandboxes.send(
            "ebay",
            webhook_url=url,
            order_id="12-34567",
            notification_id=notification_id,
            lines=[line("EB-1", 1, "900001")],
        )
        assert sent["status_code"] == 200, sent
    sandboxes.send("ebay", webhook_url=url, order_id="12-34568", lines=[line("EB-2", 2, "900002")], cancelled=True)
    sandboxes.send("ebay", webhook_url=url, order_id="12-34567", lines=[line("EB-1", 1, "900001", shipped=1)])

    assert order_events.wait_for(connection_id, 4) == {
        "900001": [("placed", 1), ("shipped", 1)],
        "900002": [("placed", 2), ("cancelled", 2)],
    }
    # Signed by another key (one eBay never published): refused.
    impostor = ebay_orders.SigningKey()
    impostor.kid = sandboxes.ebay_key.kid
    forged = asyncio.run(
        ebay_orders.deliver(
            url, ebay_orders.build_notification("12-99999", [SandboxOrderLine(sku="EB-1", quantity=1)]), impostor
        )
    )
    assert forged.status_code == 401


def test_generic_standard_webhooks_orders_become_movements_including_returns(
    api: httpx.Client, connect: Callable[[str], str], sandboxes: Sandboxes, order_events: OrderEvents
) -> None:
    connection_id = connect("generic")
    url = webhook_url(api, connection_id, "generic")
    sandboxes.send("generic", webhook_url=url, type="order.created", order_id="G-1", lines=[line("GEN-1", 3, "a")])
    sandboxes.send(
        "generic", webhook_url=url, type="order.shipped", order_id="G-1", lines=[line("GEN-1", 3, "a", shipped=2)]
    )
    sandboxes.send(
        "generic",
        webhook_url=url,
        type="order.cancelled",
        order_id="G-1",
        lines=[line("GEN-1", 3, "a", shipped=2, cancelled=1)],
    )
    event = generic_orders.build_event("order.updated", "G-1", [], returned={"a": 1})
    event["data"]["lines"] = [
        {
            "line_id": "a",
            "sku": "GEN-1",
            "quantity": 3,
            "shipped_quantity": 2,
            "cancelled_quantity": 1,
            "returned_quantity": 1,
        }
    ]
    _, returned = asyncio.run(generic_orders.deliver(url, event, [sandboxes.generic_secret]))
    assert returned.status_code == 200, returned

    assert order_events.wait_for(connection_id, 4) == {
        "a": [("placed", 3), ("shipped", 2), ("cancelled", 1), ("returned", 1)]
    }


def test_the_same_delivery_sent_five_times_produces_its_movement_once(
    api: httpx.Client, connect: Callable[[str], str], sandboxes: Sandboxes, order_events: OrderEvents
) -> None:
    connection_id = connect("generic")
    url = webhook_url(api, connection_id, "generic")
    answers = [
        sandboxes.send("generic", webhook_url=url, webhook_id="msg_same", order_id="G-5", lines=[line("GEN-5", 2, "1")])
        for _ in range(5)
    ]
    statuses = [httpx.Response(200, content=a["body"]).json()["status"] for a in answers]
    assert statuses[0] == "accepted" and statuses[1:] == ["duplicate"] * 4
    # The same order under new webhook ids (the shop resent it as new events): still once.
    for _ in range(2):
        sandboxes.send("generic", webhook_url=url, order_id="G-5", lines=[line("GEN-5", 2, "1")])
    assert order_events.wait_for(connection_id, 1, settle_s=2.0) == {"1": [("placed", 2)]}


def test_a_cancellation_before_its_order_gives_placed_and_cancelled_once(
    api: httpx.Client, connect: Callable[[str], str], sandboxes: Sandboxes, order_events: OrderEvents
) -> None:
    connection_id = connect("woocommerce")
    url = webhook_url(api, connection_id, "woocommerce")
    lines = [line("W-9", 2, "901")]
    sandboxes.send("woocommerce", webhook_url=url, topic="order.updated", order_id=909, status="cancelled", lines=lines)
    late = sandboxes.send("woocommerce", webhook_url=url, order_id=909, status="processing", lines=lines)
    assert httpx.Response(200, content=late["body"]).json()["events"] == 0
    assert order_events.wait_for(connection_id, 2, settle_s=2.0) == {"901": [("placed", 2), ("cancelled", 2)]}


def test_deliveries_are_audited_without_secrets_and_a_replay_emits_nothing_twice(
    api: httpx.Client,
    merchant: Merchant,
    connect: Callable[[str], str],
    sandboxes: Sandboxes,
    order_events: OrderEvents,
    stack: Stack,
) -> None:
    connection_id = connect("amazon")
    url = webhook_url(api, connection_id, "amazon")
    sent = sandboxes.send("amazon", webhook_url=url, status="Unshipped", lines=[line("AMZ-7", 1, "70000000000001")])
    delivery_id = httpx.Response(200, content=sent["body"]).json()["delivery_id"]

    listed = api.get("/v1/deliveries", headers=merchant.auth, params={"connection_id": connection_id})
    assert listed.status_code == 200, listed.text
    [delivery] = listed.json()
    assert delivery["delivery_id"] == delivery_id
    assert delivery["channel_type"] == "amazon"
    assert delivery["channel_event_id"] == sent["event_id"]
    assert delivery["produced"] == [
        {
            "external_order_id": sent["order_id"],
            "line_id": "70000000000001",
            "sku": "AMZ-7",
            "movement": "placed",
            "quantity": 1,
        }
    ]
    assert "x-api-key" not in delivery["headers"] and sandboxes.amazon_api_key not in str(delivery)
    # The audit keeps the body as delivered: the sandbox sends EventBridge's envelope.
    assert orjson.loads(delivery["body"])["detail"] == sent["payload"]

    replay = api.post(f"/v1/deliveries/{delivery_id}/replay", headers=merchant.auth)
    assert replay.status_code == 200, replay.text
    assert replay.json() == {"delivery_id": delivery_id, "events": 0, "produced": []}
    assert order_events.wait_for(connection_id, 1, settle_s=1.5) == {"70000000000001": [("placed", 1)]}

    other = new_merchant(api, stack, "other")
    assert api.get("/v1/deliveries", headers=other.auth).json() == []
    assert api.post(f"/v1/deliveries/{delivery_id}/replay", headers=other.auth).status_code == 404
    assert api.get("/v1/deliveries").status_code == 401


def test_shopify_created_fulfilled_and_cancelled_orders_become_movements(
    api: httpx.Client, merchant: Merchant, sandbox_shopify: Callable[[], SandboxShopify], order_events: OrderEvents
) -> None:
    sandbox = sandbox_shopify()
    connection_id = connect_shopify(api, merchant, sandbox, "C1", ITEM_C1, "gid://shopify/Location/1")
    url = webhook_url(api, connection_id)
    wait_until_ingest_knows(url)

    shipped = sandbox.order(url, [{"sku": "SH-1", "quantity": 2}], adjust_inventory=False)
    sandbox.order(url, [], topic="orders/fulfilled", order_id=shipped["order_id"], adjust_inventory=False)
    cancelled = sandbox.order(url, [{"sku": "SH-2", "quantity": 1}], adjust_inventory=False)
    sandbox.order(url, [], topic="orders/cancelled", order_id=cancelled["order_id"], adjust_inventory=False)
    # Shopify's retry of the cancellation (same event id, new webhook id) changes nothing.
    again = sandbox.redeliver(cancelled["event_id"], url)
    assert again["status_code"] == 200

    shipped_line, cancelled_line = str(shipped["order_id"] * 1000 + 1), str(cancelled["order_id"] * 1000 + 1)
    assert order_events.wait_for(connection_id, 4, settle_s=1.5) == {
        shipped_line: [("placed", 2), ("shipped", 2)],
        cancelled_line: [("placed", 1), ("cancelled", 1)],
    }
