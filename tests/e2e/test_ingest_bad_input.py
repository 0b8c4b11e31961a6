# ruff: noqa: F811 - the fixtures imported below are parameters of the tests (pytest style)
"""Every channel's refusals: each answers with its code, names what is wrong, and
produces nothing (docs/design.md section 6)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import httpx
import orjson

from stocksync_sandboxes import amazon_orders, generic_orders, walmart_orders, woocommerce_orders
from stocksync_sandboxes.order_delivery import SandboxOrderLine

from tests.e2e.conftest import Merchant, wait_for, webhook_url

# Fixtures shared with the channel tests (pytest finds them in this module's namespace).
from tests.e2e.test_ingest_channels import (  # noqa: F401 - fixtures shared with the channel tests
    OrderEvents,
    Sandboxes,
    connect,
    order_events,
    sandboxes,
)

LINES = [SandboxOrderLine(sku="BAD", quantity=1, line_id="1")]


def assert_nothing_produced(order_events: OrderEvents, connection_id: str) -> None:
    time.sleep(1.0)
    assert order_events.movements(connection_id) == []


def test_a_wrong_signature_or_key_gets_401_on_every_channel(
    api: httpx.Client, connect: Callable[[str], str], sandboxes: Sandboxes, order_events: OrderEvents
) -> None:
    woo, amazon, walmart, generic = (connect(c) for c in ("woocommerce", "amazon", "walmart", "generic"))
    answers = {
        "woocommerce": asyncio.run(
            woocommerce_orders.deliver(
                webhook_url(api, woo, "woocommerce"),
                "order.created",
                woocommerce_orders.build_order(1, "processing", LINES),
                "not-the-secret",
            )
        ),
        "amazon": asyncio.run(
            amazon_orders.deliver(
                webhook_url(api, amazon, "amazon"),
                amazon_orders.build_notification(seller_id="S", order_id="1", status="Unshipped", lines=LINES),
                "not-the-api-key-at-all",
            )
        ),
        "walmart": asyncio.run(
            walmart_orders.deliver(
                webhook_url(api, walmart, "walmart"),
                walmart_orders.build_notification("PO_CREATED", "1", LINES),
                "not-the-secret",
            )
        ),
        "generic": asyncio.run(
            generic_orders.deliver(
                webhook_url(api, generic, "generic"),
                generic_orders.build_event("order.created", "1", LINES),
                [generic_orders.new_secret()],
            )
        )[1],
    }
    assert {channel: a.status_code for channel, a in answers.items()} == dict.fromkeys(answers, 401)
    for connection_id in (woo, amazon, walmart, generic):
        assert_nothing_produced(order_events, connection_id)


def test_a_standard_webhook_older_than_five_minutes_gets_401(
    api: httpx.Client, connect: Callable[[str], str], sandboxes: Sandboxes, order_events: OrderEvents
) -> None:
    connection_id = connect("generic")
    event = generic_orders.build_event("order.created", "OLD-1", LINES)
    _, stale = asyncio.run(
        generic_orders.deliver(
            webhook_url(api, connection_id, "generic"),
            event,
            [sandboxes.generic_secret],
            timestamp=int(time.time()) - 360,
        )
    )
    assert stale.status_code == 401
    assert_nothing_produced(order_events, connection_id)


def test_a_connection_of_another_type_or_an_unknown_one_gets_404(
    api: httpx.Client, connect: Callable[[str], str]
) -> None:
    woo = connect("woocommerce")
    for path in (
        f"/webhooks/amazon/{woo}",
        f"/webhooks/mirakl/{woo}",
        f"/webhooks/generic/{uuid.uuid4()}",
        f"/webhooks/nosuchchannel/{woo}",
    ):
        assert api.post(path, content=b"{}").status_code == 404, path


def test_an_oversized_body_gets_413(api: httpx.Client, connect: Callable[[str], str]) -> None:
    connection_id = connect("generic")
    answer = api.post(f"/webhooks/generic/{connection_id}", content=b"{" + b" " * 1_100_000 + b"}")
    assert answer.status_code == 413


def test_a_malformed_payload_gets_422_naming_the_field(
    api: httpx.Client, connect: Callable[[str], str], sandboxes: Sandboxes, order_events: OrderEvents
) -> None:
    amazon, generic = connect("amazon"), connect("generic")
    notification = amazon_orders.build_notification(seller_id="S", order_id="1", status="Unshipped", lines=LINES)
    notification["Payload"]["OrderChangeNotification"]["Summary"]["OrderItems"][0]["Quantity"] = "many"
    answer = asyncio.run(
        amazon_orders.deliver(webhook_url(api, amazon, "amazon"), notification, sandboxes.amazon_api_key)
    )
    assert answer.status_code == 422
    assert orjson.loads(answer.body)["detail"][0]["loc"] == [
        "body",
        "Payload",
        "OrderChangeNotification",
        "Summary",
        "OrderItems",
        0,
        "Quantity",
    ]

    event = generic_orders.build_event("order.created", "1", LINES)
    del event["data"]["order_id"]
    _, answer = asyncio.run(
        generic_orders.deliver(webhook_url(api, generic, "generic"), event, [sandboxes.generic_secret])
    )
    assert answer.status_code == 422
    assert orjson.loads(answer.body)["detail"][0]["loc"] == ["body", "data", "order_id"]
    assert_nothing_produced(order_events, amazon)
    assert_nothing_produced(order_events, generic)


def test_a_rotated_webhook_secret_is_accepted_beside_the_old_one_until_the_old_one_is_retired(
    api: httpx.Client,
    merchant: Merchant,
    connect: Callable[[str], str],
    sandboxes: Sandboxes,
    order_events: OrderEvents,
) -> None:
    connection_id = connect("generic")
    url = webhook_url(api, connection_id, "generic")
    new_secret = generic_orders.new_secret()

    def status_with(secret: str) -> int | None:
        event = generic_orders.build_event("order.created", f"ROT-{uuid.uuid4().hex[:6]}", LINES)
        return asyncio.run(generic_orders.deliver(url, event, [secret]))[1].status_code

    rotated = api.post(
        f"/v1/connections/{connection_id}/webhook-secrets", headers=merchant.auth, json={"secret": new_secret}
    )
    assert rotated.status_code == 200, rotated.text
    assert new_secret not in rotated.text and sandboxes.generic_secret not in rotated.text
    wait_for(lambda: status_with(new_secret) == 200, timeout=30)
    assert status_with(sandboxes.generic_secret) == 200

    retired = api.delete(f"/v1/connections/{connection_id}/webhook-secrets/previous", headers=merchant.auth)
    assert retired.status_code == 200, retired.text
    wait_for(lambda: status_with(sandboxes.generic_secret) == 401, timeout=30)
    assert status_with(new_secret) == 200
    shown = api.get(f"/v1/connections/{connection_id}", headers=merchant.auth).text
    assert new_secret not in shown and sandboxes.generic_secret not in shown
