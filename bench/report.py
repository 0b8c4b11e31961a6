"""docs/BENCHMARKS.md and docs/img/bench_*.png, generated from a results JSON.

    python -m bench.report [bench/results/latest.json]

Everything in the page comes from the JSON: rerunning this on the same file gives the
same page.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from bench.targets import REPO

DOCS = REPO / "docs"
IMG = DOCS / "img"
QUANTILE_GRID = [q / 2 for q in range(0, 199)] + [99.5, 99.9, 100.0]


def _runs(result: dict[str, Any], kind: str, hot: bool = False) -> list[dict[str, Any]]:
    return sorted((r for r in result["runs"] if r["kind"] == kind and r["hot_sku"] == hot), key=lambda r: r["rate"])


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def plot(result: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMG.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(9, 5.5))
    cmap = plt.get_cmap("viridis")
    stock = [r for r in result["runs"] if r["kind"] == "stocksync"]
    rates = sorted({r["rate"] for r in result["runs"]})
    for run in stock + _runs(result, "floor"):
        values = run["window_quantiles_ms"]
        if not values:
            continue
        colour = cmap(rates.index(run["rate"]) / max(1, len(rates) - 1)) if run["rate"] in rates else "grey"
        style = ":" if run["hot_sku"] else ("--" if run["kind"] == "floor" else "-")
        label = f"{run['kind']} {run['rate']:g}/s" + (" hot SKU" if run["hot_sku"] else "")
        ax.plot([max(v, 0.1) for v in values], QUANTILE_GRID[: len(values)], style, color=colour, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("sync window: webhook sent to every channel showing the order (ms, log)")
    ax.set_ylabel("percentile of orders")
    ax.set_title("Sync window distribution per rate (solid Stocksync, dashed floor, dotted hot SKU)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = IMG / "bench_latency_cdf.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path.name)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for kind, marker in (("stocksync", "o"), ("floor", "s")):
        runs = _runs(result, kind)
        if not runs:
            continue
        x = [r["accepted_per_second"] for r in runs]
        axes[0].plot([r["rate"] for r in runs], x, marker=marker, label=kind)
        for key, style in (("p50", "-"), ("p99", "--")):
            axes[1].plot(x, [max(r["window_ms"][key], 0.1) for r in runs], style, marker=marker, label=f"{kind} {key}")
    top = max([r["rate"] for r in result["runs"]] + [1])
    axes[0].plot([0, top], [0, top], ":", color="grey", label="target")
    axes[0].set_xlabel("target orders/s")
    axes[0].set_ylabel("accepted orders/s")
    axes[0].set_title("Throughput")
    axes[0].legend(fontsize=8)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("accepted orders/s")
    axes[1].set_ylabel("sync window (ms, log)")
    axes[1].set_title("Throughput against latency")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = IMG / "bench_throughput_latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path.name)
    return written


def targets(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    stock = _runs(result, "stocksync")
    floor = {r["rate"]: r for r in _runs(result, "floor")}
    at = {r["rate"]: r for r in stock}
    out = []
    sustained = [r["accepted_per_second"] for r in stock if r["sustained"]]
    best = max(sustained, default=0.0)
    reached = (
        f"{_fmt(best)} orders/s (highest sustained run)"
        if sustained
        else f"no run sustained; at best {_fmt(max((r['accepted_per_second'] for r in stock), default=0.0))} "
        "accepted orders/s"
    )
    out.append(("at least 1,000 accepted orders/s sustained", reached, "met" if best >= 1000 else "missed"))
    skipped = set(result.get("stocksync_rates_skipped", []))

    def not_run(rate: float) -> str:
        return (
            "not run: a lower rate was not sustained (`--no-stop-early` runs it)"
            if rate in skipped
            else f"not run (add {rate:g} to --rates)"
        )

    if 100 in at:
        w = at[100]["window_ms"]
        ok = w["p50"] <= 50 and w["p99"] <= 250
        out.append(
            (
                "100 orders/s: p50 <= 50 ms, p99 <= 250 ms",
                f"p50 {_fmt(w['p50'])} ms, p99 {_fmt(w['p99'])} ms",
                "met" if ok else "missed",
            )
        )
    else:
        out.append(("100 orders/s: p50 <= 50 ms, p99 <= 250 ms", not_run(100), "-"))
    if 500 in at:
        w = at[500]["window_ms"]
        out.append(("500 orders/s: p99 <= 1 s", f"p99 {_fmt(w['p99'])} ms", "met" if w["p99"] <= 1000 else "missed"))
    else:
        out.append(("500 orders/s: p99 <= 1 s", not_run(500), "-"))
    ratios = [
        (rate, at[rate]["window_ms"]["p50"] / floor[rate]["window_ms"]["p50"])
        for rate in sorted(set(at) & set(floor))
        if floor[rate]["window_ms"]["p50"] > 0
    ]
    if ratios:
        worst = max(ratio for _, ratio in ratios)
        out.append(
            (
                "p50 at most 3 x the floor",
                ", ".join(f"{rate:g}/s: {ratio:.1f}x" for rate, ratio in ratios),
                "met" if worst <= 3 else "missed",
            )
        )
    if 500 in at:
        per_order = _cpu_ms_per_order(at[500])
        out.append(
            (
                "at most 3 ms of CPU per order at 500 orders/s (all but the generator)",
                f"{per_order:.1f} ms"
                + (f" (the floor {_cpu_ms_per_order(floor[500]):.1f} ms)" if 500 in floor else ""),
                "met" if per_order <= 3 else "missed",
            )
        )
    hot = {r["rate"]: r for r in _runs(result, "stocksync", hot=True)}
    if hot:
        rate = max(hot)
        out.append(
            (
                "the hot-SKU run sustained at 500 orders/s",
                f"run at {rate:g}/s (the highest sustained rate up to --hot-rate): "
                f"{_fmt(hot[rate]['accepted_per_second'])} accepted/s, "
                f"{'sustained' if hot[rate]['sustained'] else 'not sustained'}",
                "met" if rate >= 500 and hot[rate]["sustained"] else "missed",
            )
        )
    all_runs = [r for r in result["runs"] if r["kind"] == "stocksync"]
    lost = sum(r.get("lost_or_extra_units", 0) for r in all_runs)
    wrong = sum(r.get("channel_mismatch_count", 0) for r in all_runs)
    disorder = sum(r.get("published_out_of_order", 0) for r in all_runs)
    out.append(
        (
            "zero lost or extra units and no quantity published out of order in every run",
            f"{lost} units off in the ledger, {wrong} channel quantities off, {disorder} quantities published "
            f"out of order, over {len(all_runs)} runs with {_instances(result)} of every service",
            "met" if lost == 0 and wrong == 0 and disorder == 0 else "missed",
        )
    )
    return out


def _cpu_ms_per_order(run: dict[str, Any]) -> float:
    total = sum(float(v["cpu_seconds"]) for name, v in run["resources"].items() if name != "load generator")
    return 1000 * total / max(int(run["orders"]), 1)


def _run_row(r: dict[str, Any], floor: dict[float, dict[str, Any]]) -> str:
    w = r["window_ms"]
    ratio = "-"
    base = floor.get(r["rate"]) if r["kind"] == "stocksync" and not r["hot_sku"] else None
    if base is not None and base["window_ms"]["p50"] > 0:
        ratio = f"{w['p50'] / floor[r['rate']]['window_ms']['p50']:.1f}x"
    units = (
        "-"
        if "lost_or_extra_units" not in r
        else f"{r['lost_or_extra_units']} / {r['channel_mismatch_count']} / {r.get('published_out_of_order', '-')}"
    )
    return (
        f"| {r['kind']}{' (hot SKU)' if r['hot_sku'] else ''} | {r['rate']:g} | {r['accepted']}/{r['orders']} | "
        f"{_fmt(r['accepted_per_second'])} | {_fmt(r['ack_ms']['p50'])} / {_fmt(r['ack_ms']['p99'])} | "
        f"{_fmt(w['p50'])} | {_fmt(w['p90'])} | {_fmt(w['p99'])} | {_fmt(w['p99.9'])} | {_fmt(w['max'])} | "
        f"{ratio} | {r['drain_seconds']} | {units} | {r.get('shed_requests', 0)} / {r.get('shed_orders', 0)} | "
        f"{'yes' if r['sustained'] else 'no'} |"
    )


def _stage_lines(result: dict[str, Any]) -> list[str]:
    runs = [
        r
        for r in result["runs"]
        if r["kind"] == "stocksync" and isinstance(r.get("stages_ms"), dict) and "error" not in r["stages_ms"]
    ]
    if not runs:
        return []
    labels = list(runs[0]["stages_ms"])
    out = [
        "### Where the latency goes",
        "",
        "Time from order-ingest's receipt of the webhook until each hop sent its event (broker record time; "
        "`bench/stages.py`), per event, p50 / p99 in ms. Each hop includes the ones before it.",
        "",
        "| run | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for r in runs:
        cells = [
            f"{_fmt(r['stages_ms'][k].get('p50'))} / {_fmt(r['stages_ms'][k].get('p99'))}"
            if r["stages_ms"].get(k)
            else "-"
            for k in labels
        ]
        out.append(f"| {r['rate']:g}/s{' hot SKU' if r['hot_sku'] else ''} | " + " | ".join(cells) + " |")
    return [*out, ""]


def markdown(result: dict[str, Any], images: list[str]) -> str:
    m = result["machine"]
    s = result["settings"]
    floor = {r["rate"]: r for r in _runs(result, "floor")}
    runs = _runs(result, "stocksync") + _runs(result, "stocksync", hot=True) + _runs(result, "floor")
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/report.py` from `bench/results/latest.json`; do not edit by hand.",
        f"Produced by `make bench` (`{result['command']}`) on {result['started_at'][:19]} UTC, "
        f"{result['elapsed_seconds']} s in all.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu_model']}, {m['logical_cores']} logical cores ({m['physical_cores']} physical)",
        f"- Memory: {m['memory_gb']} GB; {m['os']}",
        f"- Python {m['python']}; PostgreSQL {m['postgresql']}; broker: {m['broker']}",
        f"- Load average (1, 5, 15 min) at start {', '.join(f'{x:.1f}' for x in m['load_average_at_start'])}, "
        f"at end {', '.join(f'{x:.1f}' for x in m['load_average_at_end'])}. A load average above the core count "
        "means other work shared the CPUs during the run and the figures below are disturbed.",
        "- Everything co-located: PostgreSQL, the broker, the four services, two sandbox Shopify stores, the "
        "floor's four processes and the load generator.",
        f"- Instances: {_instances(result)} of every Stocksync service"
        + (
            " (same database, broker and consumer groups; the generator sends to each order-ingest in turn, "
            "a resend to the next one)."
            if _instances(result) > 1
            else "."
        ),
        "",
        "## What is measured",
        "",
        f"- Load: signed Shopify `orders/create` webhooks sent by a load generator in its own process straight "
        f"to order-ingest, on an open-loop schedule (order i leaves at start + i/rate whatever the answers), "
        f"{s['duration']:g} s per rate; 1 to 5 lines per order, {s['skus']} SKUs with Zipf-like popularity "
        f"(s = 1.1); the hot-SKU run puts {s['hot_fraction']:.0%} of orders on one SKU. Seed {s['seed']}.",
        f"- Each Stocksync run has a fresh merchant with {s['channels']} sandbox Shopify stores (the orders come "
        f'from the first; every store receives the new quantities), the rule "0 when quantity <= 3" on every '
        f"channel, and a snapshot of {s['on_hand']:,} units per SKU so that stock never runs out. The sandbox "
        f"stores run at Shopify Plus limits: restore rate {s['restore_rate']:g} points/s, bucket "
        f"{s['bucket_size']:g} points (a Standard store restores 100 points/s). order-ingest runs with "
        f"`WEBHOOK_RATE_LIMIT=100000`: the default of 100 webhooks/s per connection would answer 429 above "
        f"100 orders/s, since every order comes from one store.",
        "- **Sync window** (per order): from the generator sending the webhook until every channel shows, for "
        "every SKU of the order, a quantity at or below what it should show once the ledger has applied that "
        "order and every order sent before it (the channel's own `received_at`, from `/_sandbox/changes`). "
        "One push coalescing several orders ends the window of each of them. The publisher's own figure "
        "(`sync_window_ms` per push, ingest receipt to channel accepted, also the "
        "`stocksync_sync_window_seconds` histogram) is in the JSON as `publisher_window_ms`.",
        "- **Accepted orders/s**: orders answered 2xx (`accepted` or `stored`) over first send to last answer. "
        f"A rate is *sustained* when every order is accepted, that rate is at least "
        f"{95}% of the target, and every channel is right within 5 s of the last answer.",
        "- **Units**: after the drain, every SKU's `reserved` in the ledger (`GET /v1/stock/{sku}`) must equal "
        "the units of the accepted orders, and every channel must show the rule applied to the ledger's "
        "`available`. Stock only falls during a run, so each quantity a channel receives must be at or below "
        "the one before it: a rise is a quantity published out of order (an older one overtaking a newer). "
        "The table gives ledger units off / channel quantities off / quantities out of order.",
        "- **Floor**: `bench/floor/`, the same hops with no business logic (HTTP in with uvicorn + FastAPI, "
        "produce, consume, one PostgreSQL commit per batch, produce, consume, one HTTP POST per channel to a "
        "sink), same broker, same PostgreSQL, same client settings, same load, measured the same way.",
        "",
        "## Targets",
        "",
        "| target | reached | |",
        "|---|---|---|",
        *[f"| {name} | {value} | {verdict} |" for name, value, verdict in targets(result)],
        "",
        "## Runs",
        "",
        "Times in ms. `ack` is the webhook's answer time seen by the generator (p50 / p99), from the "
        "order's first send to its final answer. `shed` counts the 503 + Retry-After answers of an "
        "order-ingest over `WEBHOOK_MAX_IN_FLIGHT` (requests / orders): the generator resends them as "
        "Shopify does, and every order must still be applied exactly once.",
        "",
        "| run | target/s | accepted | accepted/s | ack p50 / p99 | p50 | p90 | p99 | p99.9 | max | p50 vs floor "
        "| drain s | units off (ledger / channels) / out of order | shed | sustained |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[_run_row(r, floor) for r in runs],
        "",
        *(
            [
                f"Stocksync was not run at {', '.join(f'{x:g}' for x in result['stocksync_rates_skipped'])} orders/s: "
                "a lower rate was not sustained, and its backlog would have disturbed every higher rate (the floor "
                "ran at those rates). `--no-stop-early` runs them anyway.",
                "",
            ]
            if result.get("stocksync_rates_skipped")
            else []
        ),
        *_stage_lines(result),
        *[f"![{name}](img/{name})" for name in images],
        "",
        "## CPU and peak memory per process",
        "",
        "Average cores used over each run's load window and peak resident memory (PostgreSQL: the server and "
        "its backends).",
        "",
    ]
    if m.get("idle"):
        lines.append(
            "- idle stack, no load (the fixed cost that the per-order figures below include): "
            + "; ".join(
                f"{name} {v['cpu_cores']:.2f} cores, {v['peak_rss_mb']:.0f} MB" for name, v in m["idle"].items()
            )
        )
    for r in runs:
        lines.append(
            f"- {r['kind']} {r['rate']:g}/s{' hot SKU' if r['hot_sku'] else ''}: "
            + "; ".join(
                f"{name} {v['cpu_cores']:.2f} cores ({1000 * v['cpu_seconds'] / max(r['orders'], 1):.1f} ms/order), "
                f"{v['peak_rss_mb']:.0f} MB"
                for name, v in r["resources"].items()
            )
            + f". **All but the generator: {_cpu_ms_per_order(r):.1f} ms of CPU per order.**"
        )
    profile_path = REPO / "bench" / "results" / "latest-profile.json"
    profile_result = json.loads(profile_path.read_text()) if profile_path.exists() else result
    profiled = [r for r in profile_result["runs"] if r.get("profile")]
    if profiled:
        lines += [
            "",
            "## Where the time goes (py-spy)",
            "",
            f"From `{profile_result['command']}` ({profile_result['started_at'][:19]} UTC, load average "
            f"{profile_result['machine']['load_average_at_start'][0]:.1f} at start; the profiler itself "
            "costs CPU, so its run is kept apart from the numbers above). CPU per order is each "
            "service's CPU seconds over the orders of the run. Then the share of py-spy samples per "
            "innermost project function (file:line) during the load window.",
            "",
        ]
        for r in profiled:
            per_order = ", ".join(
                f"{name} {1000 * v['cpu_seconds'] / max(r['orders'], 1):.1f} ms" for name, v in r["resources"].items()
            )
            lines.append(f"- {r['rate']:g}/s, CPU per order: {per_order}")
        lines.append("")
        for r in profiled:
            for service, p in r["profile"].items():
                top = ", ".join(f"{frame} {pct}%" for frame, pct in p["project_frames_pct"][:5])
                lines.append(f"- {r['rate']:g}/s {service} ({p['samples']} samples): {top}")
    findings = REPO / "bench" / "findings.md"
    if findings.exists() and _instances(result) == 1:
        lines += ["", findings.read_text().strip()]
    lines += [
        "",
        "## Reproduce",
        "",
        "```sh",
        "make bench                                            # the default run (rates, hot SKU, highest rate)",
        'make bench BENCH_ARGS="--rates 50,200 --duration 20"  # other rates and durations',
        'make bench BENCH_ARGS="--profile cpu"                 # py-spy every service during the runs',
        'make bench BENCH_ARGS="--instances 2"                 # two of every service: docs/BENCHMARKS-instances.md',
        "python -m bench.report bench/results/<file>.json      # this page from another result",
        "```",
        "",
        "Set `DATABASE_URL` and `KAFKA_BOOTSTRAP_SERVERS` to measure on real servers instead of the embedded ones.",
        "",
    ]
    return "\n".join(lines)


def _instances(result: dict[str, Any]) -> int:
    return int(result["settings"].get("instances", 1))


def write_report(result: dict[str, Any]) -> Path:
    """docs/BENCHMARKS.md (and its plots), or docs/BENCHMARKS-instances.md for a run with
    several instances of every service."""
    if _instances(result) > 1:
        path = DOCS / "BENCHMARKS-instances.md"
        path.write_text(markdown(result, []))
        print(f"report: {path}", file=sys.stderr)
        return path
    images = plot(result)
    path = DOCS / "BENCHMARKS.md"
    path.write_text(markdown(result, images))
    print(f"report: {path}", file=sys.stderr)
    return path


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "bench" / "results" / "latest.json"
    write_report(json.loads(source.read_text()))
