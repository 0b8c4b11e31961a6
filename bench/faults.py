"""Fault injection over a whole Stocksync: order traffic, a fault, then an exact account.

One `FaultStack` is a Stocksync of its own on the embedded default (its own PostgreSQL,
broker, four services, gateway, all supervised by `Stack.supervise`) with one merchant,
two sandbox Shopify stores and a rule on the second ("subtract a safety stock of
`BUFFER`"). `FaultStack.run` sends signed `orders/create` webhooks to C1 at a steady rate
while a fault happens, resends what got no 2xx (as a marketplace does, same event id),
then waits until the pipeline has converged and accounts for every unit:

- accepted: orders that got a 2xx (`accepted`, or `duplicate` for a resend of one that
  was committed while its answer was lost);
- units lost / double-counted: per SKU, what the accepted orders reserved against what
  the ledger holds as reserved (a unit applied twice shows as one too many);
- channels: C1 shows the ledger's available, C2 the rule applied to it;
- time to converge: from the end of traffic (and of the fault) to the first moment both
  hold.

Used by the fault tests (tests/e2e/test_faults.py) and by `make soak` (bench/soak.py).
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.targets import SandboxChannel
from stocksync_embedded.stack import Ports, Stack
from stocksync_sandboxes.shopify_webhooks import OrderLine, build_order, order_body, webhook_headers

SKUS = tuple(f"FAULT-{i}" for i in range(6))
ON_HAND = 100_000
BUFFER = 5
SERVICES = ("order-ingest", "stock-ledger", "rule-engine", "channel-publisher")
SHOP_DOMAIN = "faults.myshopify.com"
API_VERSION = "2026-10"


def last_quantities(channel: SandboxChannel) -> dict[str, int]:
    """The quantity `channel` received last, per SKU it received one for."""
    last = {change["inventory_item_id"]: change["quantity"] for change in channel.changes()[0]}
    items = {sku: channel.item_gid(index) for index, sku in enumerate(SKUS)}
    return {sku: last[item] for sku, item in items.items() if item in last}


@dataclass
class Order:
    order_id: int
    sku: str
    quantity: int
    body: bytes
    event_id: str
    attempts: int = 0
    statuses: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return any(s in ("accepted", "duplicate") for s in self.statuses)


@dataclass
class Figures:
    fault: str
    orders_sent: int
    orders_accepted: int
    units_accepted: int
    units_lost: int
    units_double_counted: int
    dead_letters: int | None
    converge_s: float | None
    restarts: list[str]
    channels_right: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Traffic:
    """Signed orders/create webhooks to one connection at `rate` per second until stopped."""

    def __init__(self, url: str, secret: str, rate: float, seed: int) -> None:
        self.url = url
        self.secret = secret
        self.rate = rate
        self.random = random.Random(seed)
        self.orders: list[Order] = []
        self._stop = threading.Event()
        self._client = httpx.Client(timeout=10)
        self._pool = ThreadPoolExecutor(16, thread_name_prefix="orders")
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        # Unique per run whatever the seed: an order id seen before is not a new order.
        self._base = 6_000_000_000_000 + secrets.randbelow(10**11) * 10_000

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _new_order(self, index: int) -> Order:
        sku = self.random.choice(SKUS)
        quantity = self.random.choice((1, 1, 1, 2))
        order_id = self._base + index
        body = order_body(
            build_order(
                order_id=order_id,
                order_number=1000 + index,
                lines=[OrderLine(sku, quantity)],
                created_at=datetime.now(UTC),
            )
        )
        return Order(order_id, sku, quantity, body, str(uuid.uuid4()))

    def _run(self) -> None:
        started = time.monotonic()
        index = 0
        while not self._stop.is_set():
            order = self._new_order(index)
            self.orders.append(order)
            self._pool.submit(self.send, order)
            index += 1
            self._stop.wait(max(0.0, started + index / self.rate - time.monotonic()))

    def send(self, order: Order) -> None:
        order.attempts += 1
        headers = webhook_headers(
            topic="orders/create",
            shop_domain=SHOP_DOMAIN,
            api_version=API_VERSION,
            secret=self.secret,
            body=order.body,
            event_id=order.event_id,
            webhook_id=str(uuid.uuid4()),
            triggered_at=datetime.now(UTC),
        )
        try:
            answer = self._client.post(self.url, content=order.body, headers=headers)
        except httpx.HTTPError as exc:
            order.statuses.append(type(exc).__name__)
            return
        if 200 <= answer.status_code < 300:
            order.statuses.append(str(answer.json().get("status")))
        else:
            order.statuses.append(f"http_{answer.status_code}")

    def resend_unacknowledged(self, timeout_s: float) -> None:
        """Resend what got no 2xx, every second, as the marketplace would, until `timeout_s`."""
        self._pool.shutdown(wait=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            waiting = [o for o in self.orders if not o.accepted]
            if not waiting:
                break
            for order in waiting:
                self.send(order)
            time.sleep(1.0)
        self._client.close()


class FaultStack:
    def __init__(self, home: Path, *, log: Callable[[str], None] | None = None) -> None:
        ports = Ports.free()
        # A channel call gives up after 2 s (10 s by default), so a hanging channel is
        # retried within the run.
        self.stack = Stack(
            home, ports, database_url="", kafka_bootstrap_servers="", extra_env={"CHANNEL_TIMEOUT_S": "2"}
        )
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.units: dict[str, int] = dict.fromkeys(SKUS, 0)  # accepted units per SKU, all runs
        self.channels: list[SandboxChannel] = []
        self.api: httpx.Client | None = None
        self.auth: dict[str, str] = {}
        self.figures: list[Figures] = []
        # What a fault saw while it ran, by name (channel_errors: the other channel's
        # changes while the failing one had failures left).
        self.observations: dict[str, Any] = {}

    # -- setting up --------------------------------------------------------------------

    def start(self) -> FaultStack:
        """Start everything; on failure, stop what was started."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> FaultStack:
        stack = self.stack
        stack.start_infrastructure(use_environment=False)
        stack.migrate()
        stack.start_services()
        stack.supervise()
        self.api = httpx.Client(base_url=stack.base_url, timeout=30)
        created = self.api.post(
            "/v1/merchants", json={"name": "faults"}, headers={"Authorization": f"Bearer {stack.admin_token}"}
        )
        created.raise_for_status()
        self.auth = {"X-API-Key": created.json()["api_key"]}
        self.channels = [self._sandbox("C1"), self._sandbox("C2")]
        for channel in self.channels:
            channel.connection_id = self._connect(channel)
        c2 = self.channels[1].connection_id
        rule = {
            "name": "safety stock on C2",
            "channels": [c2],
            "condition": {"op": "always"},
            "action": {"type": "subtract", "value": BUFFER},
        }
        self._wait(lambda: self._post("/v1/rules", rule).status_code == 201, 120, "the rule saved")
        snapshot = {"items": [{"sku": sku, "on_hand": ON_HAND} for sku in SKUS]}
        answer = self._post("/v1/stock/snapshots", snapshot)
        answer.raise_for_status()
        self._wait(self.channels_right, 180, "the channels showing the snapshot")
        return self

    def stop(self) -> None:
        if self.api is not None:
            self.api.close()
        self.stack.stop()

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        assert self.api is not None
        return self.api.post(path, json=body, headers=self.auth)

    def _sandbox(self, name: str) -> SandboxChannel:
        """Channel `C<n>`'s store, supervised with the stack; its SKUs are items n * 1000 + i."""
        channel = SandboxChannel.new(self.stack, name, int(name[1:]) * 1000)
        self.stack.add_process(channel.process)
        return channel

    def _connect(self, channel: SandboxChannel) -> str:
        answer = self._post(
            "/v1/connections",
            {
                "type": "shopify",
                "name": channel.name,
                "base_url": channel.url,
                "credentials": {"access_token": channel.access_token},
                "webhook_secret": channel.webhook_secret,
                "listings": [
                    {"sku": sku, "inventory_item_id": channel.item_gid(i), "location_id": "gid://shopify/Location/1"}
                    for i, sku in enumerate(SKUS)
                ],
            },
        )
        answer.raise_for_status()
        connection_id: str = answer.json()["connection_id"]
        return connection_id

    # -- reading the outcome -----------------------------------------------------------

    def reserved(self) -> dict[str, int]:
        assert self.api is not None
        answer = self.api.get("/v1/stock", params={"limit": 100}, headers=self.auth)
        answer.raise_for_status()
        return {item["sku"]: item["reserved"] for item in answer.json()["items"] if item["sku"] in SKUS}

    def channels_right(self) -> bool:
        """C1 shows the ledger's available, C2 the rule applied to it, for every SKU, and
        the ledger holds exactly what the accepted orders reserved."""
        try:
            reserved = self.reserved()
            if reserved != self.units:
                return False
            available = {sku: ON_HAND - reserved[sku] for sku in SKUS}
            c1, c2 = (last_quantities(channel) for channel in self.channels)
        except httpx.HTTPError:
            return False
        return c1 == available and c2 == {sku: max(0, q - BUFFER) for sku, q in available.items()}

    def dead_letters(self) -> int | None:
        """Dead letters of the merchant (every page); None when the API cannot be read."""
        assert self.api is not None
        count, before = 0, None
        while True:
            params = {"limit": 500, **({"before": before} if before else {})}
            try:
                answer = self.api.get("/v1/dead-letters", headers=self.auth, params=params)
            except httpx.HTTPError:
                return None
            if answer.status_code != 200:
                return None
            page = answer.json()
            count += len(page["dead_letters"])
            before = page.get("next")
            if not before:
                return count

    def _wait(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
        started = time.monotonic()
        while True:
            try:
                if predicate():
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"{what}: not within {timeout_s:g} s")
            time.sleep(0.5)

    # -- one run -----------------------------------------------------------------------

    def run(
        self,
        name: str,
        fault: Callable[[FaultStack], None],
        *,
        rate: float = 20.0,
        before_s: float = 2.0,
        after_s: float = 3.0,
        converge_timeout_s: float = 240.0,
        seed: int = 1,
    ) -> Figures:
        """Traffic for `before_s`, the fault (which may take its time), traffic for
        `after_s` more, resends, then the account."""
        c1 = self.channels[0]
        url = f"{self.stack.base_url}/webhooks/shopify/{c1.connection_id}"
        restarts_before = len(self.stack.restarts)
        traffic = Traffic(url, c1.webhook_secret, rate, seed).start()
        try:
            time.sleep(before_s)
            self.log(f"{name}: fault")
            fault(self)
            time.sleep(after_s)
        finally:
            # Also when the fault itself failed: the traffic stops and what it got accepted
            # is counted, so that the next run on this stack starts from an exact account.
            traffic.stop()
            traffic.resend_unacknowledged(converge_timeout_s)
            accepted = [o for o in traffic.orders if o.accepted]
            for order in accepted:
                self.units[order.sku] += order.quantity
        ended = time.monotonic()
        try:
            self._wait(self.channels_right, converge_timeout_s, f"{name}: convergence")
            converge_s: float | None = time.monotonic() - ended
            right = True
        except TimeoutError:
            converge_s, right = None, False
        reserved = self.reserved()
        lost = sum(max(0, self.units[sku] - reserved.get(sku, 0)) for sku in SKUS)
        double = sum(max(0, reserved.get(sku, 0) - self.units[sku]) for sku in SKUS)
        figures = Figures(
            fault=name,
            orders_sent=len(traffic.orders),
            orders_accepted=len(accepted),
            units_accepted=sum(o.quantity for o in accepted),
            units_lost=lost,
            units_double_counted=double,
            dead_letters=self.dead_letters(),
            converge_s=round(converge_s, 1) if converge_s is not None else None,
            restarts=[r.name for r in self.stack.restarts[restarts_before:]],
            channels_right=right,
        )
        self.figures.append(figures)
        self.log(f"{name}: {figures.as_dict()}")
        return figures


