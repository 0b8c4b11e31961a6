"""Stock-ledger throughput: order lines per second from orders.v1 into the ledger.

Runs one `python -m stock_ledger serve` process (its consumer, its outbox relay) on an
embedded PostgreSQL and broker, co-located on this machine, and for each scenario:
a fresh merchant, then N `placed` order lines written to orders.v1 as fast as one
producer can, timed from the first send until the ledger has reserved every line
(sum of `reserved` for the merchant, polled in PostgreSQL). Median of the runs.

Scenarios: one hot SKU; 10,000 SKUs chosen uniformly (their stock rows imported first
with a CSV upload of 10,000 rows, whose rate is reported too); and a 100,000-row CSV
import, with the ledger process's peak memory.

    .venv/bin/python bench/ledger_bench.py [--lines 20000] [--runs 3] [--json bench/results/ledger.json]

DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS point it at running servers instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from stocksync_common.auth import issue_api_key
from stocksync_common.contracts import OrderLineMoved
from stocksync_common.db import make_engine
from stocksync_common.kafka import encode_event
from stocksync_common.topics import ORDERS
from stocksync_embedded.stack import Ports, Stack

TARGETS = {"hot_sku": 5000.0, "uniform_10k": 2000.0}


def order_lines(merchant_id: uuid.UUID, skus: list[str], count: int, seed: int) -> list[OrderLineMoved]:
    rng = random.Random(seed)
    connection_id = uuid.uuid4()
    now = datetime.now(UTC)
    return [
        OrderLineMoved(
            merchant_id=merchant_id,
            connection_id=connection_id,
            channel_type="shopify",
            external_order_id=f"bench-{n}",
            line_id="1",
            sku=rng.choice(skus),
            movement="placed",
            quantity=1,
            received_at=now,
            causation_id=f"bench:{n}:1:placed",
        )
        for n in range(count)
    ]


async def reserved_total(engine: Any, merchant_id: uuid.UUID) -> int:
    async with engine.connect() as conn:
        total = (
            await conn.execute(
                sa.text("SELECT coalesce(sum(reserved), 0) FROM stock_ledger.stock_items WHERE merchant_id = :m"),
                {"m": merchant_id},
            )
        ).scalar_one()
    return int(total)


async def time_order_lines(
    stack: Stack, engine: Any, skus: list[str], count: int, seed: int, merchant_id: uuid.UUID | None = None
) -> float:
    """Seconds from the first send until the ledger has reserved every line."""
    merchant_id = merchant_id or uuid.uuid4()
    events = order_lines(merchant_id, skus, count, seed)
    payloads = [(encode_event(e), ORDERS.key_of(e)) for e in events]
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap_servers, acks="all", linger_ms=5, max_batch_size=262144
    )
    await producer.start()
    try:
        start = time.perf_counter()
        sends = [await producer.send(ORDERS.name, value, key=key) for value, key in payloads]
        await asyncio.gather(*sends)
        while await reserved_total(engine, merchant_id) < count:  # noqa: ASYNC110 - polls PostgreSQL
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - start
    finally:
        await producer.stop()
    if await reserved_total(engine, merchant_id) != count:
        raise AssertionError("the ledger reserved more than the lines sent")
    return elapsed


def csv_rows(skus: list[str]) -> Iterator[bytes]:
    yield b"sku,on_hand,brand,category,tags\n"
    for n, sku in enumerate(skus):
        yield f"{sku},1000000,brand-{n % 50},category-{n % 20},tag-{n % 7}|all\n".encode()


def import_csv(client: httpx.Client, api_key: str, skus: list[str]) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    answer = client.post(
        "/v1/stock/snapshots",
        content=csv_rows(skus),
        headers={"X-API-Key": api_key, "Content-Type": "text/csv"},
        timeout=600,
    )
    elapsed = time.perf_counter() - start
    answer.raise_for_status()
    report: dict[str, Any] = answer.json()
    if report["applied"] != len(skus):
        raise AssertionError(f"import applied {report['applied']} of {len(skus)} rows: {report['errors'][:3]}")
    return elapsed, report


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    engine = make_engine(stack.database_url or "", pool_size=2)
    ledger = stack.processes["stock-ledger"]
    assert ledger.process is not None
    results: dict[str, Any] = {"lines_per_run": args.lines, "runs": args.runs}
    client = httpx.Client(base_url=stack.service_url("stock-ledger"))  # used from worker threads only
    try:
        hot: list[float] = []
        for run_number in range(args.runs):
            seconds = await time_order_lines(stack, engine, ["HOT"], args.lines, run_number)
            hot.append(args.lines / seconds)
        results["hot_sku"] = {"lines_per_s": hot, "median": statistics.median(hot)}

        uniform: list[float] = []
        import_rates: list[float] = []
        skus = [f"SKU-{n:05d}" for n in range(10_000)]
        for run_number in range(args.runs):
            merchant_id = uuid.uuid4()
            api_key = issue_api_key(stack.api_key_secret, merchant_id)
            seconds, _ = await asyncio.to_thread(import_csv, client, api_key, skus)
            import_rates.append(len(skus) / seconds)
            seconds = await time_order_lines(stack, engine, skus, args.lines, run_number, merchant_id)
            uniform.append(args.lines / seconds)
        results["uniform_10k"] = {"lines_per_s": uniform, "median": statistics.median(uniform)}
        results["csv_import_10k_rows_per_s"] = statistics.median(import_rates)

        if args.import_rows:
            api_key = issue_api_key(stack.api_key_secret, uuid.uuid4())
            big = [f"BIG-{n:06d}" for n in range(args.import_rows)]
            seconds, _ = await asyncio.to_thread(import_csv, client, api_key, big)
            results["csv_import_big"] = {
                "rows": args.import_rows,
                "seconds": seconds,
                "rows_per_s": args.import_rows / seconds,
                "ledger_peak_rss_mb": peak_rss_mb(ledger.process.pid),
            }
    finally:
        await asyncio.to_thread(client.close)
        await engine.dispose()
    results["targets"] = {
        name: {"target": target, "median": results[name]["median"], "met": results[name]["median"] >= target}
        for name, target in TARGETS.items()
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=20_000, help="order lines per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--import-rows", type=int, default=100_000, help="rows of the big CSV import (0: skip)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    stack = Stack(home, Ports.free())
    try:
        stack.start_infrastructure()
        stack.migrate()
        stack.start_service("stock-ledger").wait_ready()
        results = asyncio.run(run(args, stack))
    finally:
        stack.stop()
    results["load_average_at_end"] = os.getloadavg()
    print(f"ledger throughput, {args.lines} order lines per run, median of {args.runs} runs:")
    for name, target in results["targets"].items():
        runs = ", ".join(f"{rate:,.0f}" for rate in results[name]["lines_per_s"])
        print(
            f"  {name:12s} {target['median']:8,.0f} lines/s  (runs: {runs}; target {target['target']:,.0f}: "
            f"{'met' if target['met'] else 'missed'})"
        )
    print(f"  CSV import of 10,000 rows: {results['csv_import_10k_rows_per_s']:,.0f} rows/s")
    if "csv_import_big" in results:
        big = results["csv_import_big"]
        print(
            f"  CSV import of {big['rows']:,} rows: {big['seconds']:.1f} s ({big['rows_per_s']:,.0f} rows/s), "
            f"ledger peak RSS {big['ledger_peak_rss_mb']:.0f} MB"
        )
    print(f"  load average at end: {results['load_average_at_end']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
