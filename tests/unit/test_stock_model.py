"""The stock model of DESIGN.md section 3, pure."""

import pytest

from stock_ledger.domain.stock import LineState, StockLevel, order_line_effect, snapshot_effect


def test_placed_line_reserves_its_quantity() -> None:
    effect = order_line_effect(LineState(), "placed", 2)
    assert (effect.delta_on_hand, effect.delta_reserved) == (0, 2)
    assert effect.line == LineState(reserved=2)


def test_cancelled_line_releases_only_what_it_reserved() -> None:
    effect = order_line_effect(LineState(reserved=1), "cancelled", 3)
    assert (effect.delta_on_hand, effect.delta_reserved) == (0, -1)
    assert effect.line == LineState(reserved=0, cancelled=1)


def test_partial_cancellation_releases_part_of_the_line() -> None:
    effect = order_line_effect(LineState(reserved=3), "cancelled", 1)
    assert effect.delta_reserved == -1
    assert effect.line.reserved == 2


def test_shipped_line_releases_and_takes_from_on_hand() -> None:
    effect = order_line_effect(LineState(reserved=2), "shipped", 2)
    assert (effect.delta_on_hand, effect.delta_reserved) == (-2, -2)
    assert effect.line == LineState(reserved=0, shipped=2)


def test_return_with_restock_puts_units_back_on_hand() -> None:
    effect = order_line_effect(LineState(shipped=1), "returned", 1)
    assert (effect.delta_on_hand, effect.delta_reserved) == (1, 0)


def test_movement_quantity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        order_line_effect(LineState(), "placed", 0)


def test_snapshot_is_a_signed_delta_to_the_new_on_hand() -> None:
    assert snapshot_effect(StockLevel(on_hand=7, reserved=2), 5).delta_on_hand == -2
    assert StockLevel(on_hand=5, reserved=2).available == 3


def test_an_order_is_never_refused_and_can_take_available_below_zero() -> None:
    level = StockLevel(on_hand=1, reserved=1)
    effect = order_line_effect(LineState(), "placed", 1)
    assert level.moved(effect.delta_on_hand, effect.delta_reserved).available == -1
