"""Event contracts: what travels between services.

Every event is a frozen pydantic model with `extra="forbid"` and a `schema_version`.
A breaking change gets a new topic (`orders.v2`), never an edit of these models.
Stock events carry absolute values and a per-SKU version that only grows, so a
consumer can drop anything not newer than what it has applied.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from stocksync_common.bounds import INT64_MAX, Identifier, Int64, NonNegativeInt64, PositiveQuantity, Sku, Text

# Versions: positive and within PostgreSQL's bigint, like every integer of a contract.
Version = Annotated[int, Field(gt=0, le=INT64_MAX)]

DEFAULT_LOCATION = "default"
# How many locations one connection sells from (its priority list): a merchant has a few
# warehouses and stores, never thousands; the ledger tries them in order for every line.
CONNECTION_LOCATIONS_MAX = 50


def _distinct_locations(value: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(value)) != len(value):
        raise ValueError("a location is listed twice")
    return value


LocationPriority = Annotated[
    tuple[Identifier, ...],
    Field(min_length=1, max_length=CONNECTION_LOCATIONS_MAX),
    AfterValidator(_distinct_locations),
]
"""The locations a connection sells from, first choice first (docs/stock.md)."""

OrderMovement = Literal["placed", "cancelled", "shipped", "returned"]
ChannelType = Literal["shopify", "woocommerce", "amazon", "ebay", "mirakl", "walmart", "generic"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    schema_version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)
    # What caused this event: an order line movement, a snapshot, a rule change.
    # Logs carry it so one order can be followed to its stock version and pushes.
    causation_id: str
    merchant_id: uuid.UUID


class OrderLineMoved(Event):
    """orders.v1: one movement of one order line, as a channel reported it."""

    connection_id: uuid.UUID
    channel_type: ChannelType
    external_order_id: Identifier
    line_id: Identifier
    sku: Sku
    location: Identifier = DEFAULT_LOCATION
    movement: OrderMovement
    quantity: PositiveQuantity
    # When order-ingest received the webhook: the start of the sync window.
    received_at: datetime
    # Which partial movement of the line this is (a fulfillment, refund or cancellation
    # id) when a line can move more than once per kind; None when it moves once per kind.
    # Part of the ledger's causation id, so each partial movement applies exactly once.
    movement_ref: Identifier | None = None
    # For "returned": whether the units go back on hand (False: refunded, not restocked).
    restock: bool = True


class StockChanged(Event):
    """stock.changed.v1: the absolute stock of one SKU at one version."""

    sku: Sku
    location: Identifier = DEFAULT_LOCATION
    version: Version
    on_hand: Int64
    reserved: Int64
    available: Int64
    # Start of the sync window of the movement that produced this version, if any.
    origin_received_at: datetime | None = None


class ChannelQuantityChanged(Event):
    """channel.quantity.v1: the quantity a channel connection should show for a SKU.

    `version` grows strictly per (connection, sku, location): a rule change can change
    the quantity without a new stock version, so the stock version alone cannot order
    these events.
    """

    connection_id: uuid.UUID
    sku: Sku
    location: Identifier = DEFAULT_LOCATION
    quantity: NonNegativeInt64
    version: Version
    stock_version: NonNegativeInt64
    available: Int64
    rule_ids: tuple[uuid.UUID, ...] = ()
    origin_received_at: datetime | None = None
    # Why a rule that reads more than the quantity (the adaptive buffer) did what it did:
    # one sentence per such rule, kept in the push history.
    reasons: tuple[Text, ...] = Field(default=(), max_length=20)


class OversellDetected(Event):
    """stock.oversells.v1: a movement took available below zero; the merchant must act."""

    sku: Sku
    location: Identifier = DEFAULT_LOCATION
    version: Version
    available: Int64
    oversold: Annotated[int, Field(gt=0, le=INT64_MAX, description="Units sold beyond what was available")]


class ProductAttributesChanged(Event):
    """catalogue.v1 (compacted): a product's catalogue attributes, as rules scope them."""

    sku: Sku
    brand: str | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()
    attributes: dict[str, str] = Field(default_factory=dict)
    # Grows per SKU, so a consumer keeps only the newest.
    version: Version


class ConnectionChanged(Event):
    """connections.v1 (compacted): a channel connection's public configuration.

    It carries the inbound webhook secrets because order-ingest must verify signatures
    and does not own connections. The secret fields travel encrypted under `SECRETS_KEY`
    (stocksync_common.secrets.seal_connection): each webhook secret as `fernet:<token>`,
    `inbound` and `channel_api` as `{"fernet": "<token>"}`; a consumer opens them with
    `open_connection`, which reads events published before sealing as they are.
    """

    connection_id: uuid.UUID
    channel_type: ChannelType
    name: str
    active: bool
    webhook_secrets: tuple[str, ...] = ()
    # What order-ingest needs beyond secrets: e.g. an inbound API key header, or a
    # Mirakl poller's base URL, key and interval.
    inbound: dict[str, Any] = Field(default_factory=dict)
    # For channels order-ingest calls itself (Mirakl's OR11 polling, eBay's public
    # keys): `base_url` and the credential that call needs; empty for the others.
    channel_api: dict[str, Any] = Field(default_factory=dict)
    # The locations the connection sells from, in priority order: an order on it reserves
    # at the first that has the stock (stock-ledger), and it is shown the sum of their
    # available (rule-engine). Events published before locations existed read as the
    # default location, which is where single-location stock lives.
    locations: LocationPriority = (DEFAULT_LOCATION,)
    # True for channels that hold a quantity per location (Shopify's inventory levels):
    # the rule engine then publishes one quantity per listed location instead of the sum.
    per_location: bool = False


class ConnectionDelayMeasured(Event):
    """connection.delays.v1 (compacted): how long a connection's channel takes to show a change.

    Measured by channel-publisher from its push history and read-backs: the time from an
    order's receipt to the moment the channel shows the new quantity, over the last
    `samples` measurements (seconds). Announced once enough samples exist, then when the
    p95 moves enough; a consumer keeps the newest (`occurred_at`). The rule engine's
    adaptive buffer reads the p95.
    """

    connection_id: uuid.UUID
    p50_s: Annotated[float, Field(ge=0, le=86_400)]
    p95_s: Annotated[float, Field(ge=0, le=86_400)]
    samples: Annotated[int, Field(ge=0, le=INT64_MAX)]


class DeadLetterRecorded(Event):
    """<topic>.dlq: an event a consumer group could not apply, and the record as consumed.

    `merchant_id` is the record's merchant, or the nil UUID when the record does not say
    (it broke its contract). `key` and `value` are the original record's bytes, base64.
    """

    dead_letter_id: uuid.UUID
    consumer_group: str
    topic: str
    partition: int
    offset: int
    key: str | None
    value: str
    original_event_id: uuid.UUID | None = None
    error: Text
