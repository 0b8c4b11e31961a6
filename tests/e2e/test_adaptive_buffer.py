"""The adaptive buffer end to end: a slow channel gets its last units hidden earlier.

Two Shopify sandboxes carry SKU A with the same adaptive rule. C2's storefront shows an
accepted quantity only 6 s later (its display lag); C1 shows it at once. Orders arrive on
C1 as signed webhooks. The publisher measures each channel's delay by reading its pushes
back, announces it on connection.delays.v1, and from then on the rule engine hides more
units from C2 than from C1 for the same stock and the same sales rate; each push says why.

The session stack runs with a 3-sample window and a one-minute rate (tests/e2e/conftest.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx

from stocksync_embedded.demo import seed, update_demo
from stocksync_embedded.stack import Stack, free_port

from tests.e2e.channel_sandboxes import SandboxShopify
from tests.e2e.conftest import Merchant, wait_for, webhook_url
from tests.e2e.test_order_flow import connect

ITEM_C1 = "gid://shopify/InventoryItem/301"
ITEM_C2 = "gid://shopify/InventoryItem/401"
DISPLAY_LAG_S = 6.0


def health(api: httpx.Client, merchant: Merchant, connection_id: str) -> dict[str, Any]:
    answer = api.get(f"/v1/connections/{connection_id}/health", headers=merchant.auth)
    assert answer.status_code == 200, answer.text
    delay: dict[str, Any] = answer.json()["display_delay"]
    return delay


def accepted(api: httpx.Client, merchant: Merchant, connection_id: str) -> list[dict[str, Any]]:
    pushes: list[dict[str, Any]] = api.get(
        "/v1/pushes", headers=merchant.auth, params={"connection_id": connection_id, "sku": "A", "status": "accepted"}
    ).json()
    return pushes


def hidden(push: dict[str, Any]) -> int:
    found = re.match(r"adaptive buffer hid (\d+)", push["reason"] or "")
    return int(found[1]) if found else 0


def test_a_slow_channel_hides_its_last_units_earlier_than_a_fast_one(
    api: httpx.Client, merchant: Merchant, sandbox_shopify: Callable[[], SandboxShopify]
) -> None:
    c1, c2 = sandbox_shopify(), sandbox_shopify()
    assert c2.configure(display_delay_s=DISPLAY_LAG_S)["display_delay_s"] == DISPLAY_LAG_S
    c1_id = connect(api, merchant, c1, "fast", ITEM_C1, "gid://shopify/Location/1")
    c2_id = connect(api, merchant, c2, "slow", ITEM_C2, "gid://shopify/Location/2")
    assert health(api, merchant, c2_id) == {"p50_s": 120.0, "p95_s": 120.0, "samples": 0, "measured": False}
    rule = {
        "name": "adaptive buffer",
        "condition": {"op": "always"},
        "action": {"type": "adaptive", "confidence_pct": 99, "maximum": 50},
    }
    wait_for(lambda: api.post("/v1/rules", headers=merchant.auth, json=rule).status_code == 201)
    snapshot = api.post("/v1/stock/snapshots", headers=merchant.auth, json={"items": [{"sku": "A", "on_hand": 200}]})
    assert snapshot.status_code == 200, snapshot.text
    wait_for(lambda: c2.quantities(ITEM_C2)[-1:] == [200])

    # Three orders, each once C2 has shown the previous one: three measured delays.
    for sample in (1, 2, 3):
        order = c1.order(webhook_url(api, c1_id), [{"sku": "A", "quantity": 10}])
        assert order["status_code"] == 200, order
        wait_for(lambda n=sample: health(api, merchant, c2_id)["samples"] >= n, timeout=90)  # type: ignore[misc]
    slow = wait_for(lambda: (h := health(api, merchant, c2_id))["measured"] and h)
    fast = wait_for(lambda: (h := health(api, merchant, c1_id))["measured"] and h, timeout=90)
    assert slow["p95_s"] >= DISPLAY_LAG_S > fast["p95_s"]

    # The rule engine learns both delays: each re-evaluation publishes what they change.
    for connection_id in (c1_id, c2_id):
        wait_for(
            lambda c=connection_id: any(  # type: ignore[misc]
                p["causation_id"] == f"display-delay:{c}" for p in accepted(api, merchant, c)
            ),
            timeout=90,
        )

    # One more order: both channels are decided from the same stock and the same rate.
    last = c1.order(webhook_url(api, c1_id), [{"sku": "A", "quantity": 10}])
    assert last["status_code"] == 200, last

    stock = wait_for(lambda: (s := api.get("/v1/stock/A", headers=merchant.auth).json())["available"] == 160 and s)

    def decided_by_the_last_order(connection_id: str) -> dict[str, Any] | None:
        return next(
            (
                p
                for p in accepted(api, merchant, connection_id)
                if p["stock_version"] == stock["version"] and p["causation_id"].startswith("shopify:")
            ),
            None,
        )

    on_c1 = wait_for(lambda: decided_by_the_last_order(c1_id), timeout=90)
    on_c2 = wait_for(lambda: decided_by_the_last_order(c2_id), timeout=90)
    # The same 160 units: the slow channel hides more, and says why.
    assert on_c2["quantity"] < on_c1["quantity"] <= 160
    assert hidden(on_c2) > hidden(on_c1)
    assert on_c2["quantity"] == 160 - hidden(on_c2) and on_c1["quantity"] == 160 - hidden(on_c1)
    assert re.search(r"this channel shows a change after \d+ s \(p95\)", on_c2["reason"])
    print(
        f"\ndisplay delay p95: slow {slow['p95_s']:.1f} s, fast {fast['p95_s']:.1f} s; "
        f"available 160 shows {on_c2['quantity']} on the slow channel, {on_c1['quantity']} on the fast one"
    )


def test_the_demo_merchant_has_the_adaptive_buffer_on_c1_for_sku_b(api: httpx.Client, stack: Stack) -> None:
    demo = seed(stack, free_port())  # no sandbox runs: the demo's stock is not seeded
    auth = {"X-API-Key": demo.api_key}
    adaptive = api.get(f"/v1/rules/{demo.adaptive_rule_id}", headers=auth).json()
    assert (adaptive["channels"], adaptive["skus"]) == ([demo.stores[0].connection_id], ["SKU-B"])
    assert adaptive["action"]["type"] == "adaptive" and adaptive["action"]["maximum"] == 5

    # A demo.json from before the adaptive buffer gets it once.
    assert api.delete(f"/v1/rules/{demo.adaptive_rule_id}", headers=auth).status_code == 200
    demo.adaptive_rule_id = None
    assert update_demo(stack, demo, free_port())
    assert demo.adaptive_rule_id is not None
    assert not update_demo(stack, demo, free_port())
    names = sorted(r["name"] for r in api.get("/v1/rules", headers=auth).json())
    assert names == [
        "Adaptive buffer on C1 for SKU-B: hide what may sell while C1 is stale",
        "Buffer on C2: publish 0 when quantity <= 3",
    ]
