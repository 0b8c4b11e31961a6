"""What a benchmark run drives: Stocksync itself, or the bare floor pipeline.

Each target prepares a fresh scenario (Stocksync: a new merchant with its own sandbox
Shopify stores, connections for every SKU, a buffer rule and a big snapshot), takes the
load generator's orders, waits for the pipeline to drain and returns per-order
windows plus what it checked.
"""

from __future__ import annotations

import itertools
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import OrderResult
from stocksync_embedded.stack import SERVICES, ManagedProcess, Stack, free_port

from rule_engine.domain.rules import Action, Condition, Rule, channel_quantity

REPO = Path(__file__).resolve().parent.parent
SHOPIFY_PLUS_RESTORE_RATE = 1000.0  # points per second
SHOPIFY_PLUS_BUCKET_SIZE = 10000.0


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def accepted(orders: list[OrderResult]) -> list[OrderResult]:
    """Orders the receiver holds. Every order has its own event id, so "duplicate" can only
    answer a resend whose first attempt was applied (see KeepAlivePool.send)."""
    return [
        o
        for o in orders
        if o.status_code is not None and 200 <= o.status_code < 300 and o.outcome in ("accepted", "stored", "duplicate")
    ]


def item_number(gid: str | int) -> int:
    return int(str(gid).rsplit("/", 1)[-1])


def published_out_of_order(series: dict[str, dict[str, list[tuple[float, int]]]]) -> list[dict[str, Any]]:
    """Quantities a channel received after a newer one, per channel and SKU, in the order received.

    In a bench run stock only falls (orders, no restock) and the rule ("0 when <= 3") never
    raises a lower quantity, so every quantity a channel receives must be at or below the
    one before it: a rise means an older quantity overtook a newer one on its way (two
    instances publishing, a resend after a newer push).
    """
    found = []
    for channel, per_sku in series.items():
        for sku, received in per_sku.items():
            for (_, before), (at, quantity) in itertools.pairwise(received):
                if quantity > before:
                    found.append(
                        {"channel": channel, "sku": sku, "received_at": at, "quantity": quantity, "after": before}
                    )
    return found


@dataclass
class SandboxChannel:
    """A sandbox Shopify store that a bench run or a fault run connects, and what they read of it.

    Its SKU number `index` is the inventory item `item_base + index`.
    """

    name: str
    url: str
    access_token: str
    webhook_secret: str
    process: ManagedProcess
    item_base: int
    connection_id: str = ""

    @classmethod
    def new(cls, stack: Stack, name: str, item_base: int, *options: str) -> SandboxChannel:
        """A store on a free port with fresh credentials, its process not started yet;
        `options` add to its command line."""
        port = free_port()
        token, secret = secrets.token_hex(12), secrets.token_hex(12)
        process = ManagedProcess(
            f"sandbox-{name}-{port}",
            [
                sys.executable,
                "-m",
                "stocksync_sandboxes",
                "shopify",
                "--port",
                str(port),
                "--access-token",
                token,
                "--webhook-secret",
                secret,
                *options,
            ],
            dict(os.environ),
            stack.home / "logs" / f"sandbox-{name}-{port}.log",
            f"http://127.0.0.1:{port}/_sandbox/health",
        )
        return cls(name, f"http://127.0.0.1:{port}", token, secret, process, item_base)

    def item_gid(self, index: int) -> str:
        return f"gid://shopify/InventoryItem/{self.item_base + index}"

    def control(self, path: str, timeout: float, **params: Any) -> dict[str, Any]:
        """What the store's control endpoint `/_sandbox/<path>` answers."""
        answer = httpx.get(f"{self.url}/_sandbox/{path}", params=params, timeout=timeout)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def levels(self) -> dict[int, int]:
        levels = self.control("inventory", 30)["levels"]
        return {item_number(level["inventory_item_id"]): level["available"] for level in levels}

    def changes(self, since_seq: int = 0) -> tuple[list[dict[str, Any]], int]:
        body = self.control("changes", 60, since_seq=since_seq)
        return body["changes"], body["last_seq"]

    def requests(self) -> dict[str, Any]:
        return self.control("requests", 10)


@dataclass
class Scenario:
    """One merchant, its channels and SKUs, ready for load."""

    merchant_id: str
    api_key: str
    skus: list[str]
    on_hand: int
    channels: list[SandboxChannel]
    rules: list[Rule]
    baseline_seq: dict[str, int] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    @property
    def webhook_url_path(self) -> str:
        return f"/webhooks/shopify/{self.channels[0].connection_id}"

    def expected_on(self, channel_name: str, sku: str, available: int) -> int:
        channel = next(c for c in self.channels if c.name == channel_name)
        return channel_quantity(self.rules, uuid.UUID(channel.connection_id), sku, available).quantity


