"""The stock-ledger's tables, in its own schema `stock_ledger`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from stocksync_common.db import inbox_table, outbox_broker_table, outbox_table, service_metadata
from stocksync_common.dead_letters import dead_letters_table

metadata = service_metadata("stock_ledger")
inbox = inbox_table(metadata)
outbox = outbox_table(metadata)
dead_letters = dead_letters_table(metadata)
outbox_broker = outbox_broker_table(metadata)

merchants = sa.Table(
    "merchants",
    metadata,
    sa.Column("merchant_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)

# Location is part of the key from the start (docs/design.md section 11), "default" for now.
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
    # as_of of the last applied snapshot (the watermark): see domain/stock.py.
    sa.Column("snapshot_as_of", sa.DateTime(timezone=True), nullable=True),
    # The stock list's pages (GET /v1/stock): by SKU in byte order (the key's own index
    # is in the database's collation), by available (low stock) and by updated_at (what
    # changed last; the console's live feed asks it every second). on_hand and reserved
    # are sorted without an index: each index on a column an order changes is one more
    # write on the ledger's hot path.
    sa.Index("ix_stock_items_sku", "merchant_id", "location", sa.text('(sku COLLATE "C")')),
    sa.Index(
        "ix_stock_items_available",
        "merchant_id",
        "location",
        sa.text("(on_hand - reserved)"),
        sa.text('(sku COLLATE "C")'),
    ),
    sa.Index("ix_stock_items_updated", "merchant_id", "location", "updated_at", sa.text('(sku COLLATE "C")')),
)

# Where each channel connection sells from, first choice first, as connections.v1 last
# said (the channel-publisher owns connections): where its new order lines reserve.
connection_locations = sa.Table(
    "connection_locations",
    metadata,
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("locations", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Bundles (domain/bundles.py): each bundle's components and how many of each it holds.
bundle_components = sa.Table(
    "bundle_components",
    metadata,
    sa.Column("merchant_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("bundle_sku", sa.Text, primary_key=True),
    sa.Column("component_sku", sa.Text, primary_key=True),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.CheckConstraint("quantity > 0", name="ck_bundle_components_quantity"),
    sa.Index("ix_bundle_components_component", "merchant_id", "component_sku"),
)

# What each bundle order line reserves per bundle, as its definition was when placed:
# its later movements release exactly that, whatever the bundle has become.
order_line_components = sa.Table(
    "order_line_components",
    metadata,
    sa.Column("merchant_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("external_order_id", sa.Text, primary_key=True),
    sa.Column("line_id", sa.Text, primary_key=True),
    sa.Column("component_sku", sa.Text, primary_key=True),
    sa.Column("quantity", sa.BigInteger, nullable=False),
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
    # Totals the channel reported per movement kind; `reserved` is derived from them
    # (domain.stock.LineTotals) and kept so that reconciliation can sum it per SKU.
    sa.Column("placed", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("reserved", sa.BigInteger, nullable=False),
    sa.Column("shipped", sa.BigInteger, nullable=False),
    sa.Column("cancelled", sa.BigInteger, nullable=False),
    sa.Column("returned", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("restocked", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_order_lines_sku", "merchant_id", "sku", "location"),
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
    # When the movement happened in the world (an order's receipt, a snapshot's as_of):
    # what watermark reconciliation compares with a snapshot's as_of.
    sa.Column("occurred_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    # Manual adjustments say why and who.
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("actor", sa.Text, nullable=True),
    # Replays of one movement are no-ops: its causation id is unique per merchant.
    sa.UniqueConstraint("merchant_id", "causation_id", name="uq_ledger_causation"),
    sa.Index("ix_ledger_sku", "merchant_id", "sku", "location", "id"),
    sa.Index("ix_ledger_sku_occurred", "merchant_id", "sku", "location", "occurred_at"),
)

# Movements that took available below zero; open until available is back at zero or more.
oversells = sa.Table(
    "oversells",
    metadata,
    sa.Column("oversell_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("available", sa.BigInteger, nullable=False),
    sa.Column("oversold", sa.BigInteger, nullable=False),
    sa.Column("causation_id", sa.Text, nullable=False),
    sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_oversells_open", "merchant_id", "sku", "location", postgresql_where=sa.text("resolved_at IS NULL")),
    sa.Index("ix_oversells_detected", "merchant_id", "detected_at"),
)

# Catalogue attributes from stock imports, which rule scopes filter on. `version` grows
# per SKU with every change and orders the ProductAttributesChanged events.
product_attributes = sa.Table(
    "product_attributes",
    metadata,
    sa.Column("merchant_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("brand", sa.Text, nullable=True),
    sa.Column("category", sa.Text, nullable=True),
    sa.Column("tags", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("attributes", pg.JSONB, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Stock imports run as jobs (docs/stock.md). The uploaded file is kept in PostgreSQL, in
# parts, so that a job survives a restart of any instance and the progress of a chunk
# commits in the same transaction as the rows it applied.
import_jobs = sa.Table(
    "import_jobs",
    metadata,
    sa.Column("job_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
    # csv, jsonl or json
    sa.Column("format", sa.Text, nullable=False),
    # All rows in one transaction, or none if any row is refused.
    sa.Column("atomic", sa.Boolean, nullable=False),
    sa.Column("default_as_of", sa.DateTime(timezone=True), nullable=False),
    # queued, running, succeeded, failed
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("lines_total", sa.BigInteger, nullable=False),
    # The last line of the file whose row (applied or refused) is committed: a restart
    # resumes after it, so no row is applied twice.
    sa.Column("lines_done", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("applied", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("ignored_stale", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("refused", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_import_jobs_merchant", "merchant_id", "created_at"),
    sa.Index("ix_import_jobs_pending", "created_at", postgresql_where=sa.text("state IN ('queued', 'running')")),
)

import_job_parts = sa.Table(
    "import_job_parts",
    metadata,
    sa.Column(
        "job_id", pg.UUID(as_uuid=True), sa.ForeignKey(import_jobs.c.job_id, ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("part", sa.Integer, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

import_job_refusals = sa.Table(
    "import_job_refusals",
    metadata,
    sa.Column(
        "job_id", pg.UUID(as_uuid=True), sa.ForeignKey(import_jobs.c.job_id, ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("line", sa.BigInteger, primary_key=True),
    sa.Column("field", sa.Text, nullable=True),
    sa.Column("message", sa.Text, nullable=False),
)

# Merchant API keys (adapters/api_key_store.py): a digest of each key, never the key.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.Text, primary_key=True),
    sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("digest", sa.Text, nullable=False),
    # Issued before stored keys (an HMAC under API_KEY_SECRET), stored when first seen.
    sa.Column("legacy", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    # A rotated key stays valid until `expires_at` (the grace period the merchant chose).
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("replaced_by", sa.Text, nullable=True),
    sa.Index("ix_api_keys_merchant", "merchant_id", "created_at"),
)
