"""The demo merchant of the embedded default: two Shopify stores, one connection of every
other channel type (WooCommerce, Amazon, eBay, Mirakl, Walmart, generic webhook), each
against its sandbox, three SKUs, the seed's rule.

Seeded once; its ids and keys are kept in `<home>/demo.json`, so a second start reuses
them (the data lives in the embedded PostgreSQL under `<home>/pgdata`).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
class DemoChannel:
    """A sandbox marketplace of a non-Shopify channel type and the demo's connection to it."""

    type: str
    port: int
    secret: str
    connection_id: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sandbox_args(self) -> list[str]:
        return {
            "woocommerce": ["--consumer-key", "ck_demo", "--consumer-secret", self.secret],
            "amazon": ["--seller-id", AMAZON_SELLER_ID, "--access-token", self.secret],
            "ebay": ["--access-token", self.secret],
            # The demo imports every 10 s so changes show quickly; Mirakl allows once a minute.
            "mirakl": ["--api-key", self.secret, "--min-interval", str(DEMO_MIRAKL_INTERVAL_S)],
            "walmart": ["--access-token", self.secret],
            "generic": ["--signing-secret", self.secret],
        }[self.type]

    def connection(self) -> dict[str, Any]:
        by_type: dict[str, dict[str, Any]] = {
            "woocommerce": {"consumer_key": "ck_demo", "consumer_secret": self.secret},
            "amazon": {"seller_id": AMAZON_SELLER_ID, "marketplace_ids": ["A1PA6795UKMFR9"],
                       "access_token": self.secret},
            "ebay": {"access_token": self.secret},
            "mirakl": {"api_key": self.secret},
            "walmart": {"access_token": self.secret},
            "generic": {"signing_secret": self.secret},
        }
        credentials = by_type[self.type]
        listings = [{"sku": sku, "product_id": 500 + i} if self.type == "woocommerce" else {"sku": sku}
                    for i, sku in enumerate(DEMO_SKUS)]
        body: dict[str, Any] = {
            "type": self.type, "name": f"{self.type} sandbox",
            "base_url": f"{self.url}/stocksync/quantities" if self.type == "generic" else self.url,
            "credentials": credentials, "listings": listings,
            "webhook_secret": secrets.token_hex(16),
            "settings": {"min_interval_s": DEMO_MIRAKL_INTERVAL_S} if self.type == "mirakl" else {},
        }
        if self.type == "amazon":
            body["inbound"] = {"api_key": secrets.token_hex(16)}
        return body

    def sandbox_listings(self) -> list[dict[str, Any]]:
        return [{"sku": sku, "quantity": 0, "listing_id": str(500 + i) if self.type == "woocommerce" else sku}
                for i, sku in enumerate(DEMO_SKUS)]


AMAZON_SELLER_ID = "A2DEMOSELLER"
DEMO_MIRAKL_INTERVAL_S = 10
OTHER_CHANNEL_TYPES = ("woocommerce", "amazon", "ebay", "mirakl", "walmart", "generic")


def _new_channels(first_port: int) -> list[DemoChannel]:
    channels = []
    for offset, channel_type in enumerate(OTHER_CHANNEL_TYPES):
        secret = ("whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()) if channel_type == "generic" \
            else secrets.token_hex(16)
        channels.append(DemoChannel(channel_type, first_port + offset, secret))
    return channels


@dataclass
class Demo:
    merchant_id: str
    api_key: str
    stores: list[DemoStore]
    rule_id: str
    channels: list[DemoChannel] = field(default_factory=list)


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
    channels = _new_channels(first_sandbox_port + len(stores))
    for channel in channels:
        answer = client.post("/v1/connections", headers=auth, json=channel.connection())
        answer.raise_for_status()
        channel.connection_id = answer.json()["connection_id"]
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
    return Demo(merchant.json()["merchant_id"], api_key, stores, rule.json()["rule_id"], channels)


def load_or_seed(stack: Stack, first_sandbox_port: int) -> Demo:
    path = stack.home / "demo.json"
    if path.exists():
        raw = json.loads(path.read_text())
        return Demo(raw["merchant_id"], raw["api_key"], [DemoStore(**s) for s in raw["stores"]], raw["rule_id"],
                    [DemoChannel(**c) for c in raw.get("channels", [])])
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


def channel_sandbox_process(channel: DemoChannel, log_dir: Path) -> ManagedProcess:
    return ManagedProcess(
        f"sandbox-{channel.type}",
        [sys.executable, "-m", "stocksync_sandboxes", channel.type, "--port", str(channel.port),
         *channel.sandbox_args()],
        dict(os.environ),
        log_dir / f"sandbox-{channel.type}.log",
        f"{channel.url}/_sandbox/health",
    )


def seed_channel_sandbox(channel: DemoChannel) -> None:
    httpx.post(f"{channel.url}/_sandbox/listings", json={"listings": channel.sandbox_listings()},
               timeout=10).raise_for_status()
