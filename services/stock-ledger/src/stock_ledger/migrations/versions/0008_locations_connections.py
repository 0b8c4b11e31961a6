"""Where each channel connection sells from (projection of connections.v1)

Revision ID: 0008_locations_connections
Revises: 0007_security_api_keys
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0008_locations_connections"
down_revision: str | Sequence[str] | None = "0007_security_api_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A new table: nothing existing changes. A connection not in it yet sells from the
    # default location, where every existing stock row and order line already is.
    op.create_table(
        "connection_locations",
        sa.Column("connection_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("locations", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema="stock_ledger",
    )


def downgrade() -> None:
    op.drop_table("connection_locations", schema="stock_ledger")
