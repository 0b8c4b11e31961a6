"""The benchmark's own checks: what counts as a quantity published out of order, and the
targets table's rows for CPU per order and the hot-SKU run."""

from __future__ import annotations

from typing import Any

from bench.targets import published_out_of_order


def test_a_quantity_above_the_one_before_it_on_the_same_channel_and_sku_is_out_of_order() -> None:
    series = {
        "C1": {"SKU-A": [(1.0, 10), (2.0, 9), (3.0, 9), (4.0, 0)], "SKU-B": [(1.0, 5), (2.0, 7), (3.0, 4)]},
        "C2": {"SKU-A": [(1.5, 10), (2.5, 0)]},
    }
    found = published_out_of_order(series)
    assert found == [{"channel": "C1", "sku": "SKU-B", "received_at": 2.0, "quantity": 7, "after": 5}]


def test_falling_or_repeated_quantities_and_other_skus_are_in_order() -> None:
    series = {"C1": {"SKU-A": [(1.0, 3), (2.0, 3), (3.0, 0)]}, "C2": {"SKU-A": [(1.0, 9)], "SKU-B": []}}
    assert published_out_of_order(series) == []


def _run(
    kind: str, rate: float, cpu_seconds: float, orders: int, *, hot: bool = False, sustained: bool = True
) -> dict[str, Any]:
    return {
        "kind": kind,
        "rate": rate,
        "hot_sku": hot,
        "orders": orders,
        "sustained": sustained,
        "accepted_per_second": rate,
        "window_ms": {"p50": 10.0, "p99": 20.0},
        "resources": {"order-ingest": {"cpu_seconds": cpu_seconds}, "load generator": {"cpu_seconds": 99.0}},
    }


def test_the_targets_table_reports_cpu_per_order_at_500_and_the_hot_sku_run() -> None:
    from bench.report import targets

    result = {
        "runs": [
            _run("stocksync", 500, 15.0, 7500),  # 2 ms of CPU per order, the generator left out
            _run("floor", 500, 7.5, 7500),
            _run("stocksync", 200, 1.0, 3000, hot=True),
        ],
        "settings": {"instances": 1},
    }
    rows = {name: (value, verdict) for name, value, verdict in targets(result)}
    cpu = rows["at most 3 ms of CPU per order at 500 orders/s (all but the generator)"]
    assert cpu == ("2.0 ms (the floor 1.0 ms)", "met")
    hot_value, hot_verdict = rows["the hot-SKU run sustained at 500 orders/s"]
    assert hot_value.startswith("run at 200/s") and hot_verdict == "missed"  # run below 500/s
