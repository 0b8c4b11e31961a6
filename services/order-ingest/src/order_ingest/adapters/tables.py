"""order-ingest's tables, in its own schema `order_ingest`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from stocksync_common.db import inbox_table, outbox_broker_table, outbox_table, service_metadata
from stocksync_common.dead_letters import dead_letters_table
from stocksync_common.secrets import EncryptedJSON, EncryptedTextArray

metadata = service_metadata("order_ingest")
inbox = inbox_table(metadata)
outbox = outbox_table(metadata)
dead_letters = dead_letters_table(metadata)
outbox_broker = outbox_broker_table(metadata)

# A projection of connections.v1: what a webhook needs to find and verify its sender.
connections = sa.Table(
    "connections",
    metadata,
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("channel_type", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("webhook_secrets", EncryptedTextArray, nullable=False),
    # Amazon's expected x-api-key is a secret: the whole document is encrypted.
    sa.Column("inbound", EncryptedJSON, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("channel_api", EncryptedJSON, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Every accepted delivery, with its raw body: the audit trail and the dedupe key.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("delivery_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("connection_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("channel_event_id", sa.Text, nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("raw_body", sa.LargeBinary, nullable=False),
    sa.Column("headers", pg.JSONB, nullable=False),
    sa.Column("events_produced", sa.Integer, nullable=False),
    # The movements it produced: [{external_order_id, line_id, sku, movement, quantity}].
    sa.Column("produced", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("connection_id", "channel_event_id", name="uq_delivery_event"),
    # The merchant's audit listing (newest first) and the retention sweep.
    sa.Index("ix_deliveries_merchant_received", "merchant_id", "received_at"),
    sa.Index("ix_deliveries_received", "received_at"),
)

# Per order line, the cumulative quantities already emitted to orders.v1 (see
# domain/movements.py): what makes each movement exactly once whatever the channel resends.
order_lines = sa.Table(
    "order_lines",
    metadata,
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("external_order_id", sa.Text, primary_key=True),
    sa.Column("line_id", sa.Text, primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("placed", sa.Integer, nullable=False),
    sa.Column("shipped", sa.Integer, nullable=False),
    sa.Column("cancelled", sa.Integer, nullable=False),
    sa.Column("returned", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# One row per polled connection (Mirakl): where the next OR11 call starts and when.
order_polls = sa.Table(
    "order_polls",
    metadata,
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    # Greatest `last_updated_date` seen; the next call starts a little before it.
    sa.Column("updated_since", sa.DateTime(timezone=True), nullable=True),
    sa.Column("next_poll_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_polled_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
)