# -- the faults ---------------------------------------------------------------------------


def kill_service(name: str) -> Callable[[FaultStack], None]:
    """SIGKILL one process of the stack; the supervisor restarts it."""

    def fault(faults: FaultStack) -> None:
        faults.stack.processes[name].kill()

    return fault


def kill_services_at_random(kills: int, seed: int, spacing_s: float = 3.0) -> Callable[[FaultStack], None]:
    """SIGKILL a random service (or the gateway) `kills` times, at random moments."""
    chooser = random.Random(seed)

    def fault(faults: FaultStack) -> None:
        for _ in range(kills):
            name = chooser.choice([*SERVICES, "gateway"])
            faults.log(f"SIGKILL {name}")
            faults.stack.processes[name].kill()
            time.sleep(chooser.uniform(0.5, spacing_s))

    return fault


def broker_outage(outage_s: float) -> Callable[[FaultStack], None]:
    """The broker frozen (SIGSTOP: connections accepted, nothing answered, the worst case
    for a producer) for `outage_s`, then killed: the supervisor starts a new, empty one,
    and the relays republish what they retained."""

    def fault(faults: FaultStack) -> None:
        broker = faults.stack.broker
        assert broker is not None and broker.pid is not None
        pid = broker.pid
        os.kill(pid, signal.SIGSTOP)
        time.sleep(outage_s)
        # SIGKILL ends a stopped process too; the supervisor may reap it at once, so the
        # SIGCONT after it (for a process the kernel has not ended yet) may find none.
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)

    return fault


