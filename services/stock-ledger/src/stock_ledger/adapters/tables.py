"""The stock-ledger's tables, in its own schema `stock_ledger`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from stocksync_common.db import inbox_table, outbox_table, service_metadata

metadata = service_metadata("stock_ledger")
inbox = inbox_table(metadata)
outbox = outbox_table(metadata)

merchants = sa.Table(
    "merchants",
    metadata,
    sa.Column("merchant_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)

# Location is part of the key from the start (DESIGN.md section 9), "default" for now.
stock_items = sa.Table(
    "stock_items",
    metadata,
    sa.Column("merchant_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("location", sa.Text, primary_key=True),
    sa.Column("on_hand", sa.BigInteger, nullable=False),
    sa.Column("reserved", sa.BigInteger, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

order_lines = sa.Table(
    "order_lines",
    metadata,
    sa.Column("merchant_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("external_order_id", sa.Text, primary_key=True),
    sa.Column("line_id", sa.Text, primary_key=True),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("reserved", sa.BigInteger, nullable=False),
    sa.Column("shipped", sa.BigInteger, nullable=False),
    sa.Column("cancelled", sa.BigInteger, nullable=False),
)

ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("causation_id", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("delta_on_hand", sa.BigInteger, nullable=False),
    sa.Column("delta_reserved", sa.BigInteger, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("event_id", pg.UUID(as_uuid=True), nullable=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    # Replays of one movement are no-ops: its causation id is unique per merchant.
    sa.UniqueConstraint("merchant_id", "causation_id", name="uq_ledger_causation"),
    sa.Index("ix_ledger_sku", "merchant_id", "sku", "location", "id"),
)
