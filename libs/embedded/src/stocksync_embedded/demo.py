"""The demo merchant of the embedded default: two Shopify stores, one connection of every
other channel type (WooCommerce, Amazon, eBay, Mirakl, Walmart, generic webhook), each
against its sandbox, three SKUs, the seed's rule (on C2), an adaptive buffer (on C1, for
SKU-B); a second warehouse (`east`, which the WooCommerce channel also sells from) and a
bundle (KIT-AB: one SKU-A and two SKU-B).

Every sandbox both receives quantities and sends signed orders (`POST /_sandbox/orders`)
with the secret its connection was created with, so an order placed on any of them
reaches Stocksync and lowers the quantity on every other channel.

Seeded once; its ids and keys are kept in `<home>/demo.json`, so a second start reuses
them (the data lives in the embedded PostgreSQL under `<home>/pgdata`). A demo.json of an
earlier version is brought up to date once (`update_demo`).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from stocksync_embedded.stack import ManagedProcess, Stack

DEMO_SKUS = {"SKU-A": 5, "SKU-B": 12, "SKU-C": 2}
# The second warehouse and its stock; the channels selling from it besides `default`.
DEMO_WAREHOUSE = "east"
DEMO_WAREHOUSE_STOCK = {"SKU-A": 3, "SKU-B": 4}
DEMO_WAREHOUSE_CHANNELS = ("woocommerce",)
DEMO_BUNDLES = {"KIT-AB": {"SKU-A": 1, "SKU-B": 2}}
# What every demo channel lists: the SKUs with stock and the bundles.
DEMO_LISTED = [*DEMO_SKUS, *DEMO_BUNDLES]


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
    """A sandbox marketplace of a non-Shopify channel type and the demo's connection to it.

    `secret` is what Stocksync calls the channel's API with (the generic receiver checks
    it as its signing secret); for Amazon, eBay and Walmart it is the client secret from
    which Stocksync obtains short-lived access tokens at the sandbox's token endpoint, as
    from the real marketplace (`credentials_version` 1; a demo.json of version 0 held a
    fixed access token, and `update_demo` replaces those connections). `inbound_secret`
    is what the channel's orders are signed with (WooCommerce, Walmart, generic: the
    connection's `webhook_secret`) or carry (Amazon: `inbound.api_key`). eBay signs with
    the sandbox's own key, which order-ingest fetches from the connection's `base_url`
    with an application token; Mirakl's orders are polled with the API key. A demo.json
    written before orders reached every channel has
    no `inbound_secret`: `update_demo` gives the connection one.
    """

    type: str
    port: int
    secret: str
    connection_id: str = ""
    inbound_secret: str = ""
    credentials_version: int = 0

    @classmethod
    def new(cls, channel_type: str, port: int) -> DemoChannel:
        secret = new_signing_secret() if channel_type == "generic" else secrets.token_hex(16)
        return cls(
            channel_type,
            port,
            secret,
            inbound_secret=new_inbound_secret(channel_type),
            credentials_version=CREDENTIALS_VERSION,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sandbox_args(self) -> list[str]:
        args = {
            "woocommerce": ["--consumer-key", "ck_demo", "--consumer-secret", self.secret],
            "amazon": [
                *("--seller-id", AMAZON_SELLER_ID, "--client-id", DEMO_CLIENT_ID),
                *("--client-secret", self.secret, "--refresh-token", DEMO_REFRESH_TOKEN),
            ],
            "ebay": [
                "--client-id",
                DEMO_CLIENT_ID,
                "--client-secret",
                self.secret,
                "--refresh-token",
                DEMO_REFRESH_TOKEN,
            ],
            # The demo imports every 10 s so changes show quickly; Mirakl allows once a minute.
            "mirakl": [
                *("--api-key", self.secret, "--min-interval", str(DEMO_MIRAKL_INTERVAL_S)),
                *("--status-interval", str(DEMO_MIRAKL_STATUS_INTERVAL_S)),
            ],
            "walmart": ["--client-id", DEMO_CLIENT_ID, "--client-secret", self.secret],
            "generic": ["--signing-secret", self.secret],
        }[self.type]
        if self.type in INBOUND_OPTIONS and self.inbound_secret:
            args += [INBOUND_OPTIONS[self.type], self.inbound_secret]
        return args

    def connection(self, skus: Iterable[str] = DEMO_LISTED) -> dict[str, Any]:
        by_type: dict[str, dict[str, Any]] = {
            "woocommerce": {"consumer_key": "ck_demo", "consumer_secret": self.secret},
            "amazon": {
                "seller_id": AMAZON_SELLER_ID,
                "marketplace_ids": ["A1PA6795UKMFR9"],
                "client_id": DEMO_CLIENT_ID,
                "client_secret": self.secret,
                "refresh_token": DEMO_REFRESH_TOKEN,
                "token_url": f"{self.url}/auth/o2/token",
            },
            "ebay": {"client_id": DEMO_CLIENT_ID, "client_secret": self.secret, "refresh_token": DEMO_REFRESH_TOKEN},
            "mirakl": {"api_key": self.secret},
            "walmart": {"client_id": DEMO_CLIENT_ID, "client_secret": self.secret},
            "generic": {"signing_secret": self.secret},
        }
        body: dict[str, Any] = {
            "type": self.type,
            "name": f"{self.type} sandbox",
            "base_url": f"{self.url}/stocksync/quantities" if self.type == "generic" else self.url,
            "credentials": by_type[self.type],
            "listings": [
                {"sku": sku, "product_id": 500 + i} if self.type == "woocommerce" else {"sku": sku}
                for i, sku in enumerate(skus)
            ],
            "settings": {
                "min_interval_s": DEMO_MIRAKL_INTERVAL_S * 1.1,
                "status_poll_interval_s": DEMO_MIRAKL_STATUS_INTERVAL_S * 1.1,
            }
            if self.type == "mirakl"
            else {},
        }
        if self.type in DEMO_WAREHOUSE_CHANNELS:
            body["locations"] = ["default", DEMO_WAREHOUSE]
        if self.type == "amazon":
            body["inbound"] = {"api_key": self.inbound_secret}
        elif self.type in INBOUND_OPTIONS:
            body["webhook_secret"] = self.inbound_secret
        return body

    def sandbox_listings(self, skus: Iterable[str] = DEMO_LISTED) -> list[dict[str, Any]]:
        return [
            {"sku": sku, "quantity": 0, "listing_id": str(500 + i) if self.type == "woocommerce" else sku}
            for i, sku in enumerate(skus)
        ]

    def order(self, stocksync_url: str, sku: str, quantity: int) -> dict[str, Any]:
        """The body of the sandbox's `POST /_sandbox/orders` for one line (Mirakl: OR11 lists it)."""
        lines = [{"sku": sku, "quantity": quantity}]
        if self.type == "mirakl":
            return {"lines": lines}
        return {"webhook_url": f"{stocksync_url}/webhooks/{self.type}/{self.connection_id}", "lines": lines}

    def order_curl(self, stocksync_url: str, sku: str = "SKU-A", quantity: int = 1) -> str:
        body = json.dumps(self.order(stocksync_url, sku, quantity), separators=(",", ":"))
        return f"curl -s -X POST {self.url}/_sandbox/orders -H 'content-type: application/json' -d '{body}'"


