"""The demo merchant of the embedded default: two Shopify stores, three SKUs, the seed's rule.

Seeded once; its ids and keys are kept in `<home>/demo.json`, so a second start reuses
them (the data lives in the embedded PostgreSQL under `<home>/pgdata`).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from stocksync_embedded.stack import ManagedProcess, Stack

DEMO_SKUS = {"SKU-A": 5, "SKU-B": 12, "SKU-C": 2}


@dataclass
class DemoStore:
    name: str
    port: int
    shop_domain: str
    access_token: str
    webhook_secret: str
    item_base: int
    location_id: int
    connection_id: str = ""


@dataclass
class Demo:
    merchant_id: str
    api_key: str
    stores: list[DemoStore]
    rule_id: str


def _new_stores(first_port: int) -> list[DemoStore]:
    return [
        DemoStore("C1", first_port, "demo-c1.myshopify.com", secrets.token_hex(16), secrets.token_hex(16), 1000, 11),
        DemoStore("C2", first_port + 1, "demo-c2.myshopify.com", secrets.token_hex(16), secrets.token_hex(16), 2000, 22),
    ]


def seed(stack: Stack, first_sandbox_port: int) -> Demo:
    client = httpx.Client(base_url=stack.base_url, timeout=30)
    merchant = client.post(
        "/v1/merchants", json={"name": "Demo merchant"}, headers={"Authorization": f"Bearer {stack.admin_token}"}
    )
    merchant.raise_for_status()
    api_key = merchant.json()["api_key"]
    auth = {"X-API-Key": api_key}
    stores = _new_stores(first_sandbox_port)
    for store in stores:
        answer = client.post("/v1/connections", headers=auth, json={
            "type": "shopify", "name": f"Shopify {store.name}", "base_url": f"http://127.0.0.1:{store.port}",
            "credentials": {"access_token": store.access_token}, "webhook_secret": store.webhook_secret,
            "listings": [
                {"sku": sku, "inventory_item_id": f"gid://shopify/InventoryItem/{store.item_base + i}",
                 "location_id": f"gid://shopify/Location/{store.location_id}"}
                for i, sku in enumerate(DEMO_SKUS)
            ],
        })
        answer.raise_for_status()
        store.connection_id = answer.json()["connection_id"]
    client.post("/v1/stock/snapshots", headers=auth, json={
        "items": [{"sku": sku, "on_hand": on_hand} for sku, on_hand in DEMO_SKUS.items()]
    }).raise_for_status()
    rule = client.post("/v1/rules", headers=auth, json={
        "name": "Buffer on C2: publish 0 when quantity <= 3",
        "channels": [stores[1].connection_id],
        "condition": {"op": "<=", "value": 3},
        "action": {"type": "set", "value": 0},
    })
    rule.raise_for_status()
    return Demo(merchant.json()["merchant_id"], api_key, stores, rule.json()["rule_id"])


def load_or_seed(stack: Stack, first_sandbox_port: int) -> Demo:
    path = stack.home / "demo.json"
    if path.exists():
        raw = json.loads(path.read_text())
        return Demo(raw["merchant_id"], raw["api_key"], [DemoStore(**s) for s in raw["stores"]], raw["rule_id"])
    demo = seed(stack, first_sandbox_port)
    path.write_text(json.dumps(asdict(demo), indent=2))
    path.chmod(0o600)
    return demo


def sandbox_process(stack: Stack, store: DemoStore, log_dir: Path) -> ManagedProcess:
    return ManagedProcess(
        f"sandbox-shopify-{store.name}",
        [sys.executable, "-m", "stocksync_sandboxes", "shopify", "--port", str(store.port),
         "--shop-domain", store.shop_domain, "--access-token", store.access_token,
         "--webhook-secret", store.webhook_secret,
         "--webhook-url", f"{stack.base_url}/webhooks/shopify/{store.connection_id}"],
        dict(os.environ),
        log_dir / f"sandbox-shopify-{store.name}.log",
        f"http://127.0.0.1:{store.port}/_sandbox/health",
    )


def seed_sandbox_inventory(store: DemoStore) -> None:
    httpx.post(f"http://127.0.0.1:{store.port}/_sandbox/inventory-items", json={"items": [
        {"inventory_item_id": store.item_base + i, "location_id": store.location_id, "sku": sku, "available": qty}
        for i, (sku, qty) in enumerate(DEMO_SKUS.items())
    ]}, timeout=10).raise_for_status()