class StocksyncTarget:
    name = "stocksync"

    def __init__(self, stack: Stack, n_channels: int, restore_rate: float, bucket_size: float) -> None:
        self.stack = stack
        self.n_channels = n_channels
        self.restore_rate = restore_rate
        self.bucket_size = bucket_size
        self.api = httpx.Client(base_url=stack.base_url, timeout=60)
        self.scenario: Scenario | None = None

    def start_instances(self, count: int) -> None:
        """`count - 1` more instances of every service, on the same database and broker:
        the consumer groups share the partitions, the outbox relays share one lease, the
        publishers one advisory lock per connection, and the load generator sends to
        every order-ingest in turn (the gateway keeps using the first instances)."""
        started = [self.stack.start_service(service, i) for i in range(1, count) for service, _ in SERVICES]
        for process in started:
            process.wait_ready()

    def process_groups(self) -> dict[str, int]:
        groups = {
            name: p.process.pid
            for name, p in self.stack.processes.items()
            if p.process is not None and name != "gateway" and not name.startswith("floor")
        }
        if self.scenario:
            for channel in self.scenario.channels:
                if channel.process.process is not None:
                    groups[f"sandbox {channel.name}"] = channel.process.process.pid
        return groups

    @property
    def ingest_url(self) -> str:
        return self.ingest_urls[0]

    @property
    def ingest_urls(self) -> list[str]:
        """The webhook URL on every order-ingest instance."""
        assert self.scenario is not None
        return [f"{url}{self.scenario.webhook_url_path}" for url in self.stack.service_urls("order-ingest")]

    @property
    def webhook_secret(self) -> str:
        assert self.scenario is not None
        return self.scenario.channels[0].webhook_secret

    def _start_sandbox(self, name: str, index: int) -> SandboxChannel:
        channel = SandboxChannel.new(
            self.stack,
            name,
            (index + 1) * 1_000_000,
            *("--shop-domain", f"bench-{name.lower()}.myshopify.com"),
            *("--restore-rate", str(self.restore_rate), "--bucket-size", str(self.bucket_size)),
        )
        channel.process.start()
        channel.process.wait_ready()
        # Shopify Plus limits (the CLI flags say the same; this makes it explicit and checkable).
        httpx.post(
            f"{channel.url}/_sandbox/config",
            json={"restore_rate": self.restore_rate, "bucket_size": self.bucket_size},
            timeout=10,
        ).raise_for_status()
        return channel

    def prepare(self, skus: list[str], on_hand: int) -> Scenario:
        self.finish()
        merchant = self.api.post(
            "/v1/merchants",
            json={"name": f"bench {uuid.uuid4().hex[:8]}"},
            headers={"Authorization": f"Bearer {self.stack.admin_token}"},
        )
        merchant.raise_for_status()
        api_key = merchant.json()["api_key"]
        auth = {"X-API-Key": api_key}
        channels = [self._start_sandbox(f"C{i + 1}", i) for i in range(self.n_channels)]
        for channel in channels:
            answer = self.api.post(
                "/v1/connections",
                headers=auth,
                json={
                    "type": "shopify",
                    "name": f"bench {channel.name}",
                    "base_url": channel.url,
                    "credentials": {"access_token": channel.access_token},
                    "webhook_secret": channel.webhook_secret,
                    "listings": [
                        {
                            "sku": sku,
                            "inventory_item_id": channel.item_gid(i),
                            "location_id": "gid://shopify/Location/1",
                        }
                        for i, sku in enumerate(skus)
                    ],
                },
            )
            answer.raise_for_status()
            channel.connection_id = answer.json()["connection_id"]
        # The seed's buffer rule on every channel: evaluated on every change, it only bites
        # near zero, which this stock never reaches. Creating it succeeds once the rule
        # engine knows every connection.
        rule_body = {
            "name": "buffer: 0 when <= 3",
            "channels": [c.connection_id for c in channels],
            "condition": {"op": "<=", "value": 3},
            "action": {"type": "set", "value": 0},
        }
        created = wait_until(
            lambda: (r := self.api.post("/v1/rules", headers=auth, json=rule_body)).status_code == 201 and r, timeout=60
        )
        if not created:
            raise RuntimeError("the rule engine never learned of the bench connections")
        rule = Rule(
            uuid.UUID(created.json()["rule_id"]),
            0,
            Condition("<=", 3),
            Action("set", 0),
            frozenset(uuid.UUID(c.connection_id) for c in channels),
        )
        scenario = Scenario(merchant.json()["merchant_id"], api_key, skus, on_hand, channels, [rule])
        self.scenario = scenario
        # order-ingest learns connections from connections.v1: an unsigned probe answers 404
        # until it knows the connection, then 401.
        known = wait_until(lambda: httpx.post(self.ingest_url, content=b"{}", timeout=10).status_code == 401, 60)
        if not known:
            raise RuntimeError("order-ingest never learned of the bench connection")
        snapshot = self.api.post(
            "/v1/stock/snapshots", headers=auth, json={"items": [{"sku": sku, "on_hand": on_hand} for sku in skus]}
        )
        snapshot.raise_for_status()
        if not self.wait_channels({sku: on_hand for sku in skus}, timeout=120):
            raise RuntimeError("the snapshot never reached every channel")
        for channel in channels:
            scenario.baseline_seq[channel.name] = channel.changes(10**12)[1]
        return scenario

    def channel_mismatches(self, available: dict[str, int]) -> list[dict[str, Any]]:
        assert self.scenario is not None
        index = {sku: i for i, sku in enumerate(self.scenario.skus)}
        wrong = []
        for channel in self.scenario.channels:
            levels = channel.levels()
            for sku, value in available.items():
                shown = levels.get(channel.item_base + index[sku])
                expected = self.scenario.expected_on(channel.name, sku, value)
                if shown != expected:
                    wrong.append({"channel": channel.name, "sku": sku, "shown": shown, "expected": expected})
        return wrong

    def wait_channels(self, available: dict[str, int], timeout: float) -> bool:
        return bool(wait_until(lambda: not self.channel_mismatches(available), timeout, interval=0.25))

    def collect(self, orders: list[OrderResult], drain_timeout: float) -> dict[str, Any]:
        """Wait for the drain, check every unit, and compute the windows."""
        scenario = self.scenario
        assert scenario is not None
        ok = accepted(orders)
        units: dict[str, int] = {}
        for order in ok:
            for sku, quantity in order.lines:
                units[sku] = units.get(sku, 0) + quantity
        expected_available = {sku: scenario.on_hand - units.get(sku, 0) for sku in scenario.skus}
        last_answer = max((o.answered_at or 0.0) for o in orders) if orders else time.time()
        drained = self.wait_channels(expected_available, drain_timeout)
        drain_s = time.time() - last_answer
        # The authority: the ledger's own figures, SKU by SKU.
        ledger: dict[str, dict[str, int]] = {}
        for sku in scenario.skus:
            answer = self.api.get(f"/v1/stock/{sku}", headers=scenario.auth)
            answer.raise_for_status()
            ledger[sku] = answer.json()
        available = {sku: row["available"] for sku, row in ledger.items()}
        unit_errors = {
            sku: ledger[sku]["reserved"] - units.get(sku, 0)
            for sku in scenario.skus
            if ledger[sku]["reserved"] != units.get(sku, 0)
        }
        mismatches = self.channel_mismatches(available)
        series: dict[str, dict[str, list[tuple[float, int]]]] = {}
        throttled = {}
        for channel in scenario.channels:
            index = {channel.item_base + i: sku for i, sku in enumerate(scenario.skus)}
            changes, _ = channel.changes(scenario.baseline_seq[channel.name])
            per_sku: dict[str, list[tuple[float, int]]] = {}
            for change in changes:
                changed = index.get(item_number(change["inventory_item_id"]))
                if changed is not None:
                    per_sku.setdefault(changed, []).append((change["received_at"], change["quantity"]))
            series[channel.name] = per_sku
            throttled[channel.name] = channel.requests()
        disorder = published_out_of_order(series)
        return {
            "drained": drained,
            "drain_seconds": round(drain_s, 3),
            "lost_or_extra_units": sum(abs(v) for v in unit_errors.values()),
            "unit_errors": unit_errors,
            "channel_mismatches": mismatches[:20],
            "channel_mismatch_count": len(mismatches),
            "channel_requests": throttled,
            "published_out_of_order": len(disorder),
            "published_out_of_order_examples": disorder[:20],
            "start_available": {sku: scenario.on_hand for sku in scenario.skus},
            "series": series,
            "publisher_windows_ms": self.publisher_windows(),
        }

    def publisher_windows(self) -> list[float]:
        """`sync_window_ms` of every accepted push of this merchant (ingest receipt to channel accepted)."""
        assert self.scenario is not None
        windows: list[float] = []
        after = 0
        url = f"{self.stack.service_url('channel-publisher')}/v1/pushes"
        while True:
            answer = httpx.get(
                url,
                headers=self.scenario.auth,
                timeout=60,
                params={"status": "accepted", "after": after, "limit": 1000},
            )
            answer.raise_for_status()
            page = answer.json()
            if not page:
                return windows
            windows.extend(
                p["sync_window_ms"]
                for p in page
                if p.get("sync_window_ms") is not None and (p.get("causation_id") or "").startswith("shopify:")
            )
            after = page[-1]["push_id"]

    def finish(self) -> None:
        if self.scenario is not None:
            for channel in self.scenario.channels:
                channel.process.stop()
            self.scenario = None


