"""Bundles: their components, and the components each bundle order line reserved

Revision ID: 0009_locations_bundles
Revises: 0008_locations_connections
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0009_locations_bundles"
down_revision: str | Sequence[str] | None = "0008_locations_connections"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "stock_ledger"


def upgrade() -> None:
    op.create_table(
        "bundle_components",
        sa.Column("merchant_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("bundle_sku", sa.Text, primary_key=True),
        sa.Column("component_sku", sa.Text, primary_key=True),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_bundle_components_quantity"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_bundle_components_component", "bundle_components", ["merchant_id", "component_sku"], schema=SCHEMA
    )
    op.create_table(
        "order_line_components",
        sa.Column("merchant_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("external_order_id", sa.Text, primary_key=True),
        sa.Column("line_id", sa.Text, primary_key=True),
        sa.Column("component_sku", sa.Text, primary_key=True),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("order_line_components", schema=SCHEMA)
    op.drop_index("ix_bundle_components_component", table_name="bundle_components", schema=SCHEMA)
    op.drop_table("bundle_components", schema=SCHEMA)
