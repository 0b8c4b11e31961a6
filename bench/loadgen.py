"""The load generator: signed Shopify `orders/create` webhooks on an open-loop schedule.

Runs in its own process (`start_load` spawns it) so that its CPU does not slow the
orchestrator's measurements, and so that a slow server cannot slow the schedule down:
order i is sent at `start + i / rate` whatever happened to the orders before it (an
open loop). Each order records when it was scheduled, when it was really sent, when the
answer came and what it said.

Order shapes: 1 to 5 lines (most orders have one), distinct SKUs per order drawn from a
Zipf-like popularity (weight of the k-th SKU is 1 / k**s), quantity 1 or 2. A hot-SKU
run puts one SKU on most orders. The plan is pure and seeded (`plan_orders`), and every
body is built and signed before the clock starts, so the send loop only sends.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import multiprocessing
import multiprocessing.sharedctypes
import random
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from stocksync_sandboxes.shopify_webhooks import OrderLine, build_order, order_body, webhook_headers

LINE_COUNT_WEIGHTS = (0.55, 0.2, 0.12, 0.08, 0.05)  # 1 to 5 lines per order
QUANTITY_WEIGHTS = (0.85, 0.15)  # quantity 1 or 2 per line


@dataclass(frozen=True)
class LoadSpec:
    url: str
    webhook_secret: str
    rate: float  # orders per second
    duration: float  # seconds of sending
    skus: tuple[str, ...]
    seed: int = 1
    zipf_s: float = 1.1
    hot_sku: str | None = None
    hot_fraction: float = 0.8  # share of orders with a line on the hot SKU
    order_id_base: int = 5_000_000_000_000
    max_in_flight: int = 4000  # beyond this the generator is saturated: the order is counted as not sent
    timeout: float = 30.0
    # Resends of an order that got no 2xx, as Shopify does (8 over 4 hours there): after
    # the answer's Retry-After when it has one (a 503 of an overloaded receiver, a 429),
    # else after retry_delay doubling; with jitter, so shed orders do not come back at once.
    retries: int = 8
    retry_delay: float = 1.0
    retry_delay_max: float = 8.0
    shop_domain: str = "bench.myshopify.com"
    api_version: str = "2026-10"
    # More receivers of the same webhooks (other instances of order-ingest, `--instances`):
    # orders go round-robin over `url` and these, and a resend goes to the next one, as
    # behind a load balancer.
    more_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlannedOrder:
    index: int
    offset: float  # seconds after the start
    order_id: int
    lines: tuple[tuple[str, int], ...]


@dataclass
class OrderResult:
    index: int
    order_id: int
    lines: list[tuple[str, int]]
    scheduled_at: float
    sent_at: float | None = None
    answered_at: float | None = None
    status_code: int | None = None
    outcome: str | None = None  # the body's "status": accepted, stored, duplicate; or an error
    # attempts (when resent), shed (503s with Retry-After: refused by an overloaded receiver)
    extra: dict[str, Any] = field(default_factory=dict)


def zipf_weights(n: int, s: float) -> list[float]:
    return [1.0 / (k**s) for k in range(1, n + 1)]


def plan_orders(spec: LoadSpec) -> list[PlannedOrder]:
    """Every order of a run, seeded: the same spec gives the same orders."""
    rng = random.Random(spec.seed)
    count = int(spec.rate * spec.duration)
    skus = list(spec.skus)
    cumulative: list[float] = []
    total = 0.0
    for w in zipf_weights(len(skus), spec.zipf_s):
        total += w
        cumulative.append(total)

    def draw_sku() -> str:
        return skus[min(bisect.bisect_left(cumulative, rng.random() * total), len(skus) - 1)]

    orders = []
    for i in range(count):
        n_lines = min(rng.choices(range(1, 6), LINE_COUNT_WEIGHTS)[0], len(skus))
        chosen: list[str] = []
        if spec.hot_sku is not None and rng.random() < spec.hot_fraction:
            chosen.append(spec.hot_sku)
        while len(chosen) < n_lines:
            sku = draw_sku()
            if sku not in chosen:
                chosen.append(sku)
        lines = tuple((sku, rng.choices((1, 2), QUANTITY_WEIGHTS)[0]) for sku in chosen)
        orders.append(PlannedOrder(i, i / spec.rate, spec.order_id_base + i, lines))
    return orders


def units_per_sku(orders: list[PlannedOrder]) -> dict[str, int]:
    units: dict[str, int] = {}
    for order in orders:
        for sku, quantity in order.lines:
            units[sku] = units.get(sku, 0) + quantity
    return units


def _signed(spec: LoadSpec, order: PlannedOrder, now: datetime) -> tuple[bytes, dict[str, str]]:
    body = order_body(
        build_order(
            order_id=order.order_id,
            order_number=1000 + order.index,
            lines=[OrderLine(sku, q) for sku, q in order.lines],
            created_at=now,
        )
    )
    headers = webhook_headers(
        topic="orders/create",
        shop_domain=spec.shop_domain,
        api_version=spec.api_version,
        secret=spec.webhook_secret,
        body=body,
        event_id=str(uuid.uuid4()),
        webhook_id=str(uuid.uuid4()),
        triggered_at=now,
    )
    return body, headers


class KeepAlivePool:
    """A minimal HTTP/1.1 client over persistent connections, for one host.

    A general client (httpx) spends most of a millisecond of CPU per request; at
    1,000 requests/s on a 2-core machine that would make the generator the bottleneck.
    This one writes prepared request bytes and reads the status line, the headers and a
    Content-Length body: all that a webhook answer needs.
    """

    def __init__(self, url: str) -> None:
        parsed = urlsplit(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 80
        self.path = parsed.path or "/"
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    def request_bytes(self, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def send(self, raw: bytes) -> tuple[int, bytes, float | None]:
        if self._idle:
            try:
                return await self._send_on(*self._idle.pop(), raw)
            except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as error:
                # The server closed an idle keep-alive connection as the request left (uvicorn
                # closes them after 5 s): nothing was read, so send it once more on a new
                # connection. Were it read after all, the event id makes it a duplicate.
                if isinstance(error, asyncio.IncompleteReadError) and error.partial:
                    raise
        return await self._send_on(*await asyncio.open_connection(self.host, self.port), raw)

    async def _send_on(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
    ) -> tuple[int, bytes, float | None]:
        try:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            retry_after = None
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"retry-after" and value.strip().isdigit():
                    retry_after = float(value)
            body = await reader.readexactly(length) if length else b""
        except BaseException:
            writer.close()
            raise
        self._idle.append((reader, writer))
        return status, body, retry_after

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()


async def _send_all(spec: LoadSpec, progress: Any) -> list[OrderResult]:
    plan = plan_orders(spec)
    now = datetime.now(UTC)
    pools = [KeepAlivePool(url) for url in (spec.url, *spec.more_urls)]
    signed = [_signed(spec, order, now) for order in plan]
    prepared = [[pool.request_bytes(*request) for request in signed] for pool in pools]
    results = [OrderResult(o.index, o.order_id, [list(line) for line in o.lines], 0.0) for o in plan]  # type: ignore[misc]
    in_flight = 0

    async def attempt(i: int) -> float | None:
        """Send order i once; the delay before resending it, or None when it is done."""
        result = results[i]
        retry_after = None
        receiver = (i + result.extra.get("attempts", 1) - 1) % len(pools)
        try:
            status, body, retry_after = await asyncio.wait_for(
                pools[receiver].send(prepared[receiver][i]), spec.timeout
            )
            result.answered_at = time.time()
            result.status_code = status
            try:
                result.outcome = orjson.loads(body).get("status", "error")
            except (orjson.JSONDecodeError, AttributeError):
                result.outcome = "error"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as error:
            result.answered_at = time.time()
            result.status_code = None
            result.outcome = f"error: {type(error).__name__}"
        if result.status_code is not None and 200 <= result.status_code < 300:
            return None
        if result.status_code == 503 and retry_after is not None:
            # Shed by an overloaded receiver: counted apart from failures.
            result.extra["shed"] = result.extra.get("shed", 0) + 1
        attempts: int = result.extra.get("attempts", 1)
        if attempts > spec.retries:
            return None
        result.extra["attempts"] = attempts + 1
        backoff = min(spec.retry_delay * 2.0 ** (attempts - 1), spec.retry_delay_max)
        delay: float = (retry_after if retry_after is not None else backoff) * rng.uniform(1.0, 1.5)
        return delay

    async def send(i: int) -> None:
        nonlocal in_flight
        results[i].sent_at = time.time()  # the first send: the merchant's clock started then
        try:
            delay = await attempt(i)
            while delay is not None:
                await asyncio.sleep(delay)
                delay = await attempt(i)
        finally:
            in_flight -= 1
            with progress.get_lock():
                progress.value += 1

    rng = random.Random(spec.seed)
    tasks = []
    start = time.time() + 0.2
    for order, result in zip(plan, results, strict=True):
        result.scheduled_at = start + order.offset
        # Always yield, so that sends already started progress even when behind schedule.
        await asyncio.sleep(max(0.0, result.scheduled_at - time.time()))
        if in_flight >= spec.max_in_flight:
            result.outcome = "not_sent: generator saturated"
            with progress.get_lock():
                progress.value += 1
            continue
        in_flight += 1
        tasks.append(asyncio.create_task(send(order.index)))
    if tasks:
        await asyncio.wait(tasks)
    for pool in pools:
        pool.close()
    return results


def _main(spec: LoadSpec, out_path: str, progress: Any) -> None:
    import resource

    # One socket per order in flight: allow as many as the hard limit does.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, spec.max_in_flight + 256)), hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results = asyncio.run(_send_all(spec, progress))
    Path(out_path).write_text(json.dumps([asdict(r) for r in results]))


class LoadProcess:
    """The generator in a child process; `progress.value` counts orders answered."""

    def __init__(self, spec: LoadSpec, out_path: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self.spec = spec
        self.out_path = out_path
        self.progress: multiprocessing.sharedctypes.Synchronized[int] = context.Value("i", 0)  # type: ignore[assignment]
        self.total = int(spec.rate * spec.duration)
        self.process = context.Process(target=_main, args=(spec, str(out_path), self.progress), daemon=True)

    def start(self) -> None:
        self.process.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def join(self, timeout: float | None = None) -> list[OrderResult]:
        self.process.join(timeout)
        if self.process.exitcode != 0:
            raise RuntimeError(f"load generator exited with {self.process.exitcode}")
        raw = json.loads(self.out_path.read_text())
        return [OrderResult(**r) for r in raw]
