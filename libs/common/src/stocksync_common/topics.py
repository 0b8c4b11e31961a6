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
    ConnectionDelayMeasured,
    DeadLetterRecorded,
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

# Each connection's measured display delay (channel-publisher -> rule-engine's adaptive buffer).
CONNECTION_DELAYS = Topic(
    "connection.delays.v1",
    ConnectionDelayMeasured,
    lambda event: f"{event.merchant_id}:{event.connection_id}",
    partitions=1,
    compacted=True,
)

EVENT_TOPICS: tuple[Topic, ...] = (
    ORDERS,
    STOCK_CHANGED,
    CHANNEL_QUANTITY,
    CONNECTIONS,
    OVERSELLS,
    CATALOGUE,
    CONNECTION_DELAYS,
)


def _dead_letter_key(event: Any) -> str:
    return str(event.merchant_id)


# `<topic>.dlq`: what consumers of a topic could not apply (stocksync_common.dead_letters).
# One partition each: dead letters are few, and the stock-ledger reads them all.
DEAD_LETTER_TOPICS: tuple[Topic, ...] = tuple(
    Topic(f"{topic.name}.dlq", DeadLetterRecorded, _dead_letter_key, partitions=1) for topic in EVENT_TOPICS
)

ALL_TOPICS: tuple[Topic, ...] = EVENT_TOPICS + DEAD_LETTER_TOPICS
BY_NAME: dict[str, Topic] = {topic.name: topic for topic in ALL_TOPICS}
# The dead-letter topics share one event type: an outbox row names its `.dlq` topic itself.
BY_EVENT_TYPE: dict[type[Event], Topic] = {topic.event_type: topic for topic in EVENT_TOPICS}


def dead_letter_topic_of(topic_name: str) -> Topic:
    """The `<topic>.dlq` of a topic (a record of a topic unknown here goes nowhere else)."""
    return BY_NAME[f"{topic_name}.dlq"]


def topic_for(event: Event) -> Topic:
    return BY_EVENT_TYPE[type(event)]