def restart_postgres(faults: FaultStack) -> None:
    """PostgreSQL stopped (fast shutdown: connections cut) and started again by the
    supervisor; the services keep running and report not ready meanwhile."""
    postgres = faults.stack.postgres
    assert postgres is not None
    postgres.stop(mode="immediate")


def channel_errors(failures: int, wait_s: float = 120.0) -> Callable[[FaultStack], None]:
    """C2's sandbox answers its next `failures` calls with 500, then `failures` with 429,
    then hangs `failures` times past the publisher's timeout: the publisher retries with
    backoff and C2 ends right, while C1 (its own drain) keeps receiving. Keep 3 x `failures`
    under the connection's `pause_after_failures` (8): past it the publisher pauses the
    connection for `pause_duration_s` (300 s), by design.

    The fault lasts until C2 has used up every injected failure, and records in
    `observations["other_channel_changes_during_fault"]` how many quantities C1 received
    meanwhile: a failing channel must not hold the others back (0 would say it did)."""

    def fault(faults: FaultStack) -> None:
        c1, c2 = faults.channels[0], faults.channels[1]
        used_before = c2.requests()["injected_failures"]
        c1_seq = c1.changes()[1]
        for mode in ("http_500", "http_429", "hang"):
            answer = httpx.post(f"{c2.url}/_sandbox/fail-next", json={"mode": mode, "count": failures}, timeout=10)
            answer.raise_for_status()
        deadline = time.monotonic() + wait_s
        while c2.requests()["injected_failures"] < used_before + 3 * failures:
            if time.monotonic() > deadline:
                faults.log(f"C2 had injected failures left after {wait_s:g} s")
                break
            time.sleep(0.2)
        c1_changes = c1.changes(c1_seq)[0]
        faults.observations["other_channel_changes_during_fault"] = len(c1_changes)

    return fault
