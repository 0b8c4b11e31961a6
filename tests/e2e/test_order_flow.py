"""The whole flow over the real broker and database, services as separate processes.

SKU A has on_hand 5; channel C2 has the rule "0 when <= 3"; two orders of 1 arrive on
channel C1 as signed webhooks; C2's sandbox receives 5, then 4, then 0.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from typing import Any

import httpx

from tests.e2e.channel_sandboxes import SandboxShopify
from tests.e2e.conftest import Merchant, connect_shopify, wait_for, webhook_url

ITEM_C1 = "gid://shopify/InventoryItem/101"
ITEM_C2 = "gid://shopify/InventoryItem/201"


def connect(api: httpx.Client, merchant: Merchant, sandbox: SandboxShopify, name: str, item: str, location: str) -> str:
    """A connection to the store listing SKU A as its `item` at `location`."""
    listing = {"sku": "A", "inventory_item_id": item, "location_id": location}
    return connect_shopify(api, merchant, sandbox, name, [listing])


def set_up_two_channels(
    api: httpx.Client, merchant: Merchant, sandbox_shopify: Callable[[], SandboxShopify]
) -> tuple[SandboxShopify, str, SandboxShopify, str]:
    c1, c2 = sandbox_shopify(), sandbox_shopify()
    c1_id = connect(api, merchant, c1, "C1", ITEM_C1, "gid://shopify/Location/1")
    c2_id = connect(api, merchant, c2, "C2", ITEM_C2, "gid://shopify/Location/2")
    # The rule engine learns of connections through connections.v1: wait until it knows C2.
    rule: dict[str, Any] = {
        "name": "buffer on C2",
        "channels": [c2_id],
        "condition": {"op": "<=", "value": 3},
        "action": {"type": "set", "value": 0},
    }
    created = wait_for(lambda: (r := api.post("/v1/rules", headers=merchant.auth, json=rule)).status_code == 201 and r)
    assert created.json()["channels"] == [c2_id]
    snapshot = api.post("/v1/stock/snapshots", headers=merchant.auth, json={"items": [{"sku": "A", "on_hand": 5}]})
    assert snapshot.status_code == 200, snapshot.text
    return c1, c1_id, c2, c2_id


def test_two_orders_on_c1_lower_c2_to_5_then_4_then_0(
    api: httpx.Client, merchant: Merchant, sandbox_shopify: Callable[[], SandboxShopify]
) -> None:
    c1, c1_id, c2, _ = set_up_two_channels(api, merchant, sandbox_shopify)
    wait_for(lambda: c2.quantities(ITEM_C2) == [5])
    windows = []

    first = c1.order(webhook_url(api, c1_id), [{"sku": "A", "quantity": 1}])
    assert first["status_code"] == 200, first
    wait_for(lambda: c2.quantities(ITEM_C2)[-1] == 4)
    windows.append(next(c for c in c2.changes() if c["quantity"] == 4)["received_at"] - first["sent_at"])

    second = c1.order(webhook_url(api, c1_id), [{"sku": "A", "quantity": 1}])
    assert second["status_code"] == 200, second
    wait_for(lambda: c2.quantities(ITEM_C2)[-1] == 0)
    windows.append(next(c for c in c2.changes() if c["quantity"] == 0)["received_at"] - second["sent_at"])

    assert c2.quantities(ITEM_C2) == [5, 4, 0]
    stock = api.get("/v1/stock/A", headers=merchant.auth).json()
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (5, 2, 3)
    # C1 has no rule: it shows the plain available quantity.
    wait_for(lambda: c1.quantities(ITEM_C1)[-1:] == [3])
    print(
        f"\nsync window webhook -> C2 sandbox: {[round(w * 1000, 1) for w in windows]} ms, "
        f"median {statistics.median(windows) * 1000:.1f} ms"
    )

    # A second delivery of the first webhook changes nothing.
    replay = c1.redeliver(first["event_id"], webhook_url(api, c1_id))
    assert replay["status_code"] == 200
    assert json.loads(replay["body"])["status"] == "duplicate"
    # A third order, on the same SKU and so the same partition after the redelivery: once
    # it is applied, the redelivery would have been too. One more version, one more unit.
    third = c1.order(webhook_url(api, c1_id), [{"sku": "A", "quantity": 1}])
    assert third["status_code"] == 200, third
    stock_after = wait_for(
        lambda: (s := api.get("/v1/stock/A", headers=merchant.auth).json())["version"] > stock["version"] and s
    )
    assert (stock_after["reserved"], stock_after["version"]) == (3, stock["version"] + 1)
    assert c2.quantities(ITEM_C2) == [5, 4, 0]


def test_push_history_says_which_rule_decided_zero(
    api: httpx.Client, merchant: Merchant, sandbox_shopify: Callable[[], SandboxShopify]
) -> None:
    c1, c1_id, c2, c2_id = set_up_two_channels(api, merchant, sandbox_shopify)
    rule_id = api.get("/v1/rules", headers=merchant.auth).json()[0]["rule_id"]
    c1.order(webhook_url(api, c1_id), [{"sku": "A", "quantity": 2}])
    wait_for(lambda: c2.quantities(ITEM_C2)[-1:] == [0])

    def last_accepted() -> dict[str, Any] | None:
        pushes = api.get(
            "/v1/pushes", headers=merchant.auth, params={"connection_id": c2_id, "sku": "A", "status": "accepted"}
        ).json()
        # The sandbox records the call before the publisher commits its history row.
        return pushes[-1] if pushes and pushes[-1]["quantity"] == 0 else None

    last = wait_for(last_accepted)
    assert (last["quantity"], last["rule_ids"]) == (0, [rule_id])
    assert last["sync_window_ms"] is not None and last["sync_window_ms"] > 0
    assert last["causation_id"].startswith("shopify:")
