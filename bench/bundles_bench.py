"""Bundle fan-out: one component in N bundles changes; how long until every bundle's
channel quantity is decided.

In process, on an embedded PostgreSQL (no broker, no services): a merchant with a
component C and N bundles of {C: 1, own part: 1}, one channel selling from the default
location. Timed, per run: the stock-ledger's transaction applying one order line of C
(which recomputes and versions every bundle row, and writes N + 1 StockChanged to the
outbox), then the rule engine's batch path over those events (which writes N + 1
channel quantities), as the consumers would get them. The broker hops and the channel
call are not in it: docs/BENCHMARKS.md's pipeline numbers cover those.

    .venv/bin/python bench/bundles_bench.py [--bundles 1000] [--runs 3] [--json bench/results/bundles.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from stocksync_common.contracts import ConnectionChanged, OrderLineMoved, StockChanged
from stocksync_common.db import make_engine
from stocksync_common.topics import STOCK_CHANGED
from stocksync_embedded.stack import Ports, Stack

from rule_engine.adapters.tables import connections as rule_connections
from rule_engine.adapters.unit_of_work import unit_of_work_factory as rule_engine_units
from rule_engine.service_layer.context import ConsumerContext
from rule_engine.service_layer.stock_changes import apply_stock_changes
from stock_ledger.adapters.tables import outbox
from stock_ledger.adapters.unit_of_work import unit_of_work_factory
from stock_ledger.service_layer.bundles import save_bundle
from stock_ledger.service_layer.connection_locations import apply_connection_changes
from stock_ledger.service_layer.order_lines import apply_order_lines
from stock_ledger.service_layer.snapshots import SnapshotRow, import_snapshot


async def one_run(engine: Any, bundles: int, run: int) -> dict[str, float]:
    merchant_id, connection_id = uuid.uuid4(), uuid.uuid4()
    units = unit_of_work_factory(engine)
    await apply_connection_changes(
        [
            ConnectionChanged(
                merchant_id=merchant_id,
                connection_id=connection_id,
                channel_type="generic",
                name="bench",
                active=True,
                causation_id="bench",
            )
        ],
        units(),
    )
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(rule_connections).values(
                connection_id=connection_id,
                merchant_id=merchant_id,
                channel_type="generic",
                name="bench",
                active=True,
                updated_at=datetime.now(UTC),
            )
        )

    async def rows() -> Any:
        # C is what limits every bundle: one unit of C sold changes all of them.
        yield SnapshotRow(1, "C", "default", 500, datetime.now(UTC) - timedelta(hours=1))
        for n in range(bundles):
            yield SnapshotRow(n + 2, f"PART-{n:05d}", "default", 1000, datetime.now(UTC) - timedelta(hours=1))

    await import_snapshot(units, merchant_id, rows())
    for n in range(bundles):
        await save_bundle(units(), merchant_id, f"KIT-{n:05d}", {"C": 1, f"PART-{n:05d}": 1})
    async with engine.connect() as conn:
        first_id = (await conn.execute(sa.select(sa.func.coalesce(sa.func.max(outbox.c.id), 0)))).scalar_one()

    order = OrderLineMoved(
        merchant_id=merchant_id,
        connection_id=connection_id,
        channel_type="generic",
        external_order_id=f"bench-{run}",
        line_id="1",
        sku="C",
        movement="placed",
        quantity=1,
        received_at=datetime.now(UTC),
        causation_id=f"bench:{run}",
    )
    started = time.perf_counter()
    changed = await apply_order_lines([order], units())
    ledger_done = time.perf_counter()
    async with engine.connect() as conn:
        payloads = (
            await conn.execute(
                sa.select(outbox.c.payload)
                .where(outbox.c.id > first_id, outbox.c.topic == STOCK_CHANGED.name)
                .order_by(outbox.c.id)
            )
        ).scalars()
        events = [StockChanged.model_validate_json(p) for p in payloads]
    read_done = time.perf_counter()
    after = [e for e in events if e.causation_id == order.causation_id]
    rules_started = time.perf_counter()
    emitted = await apply_stock_changes(after, ConsumerContext(rule_engine_units(engine)))
    rules_done = time.perf_counter()
    assert len(after) == bundles + 1 and emitted == bundles + 1, (len(after), emitted, len(changed))
    return {
        "ledger_s": ledger_done - started,
        "rule_engine_s": rules_done - rules_started,
        "total_s": (ledger_done - started) + (rules_done - rules_started),
        "outbox_read_s": read_done - ledger_done,
    }


async def run(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    engine = make_engine(stack.database_url or "", pool_size=2)
    try:
        runs = [await one_run(engine, args.bundles, n) for n in range(args.runs)]
    finally:
        await engine.dispose()
    return {
        "bundles": args.bundles,
        "runs": runs,
        "median_total_s": statistics.median(r["total_s"] for r in runs),
        "median_ledger_s": statistics.median(r["ledger_s"] for r in runs),
        "median_rule_engine_s": statistics.median(r["rule_engine_s"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bundles-bench-"))
    stack = Stack(home, Ports.free())
    try:
        stack.start_infrastructure()
        stack.migrate()
        results = asyncio.run(run(args, stack))
    finally:
        stack.stop()
    results["load_average_at_end"] = os.getloadavg()
    print(f"a component in {args.bundles} bundles, one order line of it, median of {args.runs} runs:")
    print(
        f"  ledger transaction {results['median_ledger_s'] * 1000:.0f} ms, rule engine batch "
        f"{results['median_rule_engine_s'] * 1000:.0f} ms, total {results['median_total_s'] * 1000:.0f} ms"
    )
    print(f"  load average at end: {results['load_average_at_end']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