AMAZON_SELLER_ID = "A2DEMOSELLER"
DEMO_CLIENT_ID = "stocksync-demo"
DEMO_REFRESH_TOKEN = "demo-refresh-token"
# 1: Amazon, eBay and Walmart connections hold client credentials and a refresh token.
CREDENTIALS_VERSION = 1
TOKEN_CHANNEL_TYPES = ("amazon", "ebay", "walmart")
DEMO_MIRAKL_INTERVAL_S = 10
# The demo's Mirakl answers an import's status every 2 s; Mirakl allows once every 15 s.
DEMO_MIRAKL_STATUS_INTERVAL_S = 2
OTHER_CHANNEL_TYPES = ("woocommerce", "amazon", "ebay", "mirakl", "walmart", "generic")
# The sandbox option that takes the secret its orders are signed with (or, for Amazon,
# the API key they carry); eBay and Mirakl need none.
INBOUND_OPTIONS = {
    "woocommerce": "--webhook-secret",
    "walmart": "--webhook-secret",
    "amazon": "--inbound-api-key",
    "generic": "--order-signing-secret",
}


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and the base64 of the key."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def new_inbound_secret(channel_type: str) -> str:
    if channel_type not in INBOUND_OPTIONS:
        return ""
    return new_signing_secret() if channel_type == "generic" else secrets.token_hex(16)


