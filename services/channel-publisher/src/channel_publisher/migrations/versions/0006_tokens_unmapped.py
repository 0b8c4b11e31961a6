"""access tokens per connection, unmapped SKUs summarised per connection

Revision ID: 0006_tokens_unmapped
Revises: 0005_outbox_retention
Create Date: 2026-11-30 04:50:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_tokens_unmapped"
down_revision: str | Sequence[str] | None = '0005_outbox_retention'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "access_tokens",
        sa.Column("connection_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("access_token", sa.Text, nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refresh_token", sa.Text, nullable=True),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        schema="channel_publisher",
    )
    op.create_table(
        "unmapped_skus",
        sa.Column("connection_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("sku", sa.Text, primary_key=True),
        sa.Column("location", sa.Text, primary_key=True),
        sa.Column("changes", sa.BigInteger, nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_quantity", sa.BigInteger, nullable=False),
        schema="channel_publisher",
    )


def downgrade() -> None:
    op.drop_table("unmapped_skus", schema="channel_publisher")
    op.drop_table("access_tokens", schema="channel_publisher")
