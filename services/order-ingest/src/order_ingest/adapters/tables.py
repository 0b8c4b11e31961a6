"""order-ingest's tables, in its own schema `order_ingest`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from stocksync_common.db import inbox_table, outbox_table, service_metadata

metadata = service_metadata("order_ingest")
inbox = inbox_table(metadata)
outbox = outbox_table(metadata)

# A projection of connections.v1: what a webhook needs to find and verify its sender.
connections = sa.Table(
    "connections",
    metadata,
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("channel_type", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("webhook_secrets", pg.ARRAY(sa.Text), nullable=False),
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
    sa.UniqueConstraint("connection_id", "channel_event_id", name="uq_delivery_event"),
)