def _new_channels(first_port: int) -> list[DemoChannel]:
    return [DemoChannel.new(channel_type, first_port + i) for i, channel_type in enumerate(OTHER_CHANNEL_TYPES)]


@dataclass
class Demo:
    merchant_id: str
    api_key: str
    stores: list[DemoStore]
    rule_id: str
    channels: list[DemoChannel] = field(default_factory=list)
    # The stock is seeded once the sandboxes run (`seed_stock`): its first quantities
    # pushed to channels not yet listening would fail until the connections pause.
    stock_seeded: bool = True
    # The second warehouse and the bundle (`seed_warehouse_and_bundle`); a demo.json
    # written before them gets them at its next start (its channels do not list the bundle).
    warehouse_seeded: bool = False
    # The adaptive buffer on C1 for SKU-B (docs/rules.md); None in a demo.json from before it.
    adaptive_rule_id: str | None = None


# The adaptive buffer as the demo shows it: on C1, for SKU-B, hide the units that may sell
# while C1 shows a change, at 95% confidence, at most 5 units. SKU-A keeps the seed's
# workflow (C2's "0 when <= 3", every other channel the plain available quantity).
ADAPTIVE_RULE = {
    "name": "Adaptive buffer on C1 for SKU-B: hide what may sell while C1 is stale",
    "skus": ["SKU-B"],
    "condition": {"op": "always"},
    "action": {"type": "adaptive", "confidence_pct": 95, "minimum": 0, "maximum": 5},
}


def _create_adaptive_rule(client: httpx.Client, auth: dict[str, str], connection_id: str) -> str:
    answer = _create_rule(client, auth, {**ADAPTIVE_RULE, "channels": [connection_id]})
    rule_id: str = answer.json()["rule_id"]
    return rule_id


