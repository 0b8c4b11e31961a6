"""`make soak`: mixed order traffic with faults on a timer, and the account after each.

    python -m bench.soak [--minutes 30] [--rate 20] [--outage-s 30] [--no-doc]

Starts a supervised Stocksync of its own (bench.faults.FaultStack) and, until the time
is up, runs the faults in turn, each with order traffic before, during and after it:
each service SIGKILLed, several random SIGKILLs, the broker frozen for `--outage-s` then
replaced by a new empty one, PostgreSQL stopped as by a crash, a channel answering 500
then 429, and a quiet run. After
each: orders sent and accepted, units lost and double-counted (both must be 0), dead
letters, time to converge. Writes bench/results/soak.json and rewrites the table of
docs/RELIABILITY.md; exits 1 if any unit was lost or double-counted or a run did not
converge.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.faults import (
    SERVICES,
    FaultStack,
    Figures,
    broker_outage,
    channel_errors,
    kill_service,
    kill_services_at_random,
    restart_postgres,
)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "soak.json"
DOC = REPO / "docs" / "RELIABILITY.md"
TABLE_START = "<!-- soak table: start -->"
TABLE_END = "<!-- soak table: end -->"


def nothing(_: FaultStack) -> None:
    """No fault: the baseline."""


def schedule(outage_s: float, seed: int) -> list[tuple[str, Callable[[FaultStack], None]]]:
    """Finding 3 and the broker first, so that a short soak covers the worst faults."""
    return [
        ("stock-ledger SIGKILL", kill_service("stock-ledger")),
        (f"broker frozen {outage_s:g} s, then a new empty broker", broker_outage(outage_s)),
        ("3 random SIGKILLs", kill_services_at_random(3, seed)),
        ("PostgreSQL restarted", restart_postgres),
        ("C2 answers 500 x2, 429 x2, then hangs x2", channel_errors(2)),
        *[(f"{name} SIGKILL", kill_service(name)) for name in SERVICES if name != "stock-ledger"],
        ("no fault", nothing),
    ]


def summary(figures: list[Figures]) -> list[dict[str, Any]]:
    """One row per fault kind, summed over its runs (the slowest convergence)."""
    rows: dict[str, dict[str, Any]] = {}
    for f in figures:
        row = rows.setdefault(
            f.fault,
            {
                "fault": f.fault,
                "runs": 0,
                "orders_sent": 0,
                "orders_accepted": 0,
                "units_lost": 0,
                "units_double_counted": 0,
                "dead_letters": None,
                "converge_s_max": 0.0,
                "all_converged": True,
            },
        )
        row["runs"] += 1
        for key in ("orders_sent", "orders_accepted", "units_lost", "units_double_counted"):
            row[key] += getattr(f, key)
        if f.dead_letters is not None:
            row["dead_letters"] = max(row["dead_letters"] or 0, f.dead_letters)
        if f.converge_s is None:
            row["all_converged"] = False
        else:
            row["converge_s_max"] = max(row["converge_s_max"], f.converge_s)
    return list(rows.values())


def table(rows: list[dict[str, Any]], started: datetime, minutes: float, rate: float) -> str:
    lines = [
        TABLE_START,
        f"Last run: {started:%Y-%m-%d %H:%M} UTC, {minutes:.1f} minutes from start to end (setup included), "
        f"{rate:g} orders/s (`python -m bench.soak`, written by it).",
        "",
        "| fault | runs | orders sent | accepted | units lost | units double-counted | dead letters "
        "| time to converge (max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        converge = f"{r['converge_s_max']:.1f} s" if r["all_converged"] else "did not converge"
        dead = "n/a" if r["dead_letters"] is None else str(r["dead_letters"])
        lines.append(
            f"| {r['fault']} | {r['runs']} | {r['orders_sent']} | {r['orders_accepted']} | {r['units_lost']} "
            f"| {r['units_double_counted']} | {dead} | {converge} |"
        )
    lines.append(TABLE_END)
    return "\n".join(lines)


def rewrite_doc(text: str) -> None:
    doc = DOC.read_text()
    start, end = doc.index(TABLE_START), doc.index(TABLE_END) + len(TABLE_END)
    DOC.write_text(doc[:start] + text + doc[end:])


def report(
    figures: list[Figures], started: datetime, args: argparse.Namespace, *, write_doc: bool
) -> list[dict[str, Any]]:
    rows = summary(figures)
    minutes = (datetime.now(UTC) - started).total_seconds() / 60
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "minutes": round(minutes, 1),
                "rate": args.rate,
                "runs": [f.as_dict() for f in figures],
                "summary": rows,
            },
            indent=2,
        )
    )
    if write_doc:
        rewrite_doc(table(rows, started, minutes, args.rate))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to keep running faults")
    parser.add_argument("--rate", type=float, default=20.0, help="orders per second")
    parser.add_argument("--outage-s", type=float, default=30.0, help="how long the broker stays frozen")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/RELIABILITY.md")
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    home = Path(tempfile.mkdtemp(prefix="stocksync-soak-"))
    faults = FaultStack(home).start()
    deadline = time.monotonic() + args.minutes * 60
    plan = schedule(args.outage_s, args.seed)
    try:
        run = 0
        while time.monotonic() < deadline:
            name, fault = plan[run % len(plan)]
            faults.run(name, fault, rate=args.rate, before_s=5, after_s=5, seed=args.seed + run)
            run += 1
            # Written after every run, so that a soak cut short still reports.
            rows = report(faults.figures, started, args, write_doc=not args.no_doc)
    finally:
        faults.stop()
    rows = report(faults.figures, started, args, write_doc=not args.no_doc)
    print(table(rows, started, (datetime.now(UTC) - started).total_seconds() / 60, args.rate))
    failed = any(r["units_lost"] or r["units_double_counted"] or not r["all_converged"] for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
