"""Console page times for a merchant with 100,000 SKUs (issue 14's target: under 300 ms a page).

Starts the whole stack (embedded PostgreSQL and broker unless DATABASE_URL and
KAFKA_BOOTSTRAP_SERVERS name running servers; the four services, the gateway, the
console), creates a merchant and two channel connections through the API, then fills
what the pages read, in the services' own tables (the read path is measured, not the
pipeline that would take minutes to produce it): 100,000 stock rows with a ledger entry
each, and per channel the quantity last accepted for every SKU and 300,000 pushes of
history over the last day (the last hour's among them). Another merchant's 100,000 rows
sit in the same tables, so that an unindexed plan would show.

Each page is fetched through the gateway with a signed-in session, as a browser does,
`--runs` times after one warm-up; the figures are the median and the 95th percentile of
the whole answer (the console's own API calls included).

    .venv/bin/python -m bench.console_bench [--skus 100000] [--runs 40]

Writes docs/BENCHMARKS-console.md and bench/results/console.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from stocksync_common.db import make_engine
from stocksync_embedded.stack import Ports, Stack

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "docs" / "BENCHMARKS-console.md"
RESULTS = REPO / "bench" / "results" / "console.json"
TARGET_MS = 300.0
PUSHES_PER_CHANNEL = 150_000


def fill_sql(skus: int) -> list[str]:
    """Statements that fill one merchant's stock, ledger, last-sent quantities and push history."""
    sku = "'SKU-' || lpad(i::text, 6, '0')"
    return [
        # Stock: on_hand 0..99, reserved 0..4, updated over the last day.
        f"""INSERT INTO stock_ledger.stock_items
            (merchant_id, sku, location, on_hand, reserved, version, updated_at, snapshot_as_of)
            SELECT :merchant_id, {sku}, 'default', (i * 37) % 100, (i * 7) % 5, 2,
                   now() - make_interval(secs => (i * 13) % 86400), NULL
            FROM generate_series(1, {skus}) AS i""",
        f"""INSERT INTO stock_ledger.ledger_entries
            (merchant_id, sku, location, causation_id, kind, quantity, delta_on_hand, delta_reserved, version)
            SELECT :merchant_id, {sku}, 'default', 'bench-snapshot:' || i, 'snapshot', (i * 37) % 100,
                   (i * 37) % 100, 0, 1
            FROM generate_series(1, {skus}) AS i""",
        f"""INSERT INTO channel_publisher.last_sent (connection_id, sku, location, version, quantity, sent_at)
            SELECT c, {sku}, 'default', 1, greatest((i * 37) % 100 - (i * 7) % 5, 0), now() - interval '1 hour'
            FROM generate_series(1, {skus}) AS i, unnest(CAST(:connections AS uuid[])) AS c""",
        f"""INSERT INTO channel_publisher.pushes
            (merchant_id, connection_id, sku, location, quantity, version, stock_version, rule_ids, causation_id,
             status, attempts, channel_response, origin_received_at, finished_at, sync_window_ms)
            SELECT :merchant_id, c, 'SKU-' || lpad((1 + (i * 7919) % {skus})::text, 6, '0'), 'default', i % 50,
                   1, 1, '{{}}', 'bench:' || i,
                   CASE WHEN i % 97 = 0 THEN 'rejected' ELSE 'accepted' END, 1,
                   CASE WHEN i % 97 = 0 THEN 'SKU not found on the channel' ELSE NULL END,
                   now() - make_interval(secs => {PUSHES_PER_CHANNEL} - i),
                   now() - make_interval(secs => ({PUSHES_PER_CHANNEL} - i) * 86400.0 / {PUSHES_PER_CHANNEL}),
                   120 + i % 400
            FROM generate_series(1, {PUSHES_PER_CHANNEL}) AS i, unnest(CAST(:connections AS uuid[])) AS c""",
    ]


async def fill(database_url: str, merchant_id: str, other_id: str, connections: list[str], skus: int) -> None:
    engine = make_engine(database_url, 2)
    try:
        async with engine.begin() as conn:
            for merchant in (merchant_id, other_id):
                mine = merchant == merchant_id
                for statement in fill_sql(skus) if mine else fill_sql(skus)[:1]:
                    params: dict[str, Any] = {"merchant_id": uuid.UUID(merchant)}
                    if ":connections" in statement:
                        params["connections"] = [uuid.UUID(c) for c in connections]
                    await conn.execute(sa.text(statement), params)
        async with engine.begin() as conn:
            for table in ("stock_ledger.stock_items", "stock_ledger.ledger_entries", "channel_publisher.pushes"):
                await conn.execute(sa.text(f"ANALYZE {table}"))
            await conn.execute(sa.text("ANALYZE channel_publisher.last_sent"))
    finally:
        await engine.dispose()


