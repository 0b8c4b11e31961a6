"""How long a rule preview takes for a merchant with 100,000 SKUs on two channels.

Fills the rule engine's projection (stock, product attributes, published channel
quantities) for a fresh merchant directly in its tables, then times
`preview_rule_change` for a few rules, as `POST /v1/rules/preview` runs it: the totals
over every change and the first `--limit` changes listed (the API's default is 1000).
Each line gives the median and the slowest of `--runs` previews of one rule.

    .venv/bin/python bench/rules_preview_bench.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench

The database must be migrated (`python -m rule_engine migrate` with DATABASE_URL set).
Without --database-url it starts an embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import utcnow
from stocksync_common.db import make_engine

from rule_engine.adapters.tables import channel_quantities, connections, products, stock
from rule_engine.service_layer.rule_changes import preview_rule_change

RULES: dict[str, dict[str, Any]] = {
    "0 when <= 3, all products": {"condition": {"op": "<=", "value": 3}, "action": {"type": "set", "value": 0}},
    "cap 5 for brand b7": {
        "condition": {"op": "always", "value": None},
        "action": {"type": "cap", "value": 5},
        "product_filter": {"brands": ["b7"]},
    },
    "50% except tag clearance": {
        "condition": {"op": "always", "value": None},
        "action": {"type": "percent", "value": 50},
        "product_filter": {"exclude_tags": ["clearance"]},
    },
}


def rule_values(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "bench",
        "position": 100,
        "enabled": True,
        "connection_ids": [],
        "skus": [],
        "condition": {"upper": None, **spec["condition"]},
        "action": spec["action"],
        "product_filter": spec.get("product_filter", {}),
        "starts_at": None,
        "ends_at": None,
        "weekly_windows": [],
        "time_zone": "UTC",
    }


async def fill(engine: AsyncEngine, merchant_id: uuid.UUID, skus: int) -> None:
    channels = [uuid.uuid4(), uuid.uuid4()]
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(connections),
            [
                {
                    "connection_id": c,
                    "merchant_id": merchant_id,
                    "channel_type": "shopify",
                    "name": f"C{i}",
                    "active": True,
                    "updated_at": utcnow(),
                }
                for i, c in enumerate(channels)
            ],
        )
        for start in range(0, skus, 10_000):
            names = [f"SKU-{n:06}" for n in range(start, min(start + 10_000, skus))]
            await conn.execute(
                sa.insert(stock),
                [
                    {
                        "merchant_id": merchant_id,
                        "sku": s,
                        "location": "default",
                        "available": n % 20,
                        "version": 1,
                        "causation_id": "bench",
                    }
                    for n, s in enumerate(names, start)
                ],
            )
            await conn.execute(
                sa.insert(products),
                [
                    {
                        "merchant_id": merchant_id,
                        "sku": s,
                        "brand": f"b{n % 10}",
                        "category": f"c{n % 50}",
                        "tags": ["clearance"] if n % 7 == 0 else [],
                        "version": 1,
                    }
                    for n, s in enumerate(names, start)
                ],
            )
            await conn.execute(
                sa.insert(channel_quantities),
                [
                    {
                        "connection_id": c,
                        "sku": s,
                        "location": "default",
                        "merchant_id": merchant_id,
                        "quantity": n % 20,
                        "version": 1,
                        "stock_version": 1,
                        "rule_ids": [],
                    }
                    for n, s in enumerate(names, start)
                    for c in channels
                ],
            )


async def measure(database_url: str, skus: int, runs: int, limit: int) -> None:
    engine = make_engine(database_url)
    merchant_id = uuid.uuid4()
    started = time.perf_counter()
    await fill(engine, merchant_id, skus)
    print(f"filled {skus} SKUs x 2 channels in {time.perf_counter() - started:.1f} s")
    for name, spec in RULES.items():
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            preview = await preview_rule_change(
                engine, merchant_id, rule_id=None, values=rule_values(spec), limit=limit
            )
            timings.append(time.perf_counter() - started)
        print(
            f"{name:32} {preview.channel_quantities_changed:7} changes ({preview.skus_changed} SKUs,"
            f" {len(preview.changes)} listed)  median {statistics.median(timings) * 1000:7.0f} ms"
            f"  max {max(timings) * 1000:7.0f} ms  ({runs} runs)"
        )
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url")
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--limit", type=int, default=1000, help="changes listed per preview (default: the API's)")
    args = parser.parse_args()
    if args.database_url:
        asyncio.run(measure(args.database_url, args.skus, args.runs, args.limit))
        return
    from stocksync_common.migrations import upgrade
    from stocksync_embedded.postgres import EmbeddedPostgres

    import rule_engine

    with tempfile.TemporaryDirectory() as home:
        postgres = EmbeddedPostgres(Path(home), 54329)
        postgres.start()
        try:
            upgrade(Path(rule_engine.__file__).parent / "migrations", postgres.url)
            asyncio.run(measure(postgres.url, args.skus, args.runs, args.limit))
        finally:
            postgres.stop()


if __name__ == "__main__":
    main()
