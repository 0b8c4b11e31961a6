"""trace context: the W3C traceparent an outbox row carries to its Kafka record

Revision ID: 0007_ops_trace_context
Revises: 0006_outbox_retention
Create Date: 2026-11-30 08:20:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0007_ops_trace_context'
down_revision: Union[str, Sequence[str], None] = '0006_outbox_retention'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('outbox', sa.Column('trace_context', sa.Text(), nullable=True), schema='rule_engine')


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column('outbox', 'trace_context', schema='rule_engine')
