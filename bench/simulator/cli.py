"""`make simulate`: run every strategy on the same seeded day and write the table and plot.

    python -m bench.simulator [--seed 42] [--hours 24] [--buyers-per-hour 600] [--skus 2000]
                              [--buffer 3] [--intervals 5,15,60] [--bench-json bench/results/latest.json]

The event path's latency comes from the latest benchmark (the Stocksync run at the
lowest rate, its measured sync-window quantiles) when that file exists, else from the
documented default (log-normal, median 100 ms). Writes docs/simulator.md,
docs/img/simulator.png and bench/results/simulator.json; prints the table.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.simulator.model import (
    Catalogue,
    LatencySampler,
    Outcome,
    Scenario,
    default_latency_table,
    simulate,
    strategies,
)

REPO = Path(__file__).resolve().parents[2]
GRID = [q / 2 for q in range(0, 199)] + [99.5, 99.9, 100.0]


def latency_table(path: Path) -> tuple[list[float], list[float], str]:
    if path.exists():
        result = json.loads(path.read_text())
        runs = sorted(
            (
                r
                for r in result.get("runs", [])
                if r["kind"] == "stocksync" and not r["hot_sku"] and r.get("window_quantiles_ms")
            ),
            key=lambda r: r["rate"],
        )
        if runs:
            run = runs[0]
            source = (
                f"measured by `make bench` ({path.name}, {result['started_at'][:19]} UTC): the Stocksync "
                f"run at {run['rate']:g} orders/s, sync window p50 {run['window_ms']['p50']:.0f} ms, "
                f"p99 {run['window_ms']['p99']:.0f} ms"
            )
            return run["window_quantiles_ms"], GRID[: len(run["window_quantiles_ms"])], source
    values, grid = default_latency_table()
    return values, grid, "default (no benchmark result found): log-normal, median 100 ms, p99 about 400 ms"


def run(args: argparse.Namespace) -> dict[str, Any]:
    scenario = Scenario(
        seed=args.seed,
        hours=args.hours,
        buyers_per_hour=args.buyers_per_hour,
        catalogue=Catalogue(skus=args.skus, max_stock=args.max_stock),
    )
    values, grid, source = latency_table(args.bench_json)
    intervals = [float(x) for x in args.intervals.split(",") if x.strip()]
    outcomes: list[Outcome] = []
    for index, strategy in enumerate(strategies(intervals, args.buffer)):
        sampler = LatencySampler(values, grid, random.Random(args.seed * 1000 + index))
        outcomes.append(simulate(scenario, strategy, sampler))
    # The same event path with channels that show a quantity the moment they accept it:
    # what is left of the oversells above is then the channels' own latency.
    instant = replace(scenario, channels=tuple(replace(c, update_latency_s=0.0) for c in scenario.channels))
    event_path = next(s for s in strategies(intervals, args.buffer) if s.batch_interval_s is None and s.buffer is None)
    instant_outcome = simulate(instant, event_path, LatencySampler(values, grid, random.Random(args.seed)))
    return {
        "instant_channels_oversold_units": instant_outcome.oversold_units,
        "scenario": {
            "seed": args.seed,
            "hours": args.hours,
            "buyers_per_hour": args.buyers_per_hour,
            "skus": args.skus,
            "stock": f"1 to {args.max_stock} per SKU",
            "buffer": args.buffer,
            "channels": [c.__dict__ for c in scenario.channels],
        },
        "latency_source": source,
        "outcomes": [o.as_row() for o in outcomes],
    }


def table(result: dict[str, Any]) -> str:
    head = (
        "| strategy | orders | units sold | oversold units | cancelled orders | unsold because of the buffer "
        "| buyers turned away |"
    )
    rows = [head, "|---|---|---|---|---|---|---|"]
    for o in result["outcomes"]:
        rows.append(
            f"| {o['strategy']} | {o['orders']:,} | {o['units_sold']:,} | {o['oversold_units']:,} | "
            f"{o['cancelled_orders']:,} | {o['unsold_because_of_buffer']:,} | {o['turned_away']:,} |"
        )
    return "\n".join(rows)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outcomes = result["outcomes"]
    names = [o["strategy"] for o in outcomes]
    fig, ax = plt.subplots(figsize=(10, 5))
    y = range(len(names))
    height = 0.27
    ax.barh([i - height for i in y], [o["oversold_units"] for o in outcomes], height, label="oversold units")
    ax.barh(list(y), [o["cancelled_orders"] for o in outcomes], height, label="cancelled orders")
    ax.barh(
        [i + height for i in y],
        [o["unsold_because_of_buffer"] for o in outcomes],
        height,
        label="units unsold because of the buffer",
    )
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlabel(
        f"over {result['scenario']['hours']:g} h, {result['scenario']['buyers_per_hour']:g} buyers/h, "
        f"{result['scenario']['skus']} SKUs, seed {result['scenario']['seed']}"
    )
    ax.set_title("Oversells and buffer losses: batch sync against Stocksync's event path")
    ax.legend()
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: dict[str, Any], command: str) -> str:
    s = result["scenario"]
    channels = ", ".join(
        f"{c['name']} ({c['share']:.0%} of buyers, shows a quantity {c['update_latency_s']:g} s after accepting it)"
        for c in s["channels"]
    )
    return "\n".join(
        [
            "# The oversell simulator",
            "",
            "Generated by `make simulate` (`bench/simulator/`); do not edit by hand.",
            f"Command: `{command}`.",
            "",
            "## The day simulated",
            "",
            f"- {s['skus']:,} SKUs with {s['stock']} (low stock everywhere), Zipf-like popularity (s = 1).",
            f"- {s['buyers_per_hour']:g} buyers an hour over {s['hours']:g} hours, Poisson on each channel; "
            "nine in ten want one unit, one in ten two.",
            f"- Channels: {channels}. The channels' own latencies are assumptions, the same for every strategy.",
            "- A buyer buys only if the channel shows enough; the channel lowers its own listing on a sale. An order "
            "the stock cannot cover is cancelled by the merchant (one cancelled order; its missing units are "
            "oversold units). Units unsold because of the buffer: per SKU, the units still in stock at the end of "
            "the day that buyers asked for while the buffer rule hid them (the smaller of the two).",
            "- Batch sync: every N minutes the tool reads the stock and pushes it to every channel (Channable every "
            "5 min, Sellbrite 15 min, Lengow hourly).",
            "- Stocksync: after every change each channel is told after the event path's latency, "
            f"{result['latency_source']}.",
            f'- Buffer rule: "0 when quantity <= {s["buffer"]}" on every channel, evaluated by the rule engine\'s '
            "own code (`rule_engine.domain.rules.channel_quantity`).",
            f"- Seed {s['seed']}: every strategy sees the very same buyers, and a rerun gives the same table.",
            "",
            "## Results",
            "",
            table(result),
            "",
            f"With the event path, what oversells remain comes from the channels' own update latency: the same "
            f"run with channels that show a quantity the moment they accept it oversells "
            f"{result['instant_channels_oversold_units']} units.",
            "",
            "![simulator](img/simulator.png)",
            "",
            "## Reproduce",
            "",
            "```sh",
            "make simulate",
            'make simulate SIM_ARGS="--seed 7 --buyers-per-hour 1200 --buffer 2"',
            "```",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.simulator", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--buyers-per-hour", type=float, default=600.0)
    parser.add_argument("--skus", type=int, default=2000)
    parser.add_argument("--max-stock", type=int, default=12)
    parser.add_argument("--buffer", type=int, default=3)
    parser.add_argument("--intervals", default="5,15,60", help="batch intervals in minutes")
    parser.add_argument("--bench-json", type=Path, default=REPO / "bench" / "results" / "latest.json")
    parser.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write docs/simulator.md and docs/img/simulator.png",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    result = run(args)
    command = "python -m bench.simulator " + " ".join(argv if argv is not None else sys.argv[1:])
    print(table(result))
    print(f"\nevent path latency: {result['latency_source']} ({time.monotonic() - started:.1f} s)")
    if args.docs:
        (REPO / "bench" / "results").mkdir(parents=True, exist_ok=True)
        (REPO / "bench" / "results" / "simulator.json").write_text(json.dumps(result, indent=1))
        plot(result, REPO / "docs" / "img" / "simulator.png")
        (REPO / "docs" / "simulator.md").write_text(markdown(result, command.strip()))
    return result