def sign_in(client: httpx.Client, api_key: str) -> None:
    page = client.get("/console/sign-in")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None, page.text[:500]
    answer = client.post("/console/sign-in", data={"csrf": token.group(1), "api_key": api_key})
    assert answer.status_code == 303, answer.text[:500]


def time_page(client: httpx.Client, path: str, runs: int) -> dict[str, Any]:
    first = client.get(path)  # warm-up: connections, caches, prepared statements
    assert first.status_code == 200, (path, first.status_code, first.text[:500])
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 1),
        "p95_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 1),
        "max_ms": round(samples[-1], 1),
        "runs": runs,
        "bytes": len(first.content),
    }


def report(results: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {name} | `{r['path']}` | {r['median_ms']:.0f} | {r['p95_ms']:.0f} | {r['max_ms']:.0f} | "
        f"{'yes' if r['p95_ms'] < TARGET_MS else '**no**'} |"
        for name, r in results["pages"].items()
    )
    return f"""# Console page times with {results["skus"]:,} SKUs

<!-- Generated by `make bench-console` (bench/console_bench.py); do not edit by hand. -->

Each page fetched through the gateway with a signed-in session, as a browser does:
{results["runs"]} times after one warm-up; the whole answer, the console's own API calls
included. The merchant has {results["skus"]:,} SKUs (and another merchant as many in the
same tables), two channels with the quantity last accepted for every SKU, and
{2 * PUSHES_PER_CHANNEL:,} pushes of history over the last day. Target: under
{TARGET_MS:.0f} ms a page (issue 14).

Measured {results["measured_at"]} on {results["cpus"]} CPUs shared with other work (load
average {results["load_before"]} before, {results["load_after"]} after): every process of
the stack on the same machine.

| page | path | median ms | p95 ms | max ms | p95 under {TARGET_MS:.0f} ms |
|---|---|---|---|---|---|
{rows}

How the stock list stays fast: `GET /v1/stock` pages by keyset (`cursor`), and an index
walks each page in the order asked (by SKU in byte order, by available, by updated_at;
on_hand and reserved by a bounded top-N sort), see docs/console.md.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--no-write", action="store_true", help="Print the results; write no file.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="stocksync-console-bench-") as home:
        stack = Stack(Path(home), Ports.free())
        try:
            stack.start_infrastructure()
            stack.migrate()
            stack.start_services()
            assert stack.database_url is not None
            admin = {"Authorization": f"Bearer {stack.admin_token}"}
            with httpx.Client(base_url=stack.base_url, timeout=60) as api:
                merchant = api.post("/v1/merchants", json={"name": "console bench"}, headers=admin).json()
                other = api.post("/v1/merchants", json={"name": "another"}, headers=admin).json()
                key = {"X-API-Key": merchant["api_key"]}
                connections = []
                for name in ("C1", "C2"):
                    created = api.post(
                        "/v1/connections",
                        headers=key,
                        json={
                            "type": "generic",
                            "name": name,
                            "base_url": "http://127.0.0.1:9",
                            "credentials": {"signing_secret": "whsec_" + "a" * 32},
                            "webhook_secret": "whsec_" + "b" * 32,
                        },
                    )
                    assert created.status_code == 201, created.text
                    connections.append(created.json()["connection_id"])
            filled = time.perf_counter()
            asyncio.run(fill(stack.database_url, merchant["merchant_id"], other["merchant_id"], connections, args.skus))
            print(f"filled in {time.perf_counter() - filled:.0f} s")

            load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
            middle = f"SKU-{args.skus // 2:06d}"
            pages = {
                "stock list, first page": "/console/stock",
                "stock sorted by available": "/console/stock?sort=available&order=asc",
                "stock sorted by updated_at, newest": "/console/stock?sort=updated_at&order=desc",
                "stock sorted by on_hand (no index)": "/console/stock?sort=on_hand&order=desc",
                "search by SKU prefix": f"/console/stock?q={middle[:-2]}",
                "SKU page": f"/console/stock/{middle}",
                "channels": "/console/channels",
                "channel history and errors": f"/console/channels/{connections[0]}",
                "live": "/console/live",
            }
            results: dict[str, Any] = {
                "skus": args.skus,
                "runs": args.runs,
                "cpus": os.cpu_count(),
                "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "pages": {},
            }
            with httpx.Client(base_url=stack.base_url, timeout=60) as browser:
                sign_in(browser, merchant["api_key"])
                for name, path in pages.items():
                    results["pages"][name] = {"path": path, **time_page(browser, path, args.runs)}
                    print(f"{name:40} {results['pages'][name]}")
            results["load_before"] = load_before
            results["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        finally:
            stack.stop()
    if not args.no_write:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        REPORT.write_text(report(results))
        print(f"wrote {REPORT.relative_to(REPO)} and {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
