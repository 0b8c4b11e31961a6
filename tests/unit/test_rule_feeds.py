"""A connection's feed of a SKU, and the event announcing a decision on it, pure."""

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from stocksync_common.contracts import DEFAULT_LOCATION

from rule_engine.domain.feeds import Feed, FeedView, StockRow, feed_views, quantity_changed
from rule_engine.domain.rules import Decision

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def row(location: str, available: int, version: int = 1, minutes: int | None = 0) -> StockRow:
    origin = T0 + timedelta(minutes=minutes) if minutes is not None else None
    return StockRow(location, available, version, f"order:{location}:{version}", origin)


def test_a_summed_feed_shows_the_sum_of_its_locations_caused_by_the_newest_movement() -> None:
    rows = [row("a", 4, version=2, minutes=5), row("b", 3, version=7, minutes=1), row("c", 100, minutes=9)]

    assert feed_views(Feed.of(["b", "a"], per_location=False), rows) == [
        FeedView(DEFAULT_LOCATION, 7, 9, "order:a:2", T0 + timedelta(minutes=5))
    ]


def test_a_summed_feed_with_none_of_its_locations_stocked_shows_zero_not_another_locations_units() -> None:
    rows = [row("b", 9, version=3), row("a", 12, version=4)]

    assert feed_views(Feed.of(["north"], per_location=False), rows) == [
        FeedView(DEFAULT_LOCATION, 0, 0, "order:a:4", None)
    ]


def test_a_movement_with_no_sync_window_counts_as_the_oldest_and_a_tie_goes_to_the_first_location() -> None:
    feed = Feed.of(["a", "b"], per_location=False)

    assert feed_views(feed, [row("b", 1, minutes=None), row("a", 1, minutes=None)])[0].causation_id == "order:a:1"
    assert feed_views(feed, [row("a", 1, minutes=None), row("b", 1, minutes=-60)])[0].causation_id == "order:b:1"
    assert feed_views(feed, [row("b", 1, minutes=3), row("a", 1, minutes=3)])[0].causation_id == "order:a:1"


def test_a_per_location_feed_shows_each_of_its_locations_in_order_and_nothing_elsewhere() -> None:
    rows = [row("c", 5, version=2, minutes=4), row("a", 1), row("z", 8)]

    views = feed_views(Feed.of(["c", "a", "b"], per_location=True), rows)

    assert views == [
        FeedView("a", 1, 1, "order:a:1", T0),
        FeedView("c", 5, 2, "order:c:2", T0 + timedelta(minutes=4)),
    ]


def test_a_sku_without_stock_rows_has_no_view() -> None:
    assert feed_views(Feed.of(["a"], per_location=False), []) == []
    assert feed_views(Feed.of(["a"], per_location=True), []) == []


stock_rows = st.lists(
    st.builds(
        row,
        st.sampled_from(["a", "b", "c", "d"]),
        st.integers(-5, 50),
        st.integers(1, 9),
        st.none() | st.integers(-10, 10),
    ),
    min_size=1,
    unique_by=lambda r: r.location,
)


@given(stock_rows, st.sets(st.sampled_from(["a", "b", "c", "x"])))
def test_a_summed_view_is_the_per_location_views_added_up(rows: list[StockRow], locations: set[str]) -> None:
    (summed,) = feed_views(Feed.of(locations, per_location=False), rows)
    each = feed_views(Feed.of(locations, per_location=True), rows)

    assert summed.location == DEFAULT_LOCATION
    assert summed.available == sum(v.available for v in each)
    assert summed.stock_version == sum(v.stock_version for v in each)
    assert summed.causation_id in {r.causation_id for r in rows}


CONNECTION, MERCHANT, RULE = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
VIEW = FeedView("a", 7, 12, "order:a:3", T0)


def test_a_stock_movement_announces_the_next_version_with_its_cause_and_sync_window() -> None:
    decision = Decision(5, (RULE,), ("hides 2: sells fast",))

    event = quantity_changed(MERCHANT, CONNECTION, "SKU-1", VIEW, decision, published_version=3)

    assert (event.merchant_id, event.connection_id, event.sku, event.location) == (MERCHANT, CONNECTION, "SKU-1", "a")
    assert (event.quantity, event.version, event.stock_version, event.available) == (5, 4, 12, 7)
    assert (event.rule_ids, event.reasons) == ((RULE,), ("hides 2: sells fast",))
    assert (event.causation_id, event.origin_received_at) == ("order:a:3", T0)


def test_a_trigger_that_names_its_own_cause_carries_no_sync_window() -> None:
    event = quantity_changed(MERCHANT, CONNECTION, "SKU-1", VIEW, Decision(0), 0, causation_id="rule:r:created")

    assert (event.version, event.causation_id, event.origin_received_at) == (1, "rule:r:created", None)
