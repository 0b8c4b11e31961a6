"""The stock model of docs/design.md section 3, pure."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from stock_ledger.domain.stock import (
    LineTotals,
    StockLevel,
    is_stale_snapshot,
    order_line_effect,
    oversold_units,
    snapshot_on_hand,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_placed_line_reserves_its_quantity() -> None:
    effect = order_line_effect(LineTotals(), "placed", 2)
    assert (effect.delta_on_hand, effect.delta_reserved) == (0, 2)
    assert effect.line == LineTotals(placed=2)
    assert effect.line.reserved == 2


def test_cancelled_line_releases_only_what_it_reserved() -> None:
    effect = order_line_effect(LineTotals(placed=1), "cancelled", 3)
    assert (effect.delta_on_hand, effect.delta_reserved) == (0, -1)
    assert effect.line.reserved == 0


def test_partial_cancellation_releases_part_of_the_line() -> None:
    effect = order_line_effect(LineTotals(placed=3), "cancelled", 1)
    assert effect.delta_reserved == -1
    assert effect.line.reserved == 2


def test_shipped_line_releases_and_takes_from_on_hand() -> None:
    effect = order_line_effect(LineTotals(placed=2), "shipped", 2)
    assert (effect.delta_on_hand, effect.delta_reserved) == (-2, -2)
    assert effect.line == LineTotals(placed=2, shipped=2)


def test_partial_shipment_releases_only_the_shipped_units() -> None:
    effect = order_line_effect(LineTotals(placed=3), "shipped", 1)
    assert (effect.delta_on_hand, effect.delta_reserved) == (-1, -1)
    assert effect.line.reserved == 2


def test_return_with_restock_puts_units_back_on_hand() -> None:
    effect = order_line_effect(LineTotals(placed=1, shipped=1), "returned", 1)
    assert (effect.delta_on_hand, effect.delta_reserved) == (1, 0)


def test_refund_without_restock_changes_no_stock_but_is_recorded_on_the_line() -> None:
    effect = order_line_effect(LineTotals(placed=1, shipped=1), "returned", 1, restock=False)
    assert (effect.delta_on_hand, effect.delta_reserved) == (0, 0)
    assert (effect.line.returned, effect.line.restocked) == (1, 0)


def test_cancellation_before_its_order_leaves_nothing_reserved_once_the_order_arrives() -> None:
    cancelled = order_line_effect(LineTotals(), "cancelled", 2)
    assert cancelled.delta_reserved == 0
    placed = order_line_effect(cancelled.line, "placed", 2)
    assert placed.delta_reserved == 0
    assert placed.line.reserved == 0


def test_shipment_before_its_order_takes_on_hand_once_and_reserves_nothing() -> None:
    shipped = order_line_effect(LineTotals(), "shipped", 2)
    placed = order_line_effect(shipped.line, "placed", 2)
    assert shipped.delta_on_hand + placed.delta_on_hand == -2
    assert shipped.delta_reserved + placed.delta_reserved == 0


@pytest.mark.parametrize(
    "order", list(itertools.permutations([("placed", 3), ("cancelled", 1), ("shipped", 1), ("returned", 1)]))
)
def test_a_lines_movements_in_any_order_end_at_the_same_numbers(order: tuple[tuple[str, int], ...]) -> None:
    line, on_hand, reserved = LineTotals(), 0, 0
    for movement, quantity in order:
        effect = order_line_effect(line, movement, quantity)  # type: ignore[arg-type]
        line, on_hand, reserved = effect.line, on_hand + effect.delta_on_hand, reserved + effect.delta_reserved
    assert (on_hand, reserved) == (-1 + 1, 3 - 1 - 1)
    assert reserved == line.reserved


def test_movement_before_the_snapshot_watermark_changes_only_reserved() -> None:
    level = StockLevel(on_hand=5, watermark=T0)
    assert not level.counts_on_hand_of(T0 - timedelta(seconds=1))
    assert level.counts_on_hand_of(T0 + timedelta(seconds=1))
    effect = order_line_effect(LineTotals(placed=1), "shipped", 1, counts_on_hand=False)
    assert (effect.delta_on_hand, effect.delta_reserved) == (0, -1)


def test_snapshot_older_than_the_watermark_is_stale() -> None:
    level = StockLevel(on_hand=5, watermark=T0)
    assert is_stale_snapshot(level, T0 - timedelta(microseconds=1))
    assert not is_stale_snapshot(level, T0)
    assert not is_stale_snapshot(StockLevel(), T0)


def test_snapshot_adds_the_movements_the_erp_has_not_seen() -> None:
    assert snapshot_on_hand(10, -3) == 7


def test_movement_quantity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        order_line_effect(LineTotals(), "placed", 0)


def test_an_order_is_never_refused_and_can_take_available_below_zero() -> None:
    level = StockLevel(on_hand=1, reserved=1)
    effect = order_line_effect(LineTotals(), "placed", 1)
    assert level.moved(effect.delta_on_hand, effect.delta_reserved).available == -1


def test_oversold_counts_only_the_new_shortfall() -> None:
    assert oversold_units(StockLevel(on_hand=2, reserved=1), StockLevel(on_hand=2, reserved=4)) == 2
    assert oversold_units(StockLevel(on_hand=2, reserved=4), StockLevel(on_hand=2, reserved=5)) == 1
    assert oversold_units(StockLevel(on_hand=2, reserved=4), StockLevel(on_hand=2, reserved=3)) == 0
    assert oversold_units(StockLevel(on_hand=2), StockLevel(on_hand=2, reserved=2)) == 0
