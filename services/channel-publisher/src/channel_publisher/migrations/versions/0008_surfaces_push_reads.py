"""Indexes for the console's reads of the push history: a channel's errors, a SKU's pushes

Revision ID: 0008_surfaces_push_reads
Revises: 0007_surfaces_resync
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_surfaces_push_reads"
down_revision: str | Sequence[str] | None = "0007_surfaces_resync"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_pushes_connection_problems",
        "pushes",
        ["connection_id", "status", "push_id"],
        schema="channel_publisher",
        postgresql_where=sa.text("status <> 'accepted'"),
    )
    op.create_index("ix_pushes_merchant_sku", "pushes", ["merchant_id", "sku", "push_id"], schema="channel_publisher")


def downgrade() -> None:
    op.drop_index("ix_pushes_merchant_sku", table_name="pushes", schema="channel_publisher")
    op.drop_index("ix_pushes_connection_problems", table_name="pushes", schema="channel_publisher")
