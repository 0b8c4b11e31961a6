"""The allocation rule (stock_ledger.domain.allocation), as docs/stock.md states it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stock_ledger.domain.allocation import allocate


def test_the_first_location_that_covers_the_whole_line_wins() -> None:
    assert allocate(2, ["north", "south"], {"north": 2, "south": 9}) == "north"
    assert allocate(3, ["north", "south"], {"north": 2, "south": 9}) == "south"


def test_a_line_no_location_covers_goes_where_the_shortfall_is_smallest_first_in_priority_on_a_tie() -> None:
    assert allocate(5, ["north", "south"], {"north": 1, "south": 3}) == "south"
    assert allocate(5, ["north", "south"], {"north": 3, "south": 3}) == "north"
    assert allocate(1, ["north", "south"], {}) == "north"


def test_a_connection_without_locations_is_refused() -> None:
    with pytest.raises(ValueError):
        allocate(1, [], {})


@given(
    quantity=st.integers(1, 20),
    available=st.dictionaries(st.sampled_from("abcde"), st.integers(-5, 20), min_size=1),
)
def test_the_chosen_location_is_listed_and_covers_the_line_whenever_one_can(
    quantity: int, available: dict[str, int]
) -> None:
    priority = sorted(available)
    chosen = allocate(quantity, priority, available)
    assert chosen in priority
    covering = [loc for loc in priority if available[loc] >= quantity]
    if covering:
        assert chosen == covering[0]
    else:
        assert available[chosen] == max(available.values())


def test_a_line_placed_concurrently_elsewhere_is_retried_never_dead_lettered() -> None:
    from stocksync_common.dead_letters import is_transient

    from stock_ledger.service_layer.order_lines import LinePlacedElsewhere

    assert is_transient(LinePlacedElsewhere("placed at north by another batch"))
