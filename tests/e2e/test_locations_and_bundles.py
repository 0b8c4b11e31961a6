"""Warehouses and bundles over the real broker, database and Shopify sandboxes.

A channel fed only from warehouse B is never shown warehouse A's stock, and its orders
reserve at B; selling the last unit of a component on one channel sets every bundle that
contains it to 0 on the other channel.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx

from stocksync_embedded.demo import DEMO_WAREHOUSE, DEMO_WAREHOUSE_STOCK, Demo, seed_warehouse_and_bundle
from stocksync_embedded.stack import Stack

from tests.e2e.channel_sandboxes import SandboxShopify
from tests.e2e.conftest import Merchant, connect_shopify, new_merchant, wait_for, webhook_url

LOCATION_1 = "gid://shopify/Location/1"
LOCATION_2 = "gid://shopify/Location/2"


def shown(sandbox: SandboxShopify) -> dict[tuple[str, str], int]:
    """The newest quantity the sandbox holds per (inventory item, location)."""
    latest: dict[tuple[str, str], int] = {}
    for change in sandbox.changes():
        latest[(change["inventory_item_id"], change["location_id"])] = change["quantity"]
    return latest


def sells_from(api: httpx.Client, merchant: Merchant, connection_id: str, location: str) -> bool:
    """Whether the stock-ledger has heard that the connection sells from `location`."""
    answer = api.get("/v1/locations", headers=merchant.auth)
    assert answer.status_code == 200, answer.text
    return any(
        use["location"] == location and any(c["connection_id"] == connection_id for c in use["connections"])
        for use in answer.json()
    )


def test_a_channel_fed_only_from_warehouse_b_is_never_shown_warehouse_a_stock_and_reserves_at_b(
    api: httpx.Client, merchant: Merchant, sandbox_shopify: Callable[[], SandboxShopify]
) -> None:
    counted = api.post(
        "/v1/stock/snapshots",
        headers=merchant.auth,
        json={"items": [{"sku": "A", "on_hand": 5, "location": "wa"}, {"sku": "A", "on_hand": 2, "location": "wb"}]},
    )
    assert counted.status_code == 200, counted.text
    only_b, both = sandbox_shopify(), sandbox_shopify()
    item = "gid://shopify/InventoryItem/301"
    only_b_id = connect_shopify(
        api,
        merchant,
        only_b,
        "B only",
        [{"sku": "A", "location": "wb", "inventory_item_id": item, "location_id": LOCATION_2}],
        locations=["wb"],
    )
    both_id = connect_shopify(
        api,
        merchant,
        both,
        "A and B",
        [
            {"sku": "A", "location": "wa", "inventory_item_id": item, "location_id": LOCATION_1},
            {"sku": "A", "location": "wb", "inventory_item_id": item, "location_id": LOCATION_2},
        ],
    )
    # Created with the default location; then told where it sells from.
    moved = api.put(f"/v1/connections/{both_id}/locations", headers=merchant.auth, json={"locations": ["wa", "wb"]})
    assert moved.status_code == 200 and moved.json()["locations"] == ["wa", "wb"], moved.text

    wait_for(lambda: shown(both) == {(item, LOCATION_1): 5, (item, LOCATION_2): 2})
    wait_for(lambda: shown(only_b) == {(item, LOCATION_2): 2})
    wait_for(lambda: sells_from(api, merchant, only_b_id, "wb"))

    order = only_b.order(webhook_url(api, only_b_id), [{"sku": "A", "quantity": 1}])
    assert order["status_code"] == 200, order
    wait_for(lambda: shown(both) == {(item, LOCATION_1): 5, (item, LOCATION_2): 1})
    wait_for(lambda: shown(only_b) == {(item, LOCATION_2): 1})
    # Never A's units: every quantity the B-only channel was ever sent is B's.
    assert {c["quantity"] for c in only_b.changes()} <= {2, 1}
    assert {c["location_id"] for c in only_b.changes()} == {LOCATION_2}
    stock_b = api.get("/v1/stock/A", headers=merchant.auth, params={"location": "wb"}).json()
    assert (stock_b["on_hand"], stock_b["reserved"]) == (2, 1)


def test_selling_the_last_component_on_one_channel_sets_every_bundle_containing_it_to_0_on_the_other(
    api: httpx.Client, merchant: Merchant, sandbox_shopify: Callable[[], SandboxShopify]
) -> None:
    counted = api.post(
        "/v1/stock/snapshots",
        headers=merchant.auth,
        json={"items": [{"sku": "BOARD", "on_hand": 1}, {"sku": "SCREW", "on_hand": 40}]},
    )
    assert counted.status_code == 200, counted.text
    for sku, components in (
        ("KIT", [{"sku": "BOARD", "quantity": 1}, {"sku": "SCREW", "quantity": 8}]),
        ("BOARD-PACK", [{"sku": "BOARD", "quantity": 1}]),
        ("SCREWS-10", [{"sku": "SCREW", "quantity": 10}]),
    ):
        made = api.post("/v1/bundles", headers=merchant.auth, json={"sku": sku, "components": components})
        assert made.status_code == 201, made.text
    assert api.get("/v1/bundles/KIT", headers=merchant.auth).json()["available"] == {"default": 1}

    seller, other = sandbox_shopify(), sandbox_shopify()
    items = {
        sku: f"gid://shopify/InventoryItem/{400 + n}"
        for n, sku in enumerate(["BOARD", "KIT", "BOARD-PACK", "SCREWS-10"])
    }
    seller_id = connect_shopify(
        api,
        merchant,
        seller,
        "seller",
        [{"sku": "BOARD", "inventory_item_id": items["BOARD"], "location_id": LOCATION_1}],
    )
    connect_shopify(
        api,
        merchant,
        other,
        "other",
        [{"sku": sku, "inventory_item_id": item, "location_id": LOCATION_1} for sku, item in items.items()],
    )
    wait_for(
        lambda: (
            shown(other)
            == {
                (items["BOARD"], LOCATION_1): 1,
                (items["KIT"], LOCATION_1): 1,
                (items["BOARD-PACK"], LOCATION_1): 1,
                (items["SCREWS-10"], LOCATION_1): 4,
            }
        )
    )

    order = seller.order(webhook_url(api, seller_id), [{"sku": "BOARD", "quantity": 1}])
    assert order["status_code"] == 200, order
    wait_for(
        lambda: (
            shown(other)
            == {
                (items["BOARD"], LOCATION_1): 0,
                (items["KIT"], LOCATION_1): 0,
                (items["BOARD-PACK"], LOCATION_1): 0,
                (items["SCREWS-10"], LOCATION_1): 4,
            }
        )
    )
    kit = api.get("/v1/bundles/KIT", headers=merchant.auth)
    assert kit.status_code == 200 and kit.json()["available"] == {"default": 0}


def test_bad_locations_and_bundles_are_refused_with_the_field_at_fault_and_change_nothing(
    api: httpx.Client, merchant: Merchant, stack: Stack, sandbox_shopify: Callable[[], SandboxShopify]
) -> None:
    sandbox = sandbox_shopify()
    connection_id = connect_shopify(api, merchant, sandbox, "shop", [], locations=["wa", "wb"])
    for bad in ([], ["wa", "wa"], [f"w{i}" for i in range(51)], ["bad\x00name"], [""], ["x" * 201]):
        answer = api.put(f"/v1/connections/{connection_id}/locations", headers=merchant.auth, json={"locations": bad})
        assert answer.status_code == 422, (bad, answer.text)
        assert "locations" in answer.text
    assert api.get(f"/v1/connections/{connection_id}", headers=merchant.auth).json()["locations"] == ["wa", "wb"]
    other = new_merchant(api, stack, "other")
    foreign = api.put(f"/v1/connections/{connection_id}/locations", headers=other.auth, json={"locations": ["x"]})
    assert foreign.status_code == 404, foreign.text

    def bundle(sku: str, *components: tuple[str, int]) -> httpx.Response:
        body = {"sku": sku, "components": [{"sku": c, "quantity": q} for c, q in components]}
        return api.post("/v1/bundles", headers=merchant.auth, json=body)

    assert bundle("KIT", ("BOARD", 2)).status_code == 201
    assert bundle("KIT", ("BOARD", 1)).status_code == 409
    for answer in (
        bundle("BIG", ("KIT", 1)),  # a bundle inside a bundle
        bundle("BOARD", ("SCREW", 1)),  # a component cannot become a bundle
        bundle("SELF", ("SELF", 1)),
        bundle("EMPTY"),
        bundle("TWICE", ("A", 1), ("A", 2)),
        bundle("ZERO", ("A", 0)),
        bundle("HUGE", ("A", 10_001)),
        bundle("MANY", *((f"C{i}", 1) for i in range(101))),
        bundle("NUL\x00", ("A", 1)),
    ):
        assert answer.status_code == 422, answer.text
    listed = api.get("/v1/bundles", headers=merchant.auth)
    assert listed.status_code == 200, listed.text
    assert [b["sku"] for b in listed.json()] == ["KIT"]
    assert api.get("/v1/bundles/KIT", headers=other.auth).status_code == 404
    assert api.delete("/v1/bundles/NOPE", headers=merchant.auth).status_code == 404
    adjusted = api.post(
        "/v1/stock/adjustments",
        headers=merchant.auth,
        json={"sku": "KIT", "delta": 3, "reason": "found", "actor": "me"},
    )
    assert adjusted.status_code == 422, adjusted.text
    assert api.delete("/v1/bundles/KIT", headers=merchant.auth).status_code == 204
    assert api.get("/v1/bundles/KIT", headers=merchant.auth).status_code == 404


def test_bundles_import_saves_each_bundle_on_its_own_and_lists_the_refused(
    api: httpx.Client, merchant: Merchant
) -> None:
    body = {
        "bundles": [
            {"sku": "DUO", "components": [{"sku": "CUP", "quantity": 2}]},
            {"sku": "NEST", "components": [{"sku": "DUO", "quantity": 1}]},  # a bundle inside a bundle
            {"sku": "DUO", "components": [{"sku": "CUP", "quantity": 3}]},  # listed twice
            {"sku": "TRIO", "components": [{"sku": "CUP", "quantity": 3}, {"sku": "LID", "quantity": 1}]},
        ]
    }
    answer = api.post("/v1/bundles/import", headers=merchant.auth, json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["saved"] == 2
    assert [(r["index"], r["sku"]) for r in answer.json()["refused"]] == [(1, "NEST"), (2, "DUO")]
    listed = api.get("/v1/bundles", headers=merchant.auth).json()
    assert {b["sku"]: b["components"] for b in listed} == {
        "DUO": [{"sku": "CUP", "quantity": 2}],
        "TRIO": [{"sku": "CUP", "quantity": 3}, {"sku": "LID", "quantity": 1}],
    }
    too_many = {"bundles": [{"sku": f"K{i}", "components": [{"sku": "CUP", "quantity": 1}]} for i in range(1001)]}
    assert api.post("/v1/bundles/import", headers=merchant.auth, json=too_many).status_code == 422


def test_the_demo_merchant_gets_a_second_warehouse_and_a_bundle_once(
    api: httpx.Client, merchant: Merchant, stack: Any, tmp_path: Path
) -> None:
    demo = Demo(merchant.merchant_id, merchant.api_key, [], "", [])
    api.post("/v1/stock/snapshots", headers=merchant.auth, json={"items": [{"sku": "SKU-A", "on_hand": 5}]})
    # Only the base URL of the session's stack; demo.json goes to this test's own folder.
    where = cast(Stack, SimpleNamespace(base_url=stack.base_url, home=tmp_path))
    seed_warehouse_and_bundle(where, demo)
    seed_warehouse_and_bundle(where, demo)  # once: the second start changes nothing
    assert demo.warehouse_seeded and json.loads((tmp_path / "demo.json").read_text())["warehouse_seeded"]
    east = api.get("/v1/stock/SKU-B", headers=merchant.auth, params={"location": DEMO_WAREHOUSE}).json()
    assert east["on_hand"] == DEMO_WAREHOUSE_STOCK["SKU-B"]
    kit = api.get("/v1/bundles/KIT-AB", headers=merchant.auth).json()
    # default: SKU-A 5 but no SKU-B; east: SKU-A 3, SKU-B 4 make 2 kits of (1 A + 2 B).
    assert kit["available"] == {"default": 0, DEMO_WAREHOUSE: 2}
