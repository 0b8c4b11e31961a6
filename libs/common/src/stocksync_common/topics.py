"""The topic registry: each topic's name, event type and key in one place.

Every topic carrying stock is keyed by `merchant_id:sku`, so one SKU's events land in
one partition, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stocksync_common.contracts import (
    ChannelQuantityChanged,
    ConnectionChanged,
    Event,
    OrderLineMoved,
    OversellDetected,
    ProductAttributesChanged,
    StockChanged,
)


@dataclass(frozen=True)
class Topic:
    name: str
    event_type: type[Event]
    key: Callable[[Any], str]
    partitions: int = 6
    compacted: bool = False

    def key_of(self, event: Event) -> bytes:
        return self.key(event).encode()


def _stock_key(event: Any) -> str:
    return f"{event.merchant_id}:{event.sku}"


ORDERS = Topic("orders.v1", OrderLineMoved, _stock_key)
STOCK_CHANGED = Topic("stock.changed.v1", StockChanged, _stock_key)
CHANNEL_QUANTITY = Topic("channel.quantity.v1", ChannelQuantityChanged, _stock_key)
CONNECTIONS = Topic(
    "connections.v1",
    ConnectionChanged,
    lambda event: f"{event.merchant_id}:{event.connection_id}",
    partitions=1,
    compacted=True,
)

OVERSELLS = Topic("stock.oversells.v1", OversellDetected, _stock_key)
CATALOGUE = Topic("catalogue.v1", ProductAttributesChanged, _stock_key, compacted=True)

ALL_TOPICS: tuple[Topic, ...] = (ORDERS, STOCK_CHANGED, CHANNEL_QUANTITY, CONNECTIONS, OVERSELLS, CATALOGUE)
BY_NAME: dict[str, Topic] = {topic.name: topic for topic in ALL_TOPICS}
BY_EVENT_TYPE: dict[type[Event], Topic] = {topic.event_type: topic for topic in ALL_TOPICS}


def topic_for(event: Event) -> Topic:
    return BY_EVENT_TYPE[type(event)]
