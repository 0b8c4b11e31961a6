"""Channels' sandboxes as processes, and the test merchant's connections to them.

Each sandbox runs as an operator runs it (`python -m stocksync_sandboxes <channel> ...`) on
a free port, checks requests as its channel does and records every call, which is what
the tests read. Quantities are produced straight onto channel.quantity.v1 (the rule
engine's output), so that a test controls versions exactly.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from aiokafka import AIOKafkaProducer

from stocksync_common.contracts import ChannelQuantityChanged
from stocksync_common.kafka import encode_event
from stocksync_common.topics import CHANNEL_QUANTITY
from stocksync_embedded.stack import ManagedProcess, Stack, free_port

if TYPE_CHECKING:
    from tests.e2e.conftest import Merchant

SECRET = secrets.token_hex(12)
SIGNING_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass
class SandboxShopify:
    url: str
    access_token: str
    webhook_secret: str

    def changes(self) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/_sandbox/changes", timeout=10)
        answer.raise_for_status()
        changes: list[dict[str, Any]] = answer.json()["changes"]
        return changes

    def quantities(self, inventory_item_id: str) -> list[int]:
        return [c["quantity"] for c in self.changes() if c["inventory_item_id"] == inventory_item_id]

    def order(self, webhook_url: str, line_items: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        answer = httpx.post(
            f"{self.url}/_sandbox/orders",
            json={"line_items": line_items, "webhook_url": webhook_url, **extra},
            timeout=30,
        )
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def configure(self, **config: Any) -> dict[str, Any]:
        answer = httpx.post(f"{self.url}/_sandbox/config", json=config, timeout=10)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def redeliver(self, event_id: str, webhook_url: str) -> dict[str, Any]:
        answer = httpx.post(
            f"{self.url}/_sandbox/redeliver", json={"event_id": event_id, "webhook_url": webhook_url}, timeout=30
        )
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result


class SandboxProcesses:
    """Sandbox processes started for a test or a module; `stop` ends every one of them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[ManagedProcess] = []

    def start(self, channel: str, args: list[str]) -> str:
        """`channel`'s sandbox with `args`, on a free port: its URL once it is ready."""
        port = free_port()
        name = f"sandbox-{channel}-{port}"
        self.run(
            ManagedProcess(
                name,
                [sys.executable, "-m", "stocksync_sandboxes", channel, "--port", str(port), *args],
                dict(os.environ),
                self.log_dir / f"{name}.log",
                f"http://127.0.0.1:{port}/_sandbox/health",
            )
        )
        return f"http://127.0.0.1:{port}"

    def run(self, process: ManagedProcess) -> None:
        process.start()
        self.processes.append(process)
        process.wait_ready()

    def shopify(self) -> SandboxShopify:
        """A Shopify store of its own access token and webhook secret."""
        token, secret = secrets.token_hex(12), secrets.token_hex(12)
        url = self.start("shopify", ["--access-token", token, "--webhook-secret", secret])
        return SandboxShopify(url, token, secret)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


@dataclass(frozen=True)
class ChannelCase:
    type: str
    sandbox_args: list[str]
    credentials: dict[str, Any]
    settings: dict[str, Any]
    # How many items one call carries (1: one SKU per call).
    per_call: int
    # A word of the channel's own message for a listing it does not have.
    unknown_listing_message: str
    # Whether a per-SKU transient failure leaves the other SKUs of the call accepted.
    per_sku_failures: bool = True
    # The publisher path of the push, to tell pushes from reads in the sandbox's calls.
    push_operation: str = ""
    inbound: dict[str, Any] = field(default_factory=dict)

    def listing(self, index: int, sku: str) -> dict[str, Any]:
        return {"sku": sku, "product_id": 1000 + index} if self.type == "woocommerce" else {"sku": sku}

    def sandbox_listing_id(self, index: int, sku: str) -> str:
        return str(1000 + index) if self.type == "woocommerce" else sku

    def unknown_item_label(self, index: int, sku: str) -> str:
        """How the sandbox's call record names an item it has no listing for."""
        return f"id:{1000 + index}" if self.type == "woocommerce" else sku


# Test limits are higher than the channels' own so that a 300-SKU burst stays short;
# the adapters' defaults follow the channels (docs/channels.md).
CASES = [
    ChannelCase(
        "woocommerce",
        ["--consumer-key", "ck_test", "--consumer-secret", SECRET],
        {"consumer_key": "ck_test", "consumer_secret": SECRET},
        {},
        100,
        "Invalid ID.",
        push_operation="products/batch",
    ),
    ChannelCase(
        "amazon",
        [
            "--seller-id",
            "A2SELLER",
            *("--client-id", "amzn1.application-oa2-client.test", "--client-secret", SECRET),
            *("--refresh-token", "Atzr|" + SECRET, "--requests-per-second", "60", "--burst", "20"),
        ],
        {
            "seller_id": "A2SELLER",
            "marketplace_ids": ["A1PA6795UKMFR9"],
            "client_id": "amzn1.application-oa2-client.test",
            "client_secret": SECRET,
            "refresh_token": "Atzr|" + SECRET,
        },
        {"requests_per_second": 50, "burst": 10, "batch_limit": 50},
        1,
        "does not match any listing",
        push_operation="patchListingsItem",
        inbound={"api_key": "inbound-key-" + SECRET},
    ),
    ChannelCase(
        "ebay",
        [
            *("--client-id", "app-id", "--client-secret", SECRET, "--refresh-token", "v^1.1#" + SECRET),
            *("--requests-per-second", "50", "--burst", "20"),
        ],
        {"client_id": "app-id", "client_secret": SECRET, "refresh_token": "v^1.1#" + SECRET},
        {"skus_per_call": 25},
        25,
        "is not available in the system",
        push_operation="bulk_update_price_quantity",
    ),
    ChannelCase(
        "mirakl",
        [
            *("--api-key", SECRET, "--min-interval", "2", "--processing-delay", "0.2"),
            *("--status-interval", "0.3", "--report-interval", "0.6"),
        ],
        {"api_key": SECRET},
        {"min_interval_s": 2.5, "status_poll_interval_s": 0.5, "error_report_interval_s": 1.0},
        10_000,
        "The offer does not exist",
        per_sku_failures=False,
        push_operation="STO01",
    ),
    ChannelCase(
        "walmart",
        ["--client-id", "walmart-client", "--client-secret", SECRET, "--requests-per-second", "60", "--burst", "20"],
        {"client_id": "walmart-client", "client_secret": SECRET},
        {"requests_per_second": 50, "burst": 10, "batch_limit": 50},
        1,
        "could not be found",
        push_operation="inventory",
    ),
    ChannelCase(
        "generic",
        ["--signing-secret", SIGNING_SECRET],
        {"signing_secret": SIGNING_SECRET},
        {},
        100,
        "unknown SKU",
        per_sku_failures=False,
        push_operation="webhook",
    ),
]


