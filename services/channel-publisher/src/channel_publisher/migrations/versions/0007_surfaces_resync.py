"""pending_pushes.resync: a resync sends the quantity the channel already accepted once more

Revision ID: 0007_surfaces_resync
Revises: 0007_ops_trace_context
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_surfaces_resync"
down_revision: str | Sequence[str] | None = "0007_ops_trace_context"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "pending_pushes",
        sa.Column("resync", sa.Boolean(), nullable=False, server_default=sa.false()),
        schema="channel_publisher",
    )


def downgrade() -> None:
    op.execute("DELETE FROM channel_publisher.pending_pushes WHERE resync")
    op.drop_column("pending_pushes", "resync", schema="channel_publisher")
