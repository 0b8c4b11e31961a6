"""adaptive buffer: sales rates per SKU and channel, connections' measured display delays

Revision ID: 0009_adaptive_rates_delays
Revises: 0008_locations_connection_feeds
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0009_adaptive_rates_delays"
down_revision: str | Sequence[str] | None = "0008_locations_connection_feeds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "rule_engine"


def upgrade() -> None:
    op.create_table(
        "sales_rates",
        sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "sku", "channel"),
        schema=SCHEMA,
    )
    op.create_table(
        "connection_delays",
        sa.Column("connection_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("p50_s", sa.Float(), nullable=False),
        sa.Column("p95_s", sa.Float(), nullable=False),
        sa.Column("samples", sa.BigInteger(), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection_id"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_rule_engine_connection_delays_merchant_id", "connection_delays", ["merchant_id"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_index("ix_rule_engine_connection_delays_merchant_id", table_name="connection_delays", schema=SCHEMA)
    op.drop_table("connection_delays", schema=SCHEMA)
    op.drop_table("sales_rates", schema=SCHEMA)
