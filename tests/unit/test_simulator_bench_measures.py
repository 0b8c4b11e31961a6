"""The benchmark's pure parts (bench/measures.py, the load plan): what the report's numbers mean."""

from __future__ import annotations

import math

import pytest
from bench.loadgen import LoadSpec, plan_orders, units_per_sku
from bench.measures import ChannelSeries, order_windows, percentile, summarise


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (50, 90, 99, 100)] == [50, 90, 99, 100]
    assert math.isnan(percentile([], 50))
    assert summarise([3.0, 1.0, 2.0])["max"] == 3.0


def test_a_channel_series_finds_the_first_quantity_at_or_below() -> None:
    series = ChannelSeries.of([(1.0, 10), (2.0, 8), (3.0, 9), (4.0, 5)])
    assert series.first_at_or_below(8) == 2.0
    assert series.first_at_or_below(7) == 4.0  # 9 at t=3 is above 7
    assert series.first_at_or_below(4) is None


def test_one_push_coalescing_two_orders_ends_both_windows() -> None:
    orders = [(10.0, [("A", 1)]), (10.5, [("A", 2)])]
    channels = {"C1": {"A": [(11.0, 7)]}, "C2": {"A": [(10.8, 9), (11.2, 7)]}}
    windows = order_windows(orders, {"A": 10}, channels, lambda c, s, a: a)
    assert windows == pytest.approx([1.0, 0.7])  # C2 showed 9 at 10.8; C1 shows both at 11.0


def test_an_order_never_shown_everywhere_has_no_window() -> None:
    windows = order_windows(
        [(1.0, [("A", 1), ("B", 1)])], {"A": 5, "B": 5}, {"C1": {"A": [(1.5, 4)]}}, lambda c, s, a: a
    )
    assert windows == [None]


def test_the_rule_decides_what_a_channel_must_show() -> None:
    # "0 when <= 3" on C2: available 3 must show 0 there.
    rule = lambda c, s, a: 0 if c == "C2" and a <= 3 else a  # noqa: E731
    windows = order_windows([(0.0, [("A", 2)])], {"A": 5}, {"C1": {"A": [(0.3, 3)]}, "C2": {"A": [(0.4, 0)]}}, rule)
    assert windows == pytest.approx([0.4])


def test_the_load_plan_is_seeded_and_shaped_like_real_orders() -> None:
    spec = LoadSpec(url="http://x", webhook_secret="s", rate=100, duration=5, skus=tuple(f"S{i}" for i in range(50)))
    plan = plan_orders(spec)
    assert plan == plan_orders(spec)
    assert len(plan) == 500
    assert all(1 <= len(o.lines) <= 5 and len({s for s, _ in o.lines}) == len(o.lines) for o in plan)
    assert len({o.order_id for o in plan}) == 500
    assert [o.offset for o in plan[:3]] == pytest.approx([0, 0.01, 0.02])
    units = units_per_sku(plan)
    assert units["S0"] > units["S49"]  # Zipf-like popularity


def test_a_hot_sku_run_puts_most_orders_on_one_sku() -> None:
    spec = LoadSpec(
        url="http://x",
        webhook_secret="s",
        rate=100,
        duration=5,
        skus=("H", "A", "B", "C"),
        hot_sku="H",
        hot_fraction=0.8,
    )
    share = sum(any(s == "H" for s, _ in o.lines) for o in plan_orders(spec)) / 500
    assert share > 0.75
