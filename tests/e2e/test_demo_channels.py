"""Every demo channel's sandbox, started as `make run` starts it, places an order that
reserves its units in the ledger once.

Each sandbox runs through the demo's own CLI arguments (`stocksync_embedded.demo.DemoChannel`,
`python -m stocksync_sandboxes <channel> ...`) and its connection is created with the
demo's body, so this checks the demo's wiring: the inbound secret the sandbox signs
with is the one its connection verifies. A second delivery of the same notification
(the channel's retry) must change nothing.

Mirakl has no webhooks: order-ingest polls OR11 at most once a minute, so its case runs
on a Stocksync of its own with the demo's shorter poll interval
(`MIRAKL_POLL_INTERVAL_OVERRIDE_S`, as `make run` sets it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from stocksync_embedded.demo import DEMO_MIRAKL_INTERVAL_S, DemoChannel, channel_sandbox_process
from stocksync_embedded.stack import Stack, free_port

from tests.conftest import PrivateDatabase, own_infrastructure
from tests.e2e.channel_sandboxes import SandboxProcesses
from tests.e2e.conftest import Merchant, new_merchant, wait_for, wait_until_ingest_knows

WEBHOOK_CHANNEL_TYPES = ("woocommerce", "amazon", "ebay", "walmart", "generic")
ON_HAND = 7
ORDERED = 2


def redelivery(channel_type: str, first: dict[str, Any]) -> dict[str, Any]:
    """The fields that make the sandbox send the same notification again, as the channel's retry does."""
    order_id, event_id = first["order_id"], first.get("event_id")
    return {
        # WooCommerce gives every delivery a new delivery id: order id and status identify it.
        "woocommerce": {"order_id": order_id},
        "amazon": {"order_id": order_id, "notification_id": event_id},
        "ebay": {"order_id": order_id, "notification_id": event_id},
        "walmart": {"purchase_order_id": order_id, "event_id": event_id},
        "generic": {"order_id": order_id, "webhook_id": event_id},
    }[channel_type]


