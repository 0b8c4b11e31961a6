"""Each connection's feed: the locations it sells from and whether it is shown each or their sum

Revision ID: 0008_locations_connection_feeds
Revises: 0007_ops_trace_context
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0008_locations_connection_feeds"
down_revision: str | Sequence[str] | None = "0007_ops_trace_context"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Constant defaults: no table rewrite. Existing connections sell from the default
    # location, where single-location stock lives, so what they are shown is unchanged.
    op.add_column(
        "connections",
        sa.Column("locations", pg.ARRAY(sa.Text), nullable=False, server_default=sa.text("'{default}'::text[]")),
        schema="rule_engine",
    )
    op.add_column(
        "connections",
        sa.Column("per_location", sa.Boolean, nullable=False, server_default=sa.false()),
        schema="rule_engine",
    )


def downgrade() -> None:
    op.drop_column("connections", "per_location", schema="rule_engine")
    op.drop_column("connections", "locations", schema="rule_engine")
