"""channel-publisher's tables, in its own schema `channel_publisher`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from stocksync_common.db import inbox_table, outbox_broker_table, outbox_table, service_metadata
from stocksync_common.dead_letters import dead_letters_table
from stocksync_common.secrets import EncryptedJSON, EncryptedText, EncryptedTextArray

metadata = service_metadata("channel_publisher")
inbox = inbox_table(metadata)
outbox = outbox_table(metadata)
dead_letters = dead_letters_table(metadata)
outbox_broker = outbox_broker_table(metadata)

connections = sa.Table(
    "connections",
    metadata,
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("channel_type", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("base_url", sa.Text, nullable=False),
    # Channel API credentials and inbound webhook secrets; never returned by the API.
    sa.Column("credentials", EncryptedJSON, nullable=False),
    sa.Column("webhook_secrets", EncryptedTextArray, nullable=False),
    sa.Column("settings", pg.JSONB, nullable=False),
    # Amazon's expected x-api-key is a secret: the whole document is encrypted.
    sa.Column("inbound", EncryptedJSON, nullable=False, server_default=sa.text("'{}'::jsonb")),
    # The locations it sells from, first choice first (docs/stock.md).
    sa.Column("locations", pg.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{default}'::text[]")),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    # A paused connection sends nothing; its quantities keep coalescing until it resumes.
    # `resume_at` is when it tries again by itself (None: only the merchant resumes it).
    sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("pause_reason", sa.Text, nullable=True),
    sa.Column("resume_at", sa.DateTime(timezone=True), nullable=True),
    # Channel calls in a row that failed as a whole (nothing accepted); reset by any success.
    sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_drift_check_at", sa.DateTime(timezone=True), nullable=True),
)

# The listing mapping: a SKU's ids on the channel (Shopify: inventoryItemId, locationId).
listings = sa.Table(
    "listings",
    metadata,
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("location", sa.Text, primary_key=True),
    sa.Column("external", pg.JSONB, nullable=False),
)

# Coalescing: only the newest quantity per (connection, SKU) waits to be sent.
pending_pushes = sa.Table(
    "pending_pushes",
    metadata,
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("location", sa.Text, primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("stock_version", sa.BigInteger, nullable=False),
    sa.Column("rule_ids", pg.ARRAY(pg.UUID(as_uuid=True)), nullable=False),
    sa.Column("causation_id", sa.Text, nullable=False),
    sa.Column("origin_received_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
    # The W3C traceparent of the quantity's trace (stocksync_common.tracing); NULL when off.
    sa.Column("trace_context", sa.Text, nullable=True),
    # Queued by a resync (POST /v1/connections/{id}/resync): sent even at the version the
    # channel already accepted. A newer quantity replacing it is sent anyway.
    sa.Column("resync", sa.Boolean, nullable=False, server_default=sa.false()),
    # Why an adaptive buffer hid what it hid (ChannelQuantityChanged.reasons, one a line).
    sa.Column("reason", sa.Text, nullable=True),
)

# The newest version the channel accepted per SKU: nothing older is ever sent.
last_sent = sa.Table(
    "last_sent",
    metadata,
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("location", sa.Text, primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
)

pushes = sa.Table(
    "pushes",
    metadata,
    sa.Column("push_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("connection_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("stock_version", sa.BigInteger, nullable=False),
    sa.Column("rule_ids", pg.ARRAY(pg.UUID(as_uuid=True)), nullable=False),
    sa.Column("causation_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("channel_response", sa.Text, nullable=True),
    sa.Column("origin_received_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sync_window_ms", sa.Float, nullable=True),
    # Why an adaptive buffer hid what it hid, as the rule engine said (one a line).
    sa.Column("reason", sa.Text, nullable=True),
    sa.Index("ix_pushes_merchant", "merchant_id", "push_id"),
    # A connection's pushes newest first (`GET /v1/pushes?connection_id=`): read by row
    # comparisons on (connection_id, push_id), see `list_pushes`.
    sa.Index("ix_pushes_connection", "connection_id", "push_id"),
    sa.Index("ix_pushes_connection_sku", "connection_id", "sku", "push_id"),
    sa.Index("ix_pushes_connection_finished", "connection_id", "finished_at"),
    # A channel's errors (every status but accepted, a small share of the history) and a
    # SKU's pushes on every channel, newest first: the console's channel and SKU pages.
    sa.Index(
        "ix_pushes_connection_problems",
        "connection_id",
        "status",
        "push_id",
        postgresql_where=sa.text("status <> 'accepted'"),
    ),
    sa.Index("ix_pushes_merchant_sku", "merchant_id", "sku", "push_id"),
)

# What a read-back found on the channel that differs from what Stocksync last sent
# (someone changed the stock on the marketplace by hand).
drift_findings = sa.Table(
    "drift_findings",
    metadata,
    sa.Column("finding_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("connection_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("sent_quantity", sa.BigInteger, nullable=False),
    sa.Column("sent_version", sa.BigInteger, nullable=False),
    # None: the channel no longer shows the listing at all.
    sa.Column("channel_quantity", sa.BigInteger, nullable=True),
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_drift_findings_connection", "connection_id", "finding_id"),
)

# The access token each connection's credentials last obtained (Amazon LWA, eBay OAuth,
# Walmart, Shopify's expiring offline tokens): shared by every publisher instance, so one
# refresh serves them all. A refresh token the channel rotated replaces the one given at
# connection time. `last_error` is the channel's answer to a refresh that failed.
access_tokens = sa.Table(
    "access_tokens",
    metadata,
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    # Encrypted like the connection's credentials they come from.
    sa.Column("access_token", EncryptedText, nullable=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("refresh_token", EncryptedText, nullable=True),
    sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
)

# SKUs the merchant's stock changed for that this connection does not list: one row per
# SKU and location, counted, instead of an `unmapped` push row on every change.
unmapped_skus = sa.Table(
    "unmapped_skus",
    metadata,
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("location", sa.Text, primary_key=True),
    sa.Column("changes", sa.BigInteger, nullable=False),
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_quantity", sa.BigInteger, nullable=False),
)

# A connection's display delay (service_layer/display_delays.py): one sample per measured
# push, from the order's receipt to the moment the channel showed the quantity ("read_back"),
# or accepted it when its API cannot be read ("accepted"), or a probe that gave up waiting
# ("censored": at least that long). Only the last window's samples are kept.
display_delays = sa.Table(
    "display_delays",
    metadata,
    sa.Column("sample_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("connection_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("delay_s", sa.Float, nullable=False),
    sa.Column("how", sa.Text, nullable=False),
    sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_display_delays_connection", "connection_id", "sample_id"),
)

# The one push per connection being read back until the channel shows its quantity.
display_probes = sa.Table(
    "display_probes",
    metadata,
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("origin_received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reads", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_read_at", sa.DateTime(timezone=True), nullable=False),
)

# Per connection: the newest push already sampled, and the delay last announced on
# connection.delays.v1.
display_delay_state = sa.Table(
    "display_delay_state",
    metadata,
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("last_push_id", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("announced_p95_s", sa.Float, nullable=True),
    sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True),
)