class FloorTarget:
    """The bare pipeline's four processes, started once on the stack's broker and PostgreSQL."""

    name = "floor"

    def __init__(self, stack: Stack, n_channels: int) -> None:
        self.stack = stack
        self.n_channels = n_channels
        self.secret = secrets.token_hex(12)
        self.ingress_port = free_port()
        self.sink_port = free_port()
        self.processes: dict[str, ManagedProcess] = {}

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}/webhooks/shopify/floor"

    @property
    def webhook_secret(self) -> str:
        return self.secret

    @property
    def sink_url(self) -> str:
        return f"http://127.0.0.1:{self.sink_port}"

    def start(self) -> None:
        import asyncio

        from bench.floor.pipeline import ensure_floor_topics

        assert self.stack.kafka_bootstrap_servers and self.stack.database_url
        asyncio.run(ensure_floor_topics(self.stack.kafka_bootstrap_servers))
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        base = [sys.executable, "-m", "bench.floor"]
        bootstrap = self.stack.kafka_bootstrap_servers
        roles = {
            "floor-sink": ([*base, "sink", "--port", str(self.sink_port)], f"{self.sink_url}/healthz"),
            "floor-relay": (
                [*base, "relay", "--bootstrap", bootstrap, "--database-url", self.stack.database_url],
                None,
            ),
            "floor-egress": (
                [
                    *base,
                    "egress",
                    "--bootstrap",
                    bootstrap,
                    "--sink-url",
                    self.sink_url,
                    "--channels",
                    str(self.n_channels),
                ],
                None,
            ),
            "floor-ingress": (
                [*base, "ingress", "--port", str(self.ingress_port), "--bootstrap", bootstrap, "--secret", self.secret],
                f"http://127.0.0.1:{self.ingress_port}/healthz",
            ),
        }
        for name, (args, health) in roles.items():
            process = ManagedProcess(name, args, env, self.stack.home / "logs" / f"{name}.log", health)
            process.start()
            process.wait_ready()
            self.processes[name] = process

    def process_groups(self) -> dict[str, int]:
        return {name: p.process.pid for name, p in self.processes.items() if p.process is not None}

    def sink_records(self) -> dict[str, list[tuple[int, float]]]:
        answer = httpx.get(f"{self.sink_url}/_sink/records", timeout=60)
        answer.raise_for_status()
        records: dict[str, list[tuple[int, float]]] = answer.json()["channels"]
        return records

    def reset(self) -> None:
        httpx.post(f"{self.sink_url}/_sink/reset", timeout=10).raise_for_status()

    def collect(self, orders: list[OrderResult], drain_timeout: float) -> dict[str, Any]:
        ok = {o.order_id for o in accepted(orders)}
        last_answer = max((o.answered_at or 0.0) for o in orders) if orders else time.time()

        def arrived() -> bool:
            records = self.sink_records()
            return len(records) == self.n_channels and all(
                ok <= {order_id for order_id, _ in got} for got in records.values()
            )

        drained = bool(wait_until(arrived, drain_timeout, interval=0.25))
        drain_s = time.time() - last_answer
        records = self.sink_records()
        first: dict[int, float] = {}
        reached: dict[int, int] = {}
        for got in records.values():
            seen: set[int] = set()
            for order_id, at in got:
                if order_id in seen:
                    continue
                seen.add(order_id)
                reached[order_id] = reached.get(order_id, 0) + 1
                first[order_id] = max(first.get(order_id, 0.0), at)
        return {
            "drained": drained,
            "drain_seconds": round(drain_s, 3),
            "arrivals": {i: t for i, t in first.items() if reached[i] == self.n_channels},
        }

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop(timeout=10)
        self.processes.clear()
