"""A tiny run of the benchmark harness: a few orders through Stocksync and the floor.

It checks the harness, not the speed (speed is what `make bench` reports): every order
is accepted, every unit is where the ledger says, every order gets a sync window.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def tiny_run(tmp_path: Path, *args: str) -> dict[str, Any]:
    """A bench run of 2 s at a few orders/s, no hot SKU, no report; `args` add to or override those."""
    from bench.run import main

    defaults = ["--rates", "5", "--duration", "2", "--hot-rate", "0", "--no-find-max", "--no-report"]
    where = ["--quiet", "--drain-timeout", "120", "--out", str(tmp_path), "--home", str(tmp_path / "home")]
    path = main([*defaults, "--skus", "5", *where, *args])
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def test_a_tiny_bench_run_accounts_for_every_unit(tmp_path: Path) -> None:
    result = tiny_run(tmp_path)
    stocksync = next(r for r in result["runs"] if r["kind"] == "stocksync")
    floor = next(r for r in result["runs"] if r["kind"] == "floor")
    print(json.dumps(result["runs"], indent=1)[:6000])  # shown by pytest when an assertion fails
    assert stocksync["accepted"] == stocksync["orders"] == 10
    assert stocksync["drained"]
    assert (stocksync["lost_or_extra_units"], stocksync["channel_mismatch_count"]) == (0, 0)
    assert stocksync["windows_missing"] == 0 and stocksync["window_ms"]["count"] == 10
    assert stocksync["window_ms"]["p50"] > 0
    assert {"order-ingest", "stock-ledger", "rule-engine", "channel-publisher"} <= set(stocksync["resources"])
    stages = stocksync["stages_ms"]
    assert stages["ingest: receipt to orders.v1"]["count"] >= 10  # one event per line
    assert stages["ingest: receipt to orders.v1"]["p50"] <= stages["rules: receipt to channel.quantity.v1"]["p50"]
    assert stocksync["publisher_histogram"]["pushes"] > 0
    assert floor["accepted"] == floor["orders"] == 10
    assert floor["drained"] and floor["windows_missing"] == 0
    assert (tmp_path / "latest.json").exists()


def test_a_tiny_run_with_two_instances_of_every_service_accounts_for_every_unit_in_order(tmp_path: Path) -> None:
    result = tiny_run(tmp_path, "--instances", "2", "--rates", "10", "--no-floor", "--skus", "3")
    (run,) = result["runs"]
    print(json.dumps(run, indent=1)[:6000])  # shown by pytest when an assertion fails
    assert result["settings"]["instances"] == 2
    # Both instances of each service ran (and were sampled).
    assert {f"{s} #2" for s in ("order-ingest", "stock-ledger", "rule-engine", "channel-publisher")} <= set(
        run["resources"]
    )
    assert run["accepted"] == run["orders"] == 20 and run["drained"]
    assert (run["lost_or_extra_units"], run["channel_mismatch_count"], run["published_out_of_order"]) == (0, 0, 0)
    assert run["windows_missing"] == 0
    assert (tmp_path / "latest-instances.json").exists() and not (tmp_path / "latest.json").exists()
