"""display delays: measured samples per connection, the open read-back probe, what was announced;
the adaptive buffer's reason on pending pushes and in the history

Revision ID: 0011_adaptive_display_delays
Revises: 0010_locations_conn_locations
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0011_adaptive_display_delays"
down_revision: str | Sequence[str] | None = "0010_locations_conn_locations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "channel_publisher"


def upgrade() -> None:
    op.add_column("pending_pushes", sa.Column("reason", sa.Text(), nullable=True), schema=SCHEMA)
    op.add_column("pushes", sa.Column("reason", sa.Text(), nullable=True), schema=SCHEMA)
    op.create_table(
        "display_delays",
        sa.Column("sample_id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("connection_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("delay_s", sa.Float(), nullable=False),
        sa.Column("how", sa.Text(), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sample_id"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_display_delays_connection", "display_delays", ["connection_id", "sample_id"], schema=SCHEMA
    )
    op.create_table(
        "display_probes",
        sa.Column("connection_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("origin_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reads", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_read_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection_id"),
        schema=SCHEMA,
    )
    op.create_table(
        "display_delay_state",
        sa.Column("connection_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("last_push_id", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("last_finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("announced_p95_s", sa.Float(), nullable=True),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("connection_id"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("pushes", "reason", schema=SCHEMA)
    op.drop_column("pending_pushes", "reason", schema=SCHEMA)
    op.drop_table("display_delay_state", schema=SCHEMA)
    op.drop_table("display_probes", schema=SCHEMA)
    op.drop_index("ix_display_delays_connection", table_name="display_delays", schema=SCHEMA)
    op.drop_table("display_delays", schema=SCHEMA)
