"""The locations each connection sells from, in priority order (existing ones: the default location)

Revision ID: 0010_locations_conn_locations
Revises: 0009_console_connection_history
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0010_locations_conn_locations"
down_revision: str | Sequence[str] | None = "0009_console_connection_history"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column(
        "connections",
        sa.Column("locations", pg.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{default}'::text[]")),
        schema="channel_publisher",
    )


def downgrade() -> None:
    op.drop_column("connections", "locations", schema="channel_publisher")
