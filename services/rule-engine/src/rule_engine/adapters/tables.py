"""rule-engine's tables, in its own schema `rule_engine`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from stocksync_common.db import inbox_table, outbox_broker_table, outbox_table, service_metadata
from stocksync_common.dead_letters import dead_letters_table

metadata = service_metadata("rule_engine")
inbox = inbox_table(metadata)
outbox = outbox_table(metadata)
dead_letters = dead_letters_table(metadata)
outbox_broker = outbox_broker_table(metadata)

rules = sa.Table(
    "rules",
    metadata,
    sa.Column("rule_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("connection_ids", pg.ARRAY(pg.UUID(as_uuid=True)), nullable=False),
    sa.Column("skus", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("condition", pg.JSONB, nullable=False),
    sa.Column("action", pg.JSONB, nullable=False),
    # Attribute filter: brands, categories, tags, each with its exclude_ list; {} for all.
    sa.Column("product_filter", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
    # [{"days": ["mon", ...], "start": "HH:MM", "end": "HH:MM"}] in `time_zone`.
    sa.Column("weekly_windows", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("time_zone", sa.Text, nullable=False, server_default="UTC"),
    # Whether the published quantities reflect the rule as in force: the scheduler
    # compares it with the clock and re-evaluates when they differ, which also catches
    # up on a boundary that passed while no rule engine was running.
    sa.Column("in_force", sa.Boolean, nullable=False, server_default=sa.true()),
    # When the scheduler next compares `in_force` with the clock: the schedule's next
    # boundary after the last comparison; null when it has none (no period, no windows).
    sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)

# Projection of connections.v1: the channels a merchant publishes to.
connections = sa.Table(
    "connections",
    metadata,
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("channel_type", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # Its feed (domain/feeds.py `Feed`): the locations it sells from, and
    # whether it is shown each of them (Shopify) or their sum.
    sa.Column("locations", pg.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{default}'::text[]")),
    sa.Column("per_location", sa.Boolean, nullable=False, server_default=sa.false()),
)

# Projection of stock.changed.v1: the newest available quantity per SKU.
stock = sa.Table(
    "stock",
    metadata,
    sa.Column("merchant_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("location", sa.Text, primary_key=True),
    sa.Column("available", sa.BigInteger, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("causation_id", sa.Text, nullable=False),
    sa.Column("origin_received_at", sa.DateTime(timezone=True), nullable=True),
)

# The last quantity emitted per channel and SKU: emit only when it changes.
channel_quantities = sa.Table(
    "channel_quantities",
    metadata,
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("location", sa.Text, primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("stock_version", sa.BigInteger, nullable=False),
    sa.Column("rule_ids", pg.ARRAY(pg.UUID(as_uuid=True)), nullable=False),
)

# Projection of catalogue.v1: the attributes rule scopes filter on.
products = sa.Table(
    "products",
    metadata,
    sa.Column("merchant_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("brand", sa.Text, nullable=True),
    sa.Column("category", sa.Text, nullable=True),
    sa.Column("tags", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
)

# Every change of a rule: who made it, when, and the rule before and after (null when
# created or deleted). Append-only.
rule_changes = sa.Table(
    "rule_changes",
    metadata,
    sa.Column("change_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("rule_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("changed_by", sa.Text, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column("before", pg.JSONB, nullable=True),
    sa.Column("after", pg.JSONB, nullable=True),
    sa.Column("channel_quantities_changed", sa.Integer, nullable=False),
)

# The adaptive buffer's sales rate per SKU and channel (type): an exponentially decayed rate
# (units per second, as of `at`), updated in O(1) by each sale on the stock.changed.v1 path
# (service_layer/stock_changes.py); a row whose rate decayed to nothing is dropped.
sales_rates = sa.Table(
    "sales_rates",
    metadata,
    sa.Column("merchant_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("channel", sa.Text, primary_key=True),
    sa.Column("rate", sa.Float, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# Projection of connection.delays.v1: each connection's measured display delay.
connection_delays = sa.Table(
    "connection_delays",
    metadata,
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("p50_s", sa.Float, nullable=False),
    sa.Column("p95_s", sa.Float, nullable=False),
    sa.Column("samples", sa.BigInteger, nullable=False),
    sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
)
