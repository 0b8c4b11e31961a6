"""rule-engine's tables, in its own schema `rule_engine`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from stocksync_common.db import inbox_table, outbox_table, service_metadata

metadata = service_metadata("rule_engine")
inbox = inbox_table(metadata)
outbox = outbox_table(metadata)

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