def case_of(channel_type: str) -> ChannelCase:
    return next(case for case in CASES if case.type == channel_type)


@dataclass
class Sandbox:
    url: str
    case: ChannelCase

    def get(self, path: str) -> Any:
        answer = httpx.get(f"{self.url}/_sandbox/{path}", timeout=10)
        answer.raise_for_status()
        return answer.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        answer = httpx.post(f"{self.url}/_sandbox/{path}", json=body, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def quantities(self) -> dict[str, int]:
        return {listing["sku"]: listing["quantity"] for listing in self.get("listings")["listings"]}

    def histories(self) -> dict[str, list[int]]:
        return {listing["sku"]: listing["history"] for listing in self.get("listings")["listings"]}

    def pushes(self) -> list[dict[str, Any]]:
        """The calls that pushed quantities (not reads, not token requests)."""
        return [call for call in self.get("calls")["calls"] if call["operation"] == self.case.push_operation]


class ChannelSandboxes:
    """A merchant's channels: each a channel case's sandbox process and the merchant's connection to it."""

    def __init__(self, api: httpx.Client, merchant: Merchant, stack: Stack, processes: SandboxProcesses) -> None:
        self.api = api
        self.merchant = merchant
        self.stack = stack
        self.processes = processes

    def start(self, case: ChannelCase, skus: Sequence[str] = (), leave_out: frozenset[str] = frozenset()) -> Sandbox:
        """`case`'s sandbox, holding a listing at 0 for each of `skus` but those left out."""
        sandbox = Sandbox(self.processes.start(case.type, case.sandbox_args), case)
        if skus:
            listings = [
                {"sku": sku, "listing_id": case.sandbox_listing_id(i, sku), "quantity": 0}
                for i, sku in enumerate(skus)
                if sku not in leave_out
            ]
            sandbox.post("listings", {"listings": listings})
        return sandbox

    def connect(
        self,
        sandbox: Sandbox,
        skus: list[str],
        settings: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
    ) -> str:
        """The merchant's connection to `sandbox`, listing `skus`: its id."""
        case = sandbox.case
        base_url = f"{sandbox.url}/stocksync/quantities" if case.type == "generic" else sandbox.url
        given = {**case.credentials, **(credentials or {})}
        if case.type == "amazon":
            # Login with Amazon is its own host; the sandbox serves it beside the SP-API.
            given["token_url"] = f"{sandbox.url}/auth/o2/token"
        answer = self.api.post(
            "/v1/connections",
            headers=self.merchant.auth,
            json={
                "type": case.type,
                "name": f"{case.type} under test",
                "base_url": base_url,
                "credentials": given,
                "webhook_secret": "inbound-" + SECRET,
                "settings": {**case.settings, **(settings or {})},
                "inbound": case.inbound,
                "listings": [case.listing(i, sku) for i, sku in enumerate(skus)],
            },
        )
        assert answer.status_code == 201, answer.text
        connection_id: str = answer.json()["connection_id"]
        return connection_id

    def open(self, case: ChannelCase, skus: list[str]) -> tuple[Sandbox, str]:
        """`case`'s sandbox listing `skus`, and the merchant's connection listing them too."""
        sandbox = self.start(case, skus)
        return sandbox, self.connect(sandbox, skus)

    def produce(self, connection_id: str, changes: list[tuple[str, int, int]]) -> None:
        """Put (sku, version, quantity) changes on channel.quantity.v1, in order."""

        async def send() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.stack.kafka_bootstrap_servers, acks="all", linger_ms=5)
            await producer.start()
            try:
                for sku, version, quantity in changes:
                    event = ChannelQuantityChanged(
                        merchant_id=uuid.UUID(self.merchant.merchant_id),
                        connection_id=uuid.UUID(connection_id),
                        sku=sku,
                        quantity=quantity,
                        version=version,
                        stock_version=version,
                        available=quantity,
                        causation_id=f"test:{sku}:{version}",
                    )
                    await producer.send(CHANNEL_QUANTITY.name, encode_event(event), key=CHANNEL_QUANTITY.key_of(event))
                await producer.flush()
            finally:
                await producer.stop()

        asyncio.run(send())

    def pushes(self, connection_id: str, **filters: Any) -> list[dict[str, Any]]:
        """The connection's push history (`GET /v1/pushes`), every page."""
        found: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.api.get(
                "/v1/pushes",
                headers=self.merchant.auth,
                params={"connection_id": connection_id, "after": after, "limit": 1000, **filters},
            ).json()
            found += page
            if len(page) < 1000:
                return found
            after = page[-1]["push_id"]
