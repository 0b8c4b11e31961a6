"""A connection's pushes in push_id order: the console's channel page and last success

Revision ID: 0009_console_connection_history
Revises: 0008_surfaces_push_reads
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_console_connection_history"
down_revision: str | Sequence[str] | None = "0008_surfaces_push_reads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_pushes_connection", "pushes", ["connection_id", "push_id"], schema="channel_publisher")


def downgrade() -> None:
    op.drop_index("ix_pushes_connection", table_name="pushes", schema="channel_publisher")