def stock(api: httpx.Client, auth: dict[str, str], sku: str) -> dict[str, int]:
    answer = api.get(f"/v1/stock/{sku}", headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return {key: body[key] for key in ("on_hand", "reserved", "available")}


def place_order(channel: DemoChannel, stocksync_url: str, sku: str, **extra: Any) -> dict[str, Any]:
    answer = httpx.post(
        f"{channel.url}/_sandbox/orders", json={**channel.order(stocksync_url, sku, ORDERED), **extra}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def listing_quantity(channel: DemoChannel, sku: str) -> int | None:
    listings = httpx.get(f"{channel.url}/_sandbox/listings", timeout=10).json()["listings"]
    return next((listing["quantity"] for listing in listings if listing["sku"] == sku), None)


def connect(api: httpx.Client, auth: dict[str, str], channel: DemoChannel, sku: str) -> None:
    """Create the demo's connection for the sandbox, its listing on both sides, and the SKU's stock."""
    answer = api.post("/v1/connections", headers=auth, json=channel.connection([sku]))
    assert answer.status_code == 201, answer.text
    channel.connection_id = answer.json()["connection_id"]
    httpx.post(
        f"{channel.url}/_sandbox/listings", json={"listings": channel.sandbox_listings([sku])}, timeout=10
    ).raise_for_status()
    snapshot = api.post("/v1/stock/snapshots", headers=auth, json={"items": [{"sku": sku, "on_hand": ON_HAND}]})
    assert snapshot.status_code == 200, snapshot.text
    assert stock(api, auth, sku) == {"on_hand": ON_HAND, "reserved": 0, "available": ON_HAND}


def start_demo_channel(processes: SandboxProcesses, channel_type: str) -> DemoChannel:
    """A channel's sandbox started exactly as the demo starts it, on a free port."""
    channel = DemoChannel.new(channel_type, free_port())
    processes.run(channel_sandbox_process(channel, processes.log_dir))
    return channel


@pytest.fixture
def demo_sandbox(sandbox_processes: SandboxProcesses) -> Callable[[str], DemoChannel]:
    return lambda channel_type: start_demo_channel(sandbox_processes, channel_type)


@pytest.mark.parametrize("channel_type", WEBHOOK_CHANNEL_TYPES)
def test_an_order_on_the_demo_sandbox_reserves_its_units_once_and_its_retry_changes_nothing(
    api: httpx.Client,
    merchant: Merchant,
    stack: Stack,
    demo_sandbox: Callable[[str], DemoChannel],
    channel_type: str,
) -> None:
    sku = f"DEMO-{channel_type.upper()}"
    channel = demo_sandbox(channel_type)
    connect(api, merchant.auth, channel, sku)
    webhook_url = f"{stack.base_url}/webhooks/{channel_type}/{channel.connection_id}"
    wait_until_ingest_knows(webhook_url)

    first = place_order(channel, stack.base_url, sku)
    assert first["url"] == webhook_url
    assert first["status_code"] == 200, first
    assert orjson.loads(first["body"])["events"] == 1
    wait_for(lambda: stock(api, merchant.auth, sku)["reserved"] == ORDERED, timeout=30)

    again = place_order(channel, stack.base_url, sku, **redelivery(channel_type, first))
    assert again["status_code"] == 200, again
    assert orjson.loads(again["body"])["events"] == 0
    time.sleep(1.5)  # long enough for a wrongly emitted movement to reach the ledger
    assert stock(api, merchant.auth, sku) == {"on_hand": ON_HAND, "reserved": ORDERED, "available": ON_HAND - ORDERED}
    # The same sandbox receives the new quantity too: both sides of the channel are wired.
    wait_for(lambda: listing_quantity(channel, sku) == ON_HAND - ORDERED, timeout=30)


@pytest.fixture(scope="module")
def mirakl_stack(tmp_path_factory: pytest.TempPathFactory, private_database: PrivateDatabase) -> Iterator[Stack]:
    with own_infrastructure(
        Path(tmp_path_factory.mktemp("demo-mirakl")),
        private_database,
        MIRAKL_POLL_INTERVAL_OVERRIDE_S=str(DEMO_MIRAKL_INTERVAL_S),
        POLLER_TICK_S="0.5",
    ) as stack:
        stack.start_services()
        yield stack


def test_a_mirakl_order_on_the_demo_sandbox_is_polled_once_and_listed_again_changes_nothing(
    mirakl_stack: Stack,
) -> None:
    processes = SandboxProcesses(mirakl_stack.home / "logs")
    try:
        with httpx.Client(base_url=mirakl_stack.base_url, timeout=30) as api:
            auth = new_merchant(api, mirakl_stack, "demo mirakl").auth
            sku = "DEMO-MIRAKL"
            channel = start_demo_channel(processes, "mirakl")
            # The order is in the shop before the connection exists: the first poll, at
            # once, looks a day back and finds it.
            order = place_order(channel, mirakl_stack.base_url, sku)
            connect(api, auth, channel, sku)
            wait_for(lambda: stock(api, auth, sku)["reserved"] == ORDERED, timeout=30)

            def or11_calls() -> int:
                return len(httpx.get(f"{channel.url}/_sandbox/or11-calls", timeout=10).json()["calls"])

            # The same order again, same state, newer update date: the next poll lists it
            # again (counted after the update, so that call cannot have missed it).
            place_order(channel, mirakl_stack.base_url, sku, order_id=order["order_id"])
            polls = or11_calls()
            wait_for(lambda: or11_calls() > polls, timeout=3 * DEMO_MIRAKL_INTERVAL_S)
            time.sleep(1.5)
            assert stock(api, auth, sku) == {"on_hand": ON_HAND, "reserved": ORDERED, "available": ON_HAND - ORDERED}
    finally:
        processes.stop()
