"""Where the time goes: py-spy on each service while the load runs (`--profile`).

py-spy samples the running process from outside (no change to the service). With
`--idle` the samples include time spent waiting (for the database, the broker, a lock),
which is what a latency question needs. The raw output (collapsed stacks) is kept under
bench/results/; the summary lists, for each service, the project functions (innermost
frame in services/ or libs/) that hold the most samples, with their share.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT_MARKERS = ("order_ingest/", "stock_ledger/", "rule_engine/", "channel_publisher/", "stocksync_common/")


def py_spy() -> str | None:
    return shutil.which("py-spy") or (
        str(Path(sys.executable).parent / "py-spy") if (Path(sys.executable).parent / "py-spy").exists() else None
    )


def start(pids: dict[str, int], seconds: float, out_dir: Path, label: str, idle: bool) -> list[tuple[str, Path, Any]]:
    binary = py_spy()
    if binary is None:
        print("py-spy not installed: no profile (pip install py-spy)", file=sys.stderr)
        return []
    running = []
    for name, pid in pids.items():
        path = out_dir / f"profile-{label}-{name}{'-idle' if idle else ''}.txt"
        args = [
            binary,
            "record",
            "-p",
            str(pid),
            "-d",
            str(int(seconds)),
            "-r",
            "100",
            "-f",
            "raw",
            "-o",
            str(path),
            "--nonblocking",
        ]
        if idle:
            args.append("--idle")
        running.append((name, path, subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    return running


def finish(running: list[tuple[str, Path, Any]], top: int = 8) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, path, process in running:
        process.wait(timeout=120)
        if path.exists():
            summary[name] = summarise(path.read_text(), top)
    return summary


def summarise(collapsed: str, top: int = 8) -> dict[str, Any]:
    by_project: dict[str, int] = {}
    by_leaf: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        by_leaf[frames[-1]] = by_leaf.get(frames[-1], 0) + count
        # A stack with no project frame at all is a greenlet's: SQLAlchemy's async layer runs
        # statement compilation, execution and result processing on greenlets.
        project = next(
            (f for f in reversed(frames) if any(m in f for m in PROJECT_MARKERS)),
            "(greenlet stacks: SQLAlchemy executing statements)",
        )
        if project.startswith("main (stocksync_common/cli.py"):
            # Only the entry point on the stack: uvicorn, starlette, aiokafka, the event loop.
            project = "(frameworks and event loop: uvicorn, starlette, aiokafka, asyncio)"
        by_project[project] = by_project.get(project, 0) + count

    def ranked(counts: dict[str, int]) -> list[list[Any]]:
        return [[frame, round(100 * n / total, 1)] for frame, n in sorted(counts.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": total, "project_frames_pct": ranked(by_project), "leaf_frames_pct": ranked(by_leaf)}
