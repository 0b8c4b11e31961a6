"""One merchant's bad event never stops the pipeline for the others (issue 11, findings 1 and 2).

A poison record is put on every partition of a topic, so that it sits in front of
whatever another merchant sends next; that merchant's orders must still be reserved and
pushed, and each poison record must be listed as a dead letter of its merchant, which
can replay it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from stocksync_common.topics import CATALOGUE, CHANNEL_QUANTITY, CONNECTIONS, ORDERS, STOCK_CHANGED, Topic
from stocksync_embedded.stack import Stack

from tests.e2e.channel_sandboxes import SandboxShopify
from tests.e2e.conftest import Merchant, new_merchant, wait_for, webhook_url
from tests.e2e.test_order_flow import connect

ITEM = "gid://shopify/InventoryItem/901"
LOCATION = "gid://shopify/Location/9"
LONG_SKU = "S" * 10_000


def _order_line(merchant_id: str, sku: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "causation_id": "poison-test",
        "merchant_id": merchant_id,
        "connection_id": str(uuid.uuid4()),
        "channel_type": "shopify",
        "external_order_id": "1",
        "line_id": "1",
        "sku": sku,
        "movement": "placed",
        "quantity": 1,
        "received_at": datetime.now(UTC).isoformat(),
    }


def _stock_changed(merchant_id: str, available: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "causation_id": "poison-test",
        "merchant_id": merchant_id,
        "sku": "P",
        "version": 1,
        "on_hand": available,
        "reserved": 0,
        "available": available,
    }


def _channel_quantity(merchant_id: str, sku: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "causation_id": "poison-test",
        "merchant_id": merchant_id,
        "connection_id": str(uuid.uuid4()),
        "sku": sku,
        "quantity": 1,
        "version": 1,
        "stock_version": 1,
        "available": 1,
    }


def _connection(merchant_id: str) -> dict[str, Any]:
    # Valid for the contract, but PostgreSQL cannot store a NUL: the consumers' handlers
    # fail on it, and bisection finds it.
    return {
        "event_id": str(uuid.uuid4()),
        "causation_id": "poison-test",
        "merchant_id": merchant_id,
        "connection_id": str(uuid.uuid4()),
        "channel_type": "generic",
        "name": "poison\x00name",
        "active": True,
    }


def _attributes(merchant_id: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "causation_id": "poison-test",
        "merchant_id": merchant_id,
        "sku": "P",
        "brand": "poison\x00brand",
        "version": 1,
    }


def put_on_every_partition(stack: Stack, topic: Topic, records: list[dict[str, Any]]) -> None:
    """Each record on every partition of the topic, as raw JSON (beyond what orjson writes)."""

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap_servers, acks="all")
        await producer.start()
        try:
            for record in records:
                value = json.dumps(record).encode()
                key = f"{record['merchant_id']}:poison".encode()
                for partition in range(topic.partitions):
                    await producer.send_and_wait(topic.name, value, key=key, partition=partition)
        finally:
            await producer.stop()

    asyncio.run(produce())


def dead_letters(api: httpx.Client, merchant: Merchant, **params: Any) -> list[dict[str, Any]]:
    answer = api.get("/v1/dead-letters", headers=merchant.auth, params=params)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["dead_letters"]
    return items


def test_a_signed_shopify_order_with_a_10000_character_sku_is_refused_and_produces_nothing(
    api: httpx.Client, merchant: Merchant, sandbox_shopify: Callable[[], SandboxShopify]
) -> None:
    shop = sandbox_shopify()
    connection_id = connect(api, merchant, shop, "C1", ITEM, LOCATION)
    url = webhook_url(api, connection_id)
    wait_for(lambda: shop.order(url, [{"sku": "OK", "quantity": 1}])["status_code"] == 200)

    answer = shop.order(url, [{"sku": LONG_SKU, "quantity": 1}])

    assert answer["status_code"] == 422, answer
    assert "sku" in answer["body"]
    nul = shop.order(url, [{"sku": "A\x00B", "quantity": 1}])
    assert nul["status_code"] == 422, nul
    deliveries = api.get("/v1/deliveries", headers=merchant.auth, params={"connection_id": connection_id}).json()
    assert all(LONG_SKU not in json.dumps(d) for d in deliveries)


def test_a_poison_order_event_is_dead_lettered_while_another_merchants_orders_are_reserved(
    api: httpx.Client, merchant: Merchant, stack: Stack, sandbox_shopify: Callable[[], SandboxShopify]
) -> None:
    bystander = new_merchant(api, stack, "bystander")
    shop = sandbox_shopify()
    connection_id = connect(api, bystander, shop, "C1", ITEM, LOCATION)
    api.post("/v1/stock/snapshots", headers=bystander.auth, json={"items": [{"sku": "A", "on_hand": 10}]})
    url = webhook_url(api, connection_id)
    wait_for(lambda: shop.order(url, [{"sku": "A", "quantity": 1}])["status_code"] == 200)

    # In front of whatever the bystander sends next, on every partition.
    put_on_every_partition(stack, ORDERS, [_order_line(merchant.merchant_id, LONG_SKU)])
    for _ in range(6):
        assert shop.order(url, [{"sku": "A", "quantity": 1}])["status_code"] == 200

    wait_for(lambda: api.get("/v1/stock/A", headers=bystander.auth).json()["reserved"] == 7, timeout=90)
    letters = wait_for(
        lambda: len(found := dead_letters(api, merchant, topic="orders.v1")) == ORDERS.partitions and found
    )
    assert {(d["service"], d["topic"]) for d in letters} == {("stock-ledger", "orders.v1")}
    assert {d["partition"] for d in letters} == set(range(ORDERS.partitions))
    assert all("sku" in d["error"] and LONG_SKU in d["record"] for d in letters)
    assert dead_letters(api, bystander) == []

    # Replayed as is, it fails again: a new dead letter, and the first one says it was replayed.
    first = letters[0]
    replay = api.post(f"/v1/dead-letters/{first['dead_letter_id']}/replay", headers=merchant.auth)
    assert (replay.status_code, replay.json()["replayed"]) == (202, [first["dead_letter_id"]])
    again = wait_for(lambda: len(dead_letters(api, merchant, topic="orders.v1")) == ORDERS.partitions + 1)
    assert again
    replayed = dead_letters(api, merchant, replayed="true")
    assert [(d["dead_letter_id"], d["replay_count"]) for d in replayed] == [(first["dead_letter_id"], 1)]
    # Another merchant's dead letter cannot be replayed, or told apart from one that does not exist.
    stranger = api.post(f"/v1/dead-letters/{first['dead_letter_id']}/replay", headers=bystander.auth)
    missing = api.post(f"/v1/dead-letters/{uuid.uuid4()}/replay", headers=bystander.auth)
    assert (stranger.status_code, missing.status_code) == (404, 404)
    assert stranger.json() == missing.json()


def test_poison_events_on_every_other_topic_do_not_stop_another_merchants_orders_or_pushes(
    api: httpx.Client, merchant: Merchant, stack: Stack, sandbox_shopify: Callable[[], SandboxShopify]
) -> None:
    put_on_every_partition(stack, STOCK_CHANGED, [_stock_changed(merchant.merchant_id, 2**70)])
    put_on_every_partition(stack, CHANNEL_QUANTITY, [_channel_quantity(merchant.merchant_id, LONG_SKU)])
    put_on_every_partition(stack, CONNECTIONS, [_connection(merchant.merchant_id)])
    put_on_every_partition(stack, CATALOGUE, [_attributes(merchant.merchant_id)])
    bystander = new_merchant(api, stack, "bystander")
    shop = sandbox_shopify()
    connection_id = connect(api, bystander, shop, "C1", ITEM, LOCATION)
    # order-ingest learns of the connection past the poison on connections.v1.
    url = webhook_url(api, connection_id)
    wait_for(lambda: shop.order(url, [{"sku": "B", "quantity": 1}])["status_code"] == 200, timeout=90)
    # Repeated until the publisher knows the connection: the first snapshot may precede it.
    for on_hand in (5, 6, 7):
        api.post("/v1/stock/snapshots", headers=bystander.auth, json={"items": [{"sku": "A", "on_hand": on_hand}]})
        wait_for(lambda expected=on_hand: expected in shop.quantities(ITEM), timeout=90)  # type: ignore[misc]

    expected = {
        ("rule-engine", "stock.changed.v1"): STOCK_CHANGED.partitions,
        ("channel-publisher", "channel.quantity.v1"): CHANNEL_QUANTITY.partitions,
        ("order-ingest", "connections.v1"): CONNECTIONS.partitions,
        ("rule-engine", "connections.v1"): CONNECTIONS.partitions,
        ("rule-engine", "catalogue.v1"): CATALOGUE.partitions,
    }

    def every_topic() -> list[dict[str, Any]] | None:
        found = dead_letters(api, merchant)
        return found if len(found) >= sum(expected.values()) else None

    letters = wait_for(every_topic)
    assert Counter((d["service"], d["topic"]) for d in letters) == expected
    # The NULs reached the handlers (valid for the contract) and were found by bisection.
    assert all(
        "22021" in d["error"] or "0x00" in d["error"]
        for d in letters
        if d["topic"] in ("connections.v1", "catalogue.v1")
    )
    # Operators see every merchant's dead letters with the admin token, and nothing without it.
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    listed = api.get("/v1/admin/dead-letters", headers=admin, params={"merchant_id": merchant.merchant_id})
    assert listed.status_code == 200
    assert {d["dead_letter_id"] for d in listed.json()["dead_letters"]} == {d["dead_letter_id"] for d in letters}
    assert api.get("/v1/admin/dead-letters", headers=merchant.auth).status_code == 401
    # Paged, newest first.
    page = api.get("/v1/dead-letters", headers=merchant.auth, params={"limit": 5}).json()
    rest = api.get("/v1/dead-letters", headers=merchant.auth, params={"limit": 100, "before": page["next"]}).json()
    assert [d["dead_letter_id"] for d in page["dead_letters"] + rest["dead_letters"]] == [
        d["dead_letter_id"] for d in dead_letters(api, merchant)
    ]


def test_a_rule_with_a_value_beyond_the_bounds_is_refused_naming_the_field_and_nothing_is_saved(
    api: httpx.Client, merchant: Merchant
) -> None:
    rule: dict[str, Any] = {
        "name": "huge",
        "condition": {"op": "always"},
        "action": {"type": "set", "value": 2**70},
    }
    refused = api.post("/v1/rules", headers=merchant.auth, json=rule)
    assert refused.status_code == 422, refused.text
    assert any("action" in error["loc"] for error in refused.json()["detail"])
    threshold = {**rule, "action": {"type": "set", "value": 0}, "condition": {"op": "<=", "value": 2**63}}
    assert api.post("/v1/rules", headers=merchant.auth, json=threshold).status_code == 422
    position = {**rule, "action": {"type": "set", "value": 0}, "position": 2**40}
    assert api.post("/v1/rules", headers=merchant.auth, json=position).status_code == 422
    listed = api.get("/v1/rules", headers=merchant.auth)
    assert (listed.status_code, listed.json()) == (200, [])
