"""What a connection is shown of a SKU (its feed), and the event that announces a new quantity.

Pure: both evaluation paths use these definitions. The stock batch
(service_layer/stock_changes.py) calls `feed_views` on each moved SKU's rows; the
set-based re-evaluation (service_layer/evaluation.py) computes the same views in SQL
for a whole merchant at once (`_feed_rows` there is this module's set-based mirror),
and tests/integration/test_rule_engine_stock_batch.py holds the two to agreement.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from stocksync_common.contracts import DEFAULT_LOCATION, ChannelQuantityChanged

from rule_engine.domain.rules import Decision


@dataclass(frozen=True)
class Feed:
    """What a connection is shown: the sum over `locations` (published at the default
    location) or, when `per_location` (Shopify), each of those locations' rows."""

    locations: tuple[str, ...]
    per_location: bool

    @classmethod
    def of(cls, locations: Iterable[str], per_location: bool) -> Feed:
        return cls(tuple(sorted(set(locations))), per_location)


@dataclass(frozen=True)
class StockRow:
    """One row of the stock projection: a SKU at one location."""

    location: str
    available: int
    version: int
    causation_id: str
    origin_received_at: datetime | None


@dataclass(frozen=True)
class FeedView:
    """What a connection is shown of a SKU at one published location."""

    location: str
    available: int
    stock_version: int  # grows whenever one of the rows it is made of does
    causation_id: str
    origin_received_at: datetime | None


_EPOCH = datetime.min.replace(tzinfo=UTC)


def feed_views(feed: Feed, rows: Sequence[StockRow]) -> list[FeedView]:
    """A feed's view of one SKU, from all of the SKU's rows (none: the SKU is unknown, no view).

    Per location: each row at one of the feed's locations, in location order. Summed: one
    view at the default location with the sum of the feed rows' available and versions,
    and the causation and sync window of the feed's newest movement (the greatest
    `origin_received_at`, a row without one counting as the oldest; a tie goes to the
    first location). When none of the feed's locations has a row the view is 0, version
    0, caused by the SKU's first row: a channel is never shown another location's units.
    """
    ordered = sorted(rows, key=lambda r: r.location)
    if not ordered:
        return []
    in_feed = [r for r in ordered if r.location in feed.locations]
    if feed.per_location:
        return [FeedView(r.location, r.available, r.version, r.causation_id, r.origin_received_at) for r in in_feed]
    if not in_feed:
        return [FeedView(DEFAULT_LOCATION, 0, 0, ordered[0].causation_id, None)]
    newest = max(in_feed, key=lambda r: r.origin_received_at or _EPOCH)
    return [
        FeedView(
            DEFAULT_LOCATION,
            sum(r.available for r in in_feed),
            sum(r.version for r in in_feed),
            newest.causation_id,
            newest.origin_received_at,
        )
    ]


def quantity_changed(
    merchant_id: uuid.UUID,
    connection_id: uuid.UUID,
    sku: str,
    view: FeedView,
    decision: Decision,
    published_version: int,
    causation_id: str | None = None,
) -> ChannelQuantityChanged:
    """The event announcing `decision` for a connection's view of a SKU.

    Its version follows the one last published for that (connection, sku, location), 0
    when none was. It is caused by the view's newest movement, whose sync window
    (`origin_received_at`) it carries, unless the trigger names a cause of its own (a
    rule change, a new connection, a schedule boundary): no stock movement is then being
    synced, so it carries no window.
    """
    return ChannelQuantityChanged(
        merchant_id=merchant_id,
        connection_id=connection_id,
        sku=sku,
        location=view.location,
        quantity=decision.quantity,
        version=published_version + 1,
        stock_version=view.stock_version,
        available=view.available,
        rule_ids=decision.rule_ids,
        reasons=decision.reasons,
        causation_id=causation_id or view.causation_id,
        origin_received_at=view.origin_received_at if causation_id is None else None,
    )
