"""The benchmark's own checks: what counts as a quantity published out of order, and
which receiver the load generator sends each attempt to."""

from __future__ import annotations

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