def _new_stores(first_port: int) -> list[DemoStore]:
    return [
        DemoStore("C1", first_port, "demo-c1.myshopify.com", secrets.token_hex(16), secrets.token_hex(16), 1000, 11),
        DemoStore(
            "C2", first_port + 1, "demo-c2.myshopify.com", secrets.token_hex(16), secrets.token_hex(16), 2000, 22
        ),
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
        answer = client.post(
            "/v1/connections",
            headers=auth,
            json={
                "type": "shopify",
                "name": f"Shopify {store.name}",
                "base_url": f"http://127.0.0.1:{store.port}",
                "credentials": {"access_token": store.access_token},
                "webhook_secret": store.webhook_secret,
                "listings": [
                    {
                        "sku": sku,
                        "inventory_item_id": f"gid://shopify/InventoryItem/{store.item_base + i}",
                        "location_id": f"gid://shopify/Location/{store.location_id}",
                    }
                    for i, sku in enumerate(DEMO_LISTED)
                ],
            },
        )
        answer.raise_for_status()
        store.connection_id = answer.json()["connection_id"]
    channels = _new_channels(first_sandbox_port + len(stores))
    for channel in channels:
        channel.connection_id = _create_connection(client, auth, channel)
    rule = _create_rule(
        client,
        auth,
        {
            "name": "Buffer on C2: publish 0 when quantity <= 3",
            "channels": [stores[1].connection_id],
            "condition": {"op": "<=", "value": 3},
            "action": {"type": "set", "value": 0},
        },
    )
    adaptive_rule_id = _create_adaptive_rule(client, auth, stores[0].connection_id)
    return Demo(
        merchant.json()["merchant_id"],
        api_key,
        stores,
        rule.json()["rule_id"],
        channels,
        stock_seeded=False,
        adaptive_rule_id=adaptive_rule_id,
    )


def resume_paused_connections(stack: Stack, demo: Demo) -> None:
    """Resume the demo connections that paused themselves (calls failing in a row while
    their sandbox was down, as after a stop) now that the sandboxes run again; a pause
    the merchant asked for (no `resume_at`) stays."""
    auth = {"X-API-Key": demo.api_key}
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        for connection_id in [s.connection_id for s in demo.stores] + [c.connection_id for c in demo.channels]:
            connection = client.get(f"/v1/connections/{connection_id}", headers=auth)
            connection.raise_for_status()
            if connection.json()["paused"] and connection.json()["resume_at"] is not None:
                client.post(f"/v1/connections/{connection_id}/resume", headers=auth).raise_for_status()


def seed_stock(stack: Stack, demo: Demo) -> None:
    """The demo's stock, once: its quantities go to every sandbox, which must be running."""
    if demo.stock_seeded:
        return
    httpx.post(
        f"{stack.base_url}/v1/stock/snapshots",
        headers={"X-API-Key": demo.api_key},
        json={"items": [{"sku": sku, "on_hand": on_hand} for sku, on_hand in DEMO_SKUS.items()]},
        timeout=30,
    ).raise_for_status()
    demo.stock_seeded = True
    save(stack, demo)


def _create_rule(client: httpx.Client, auth: dict[str, str], rule: dict[str, Any]) -> httpx.Response:
    """The rule engine learns of a new connection from connections.v1 and waits up to 5 s
    for one made just now (rule_changes.waits_for_new_channels). On the stack's very first
    start its consumers may still be joining their group for longer than that: then it
    answers 422 on `channels`, and the seed asks again."""
    ask = Retrying(
        retry=retry_if_result(_channels_not_known_yet),
        stop=stop_after_delay(60),
        wait=wait_fixed(0.2),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    answer: httpx.Response = ask(client.post, "/v1/rules", headers=auth, json=rule)
    answer.raise_for_status()
    return answer


def _channels_not_known_yet(answer: httpx.Response) -> bool:
    return answer.status_code == 422 and answer.json().get("field") == "body.channels"


def seed_warehouse_and_bundle(stack: Stack, demo: Demo) -> None:
    """The second warehouse's stock, the channels selling from it and the bundle, once."""
    if demo.warehouse_seeded:
        return
    auth = {"X-API-Key": demo.api_key}
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        for sku, components in DEMO_BUNDLES.items():
            client.put(
                f"/v1/bundles/{sku}",
                headers=auth,
                json={"components": [{"sku": c, "quantity": q} for c, q in components.items()]},
            ).raise_for_status()
        client.post(
            "/v1/stock/snapshots",
            headers=auth,
            json={
                "items": [
                    {"sku": sku, "on_hand": on_hand, "location": DEMO_WAREHOUSE}
                    for sku, on_hand in DEMO_WAREHOUSE_STOCK.items()
                ]
            },
        ).raise_for_status()
        for channel in demo.channels:
            if channel.type in DEMO_WAREHOUSE_CHANNELS:
                client.put(
                    f"/v1/connections/{channel.connection_id}/locations",
                    headers=auth,
                    json={"locations": ["default", DEMO_WAREHOUSE]},
                ).raise_for_status()
    demo.warehouse_seeded = True
    save(stack, demo)


def _create_connection(client: httpx.Client, auth: dict[str, str], channel: DemoChannel) -> str:
    answer = client.post("/v1/connections", headers=auth, json=channel.connection())
    answer.raise_for_status()
    connection_id: str = answer.json()["connection_id"]
    return connection_id


def update_demo(stack: Stack, demo: Demo, first_sandbox_port: int) -> bool:
    """Bring a demo.json of an earlier version up to date; True if anything changed.

    Before the other channel types there were no channels: they are created. Before
    orders came from every sandbox, the connections' inbound secrets were random and not
    kept: WooCommerce, Walmart and generic get a new webhook secret (rotated in, the old
    one retired); Amazon's `inbound.api_key` is set at creation only, so a new Amazon
    connection takes the place of the old one, which is paused. Before access tokens were
    refreshed, Amazon, eBay and Walmart connections held a fixed token: each is replaced
    the same way by one with client credentials. Before the adaptive buffer, C1 had no
    rule: it gets the demo's adaptive rule.
    """
    auth = {"X-API-Key": demo.api_key}
    changed = False
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        if not demo.channels:
            demo.channels = _new_channels(first_sandbox_port + len(demo.stores))
            for channel in demo.channels:
                channel.connection_id = _create_connection(client, auth, channel)
            changed = True
        for channel in demo.channels:
            if channel.inbound_secret or channel.type not in INBOUND_OPTIONS:
                continue
            channel.inbound_secret = new_inbound_secret(channel.type)
            if channel.type == "amazon":
                client.post(
                    f"/v1/connections/{channel.connection_id}/pause",
                    headers=auth,
                    json={"reason": "replaced by a demo connection with a known inbound API key"},
                ).raise_for_status()
                channel.connection_id = _create_connection(client, auth, channel)
            else:
                secrets_url = f"/v1/connections/{channel.connection_id}/webhook-secrets"
                client.post(secrets_url, headers=auth, json={"secret": channel.inbound_secret}).raise_for_status()
                client.delete(f"{secrets_url}/previous", headers=auth).raise_for_status()
            changed = True
        for channel in demo.channels:
            if channel.credentials_version >= CREDENTIALS_VERSION or channel.type not in TOKEN_CHANNEL_TYPES:
                continue
            # Credentials are set at creation only: a new connection replaces the old one.
            client.post(
                f"/v1/connections/{channel.connection_id}/pause",
                headers=auth,
                json={"reason": "replaced by a demo connection with refreshable credentials"},
            ).raise_for_status()
            channel.credentials_version = CREDENTIALS_VERSION
            channel.connection_id = _create_connection(client, auth, channel)
            changed = True
        if demo.adaptive_rule_id is None:
            demo.adaptive_rule_id = _create_adaptive_rule(client, auth, demo.stores[0].connection_id)
            changed = True
    return changed


def load_or_seed(stack: Stack, first_sandbox_port: int) -> Demo:
    path = stack.home / "demo.json"
    if path.exists():
        raw = json.loads(path.read_text())
        demo = Demo(
            raw["merchant_id"],
            raw["api_key"],
            [DemoStore(**s) for s in raw["stores"]],
            raw["rule_id"],
            [DemoChannel(**c) for c in raw.get("channels", [])],
            raw.get("stock_seeded", True),
            raw.get("warehouse_seeded", False),
            raw.get("adaptive_rule_id"),
        )
        if not update_demo(stack, demo, first_sandbox_port):
            return demo
    else:
        demo = seed(stack, first_sandbox_port)
    save(stack, demo)
    return demo


def save(stack: Stack, demo: Demo) -> None:
    path = stack.home / "demo.json"
    path.write_text(json.dumps(asdict(demo), indent=2))
    path.chmod(0o600)


def sandbox_process(stack: Stack, store: DemoStore, log_dir: Path) -> ManagedProcess:
    return ManagedProcess(
        f"sandbox-shopify-{store.name}",
        [
            sys.executable,
            "-m",
            "stocksync_sandboxes",
            "shopify",
            "--port",
            str(store.port),
            "--shop-domain",
            store.shop_domain,
            "--access-token",
            store.access_token,
            "--webhook-secret",
            store.webhook_secret,
            "--webhook-url",
            f"{stack.base_url}/webhooks/shopify/{store.connection_id}",
        ],
        dict(os.environ),
        log_dir / f"sandbox-shopify-{store.name}.log",
        f"http://127.0.0.1:{store.port}/_sandbox/health",
    )


def seed_sandbox_inventory(store: DemoStore) -> None:
    httpx.post(
        f"http://127.0.0.1:{store.port}/_sandbox/inventory-items",
        json={
            "items": [
                {
                    "inventory_item_id": store.item_base + i,
                    "location_id": store.location_id,
                    "sku": sku,
                    "available": DEMO_SKUS.get(sku, 0),
                }
                for i, sku in enumerate(DEMO_LISTED)
            ]
        },
        timeout=10,
    ).raise_for_status()


def channel_sandbox_process(channel: DemoChannel, log_dir: Path) -> ManagedProcess:
    return ManagedProcess(
        f"sandbox-{channel.type}",
        [
            sys.executable,
            "-m",
            "stocksync_sandboxes",
            channel.type,
            "--port",
            str(channel.port),
            *channel.sandbox_args(),
        ],
        dict(os.environ),
        log_dir / f"sandbox-{channel.type}.log",
        f"{channel.url}/_sandbox/health",
    )


def seed_channel_sandbox(channel: DemoChannel) -> None:
    httpx.post(
        f"{channel.url}/_sandbox/listings", json={"listings": channel.sandbox_listings()}, timeout=10
    ).raise_for_status()
