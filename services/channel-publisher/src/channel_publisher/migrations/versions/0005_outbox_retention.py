"""outbox retention: published rows are kept (published_at) and the broker they went to is recorded

Revision ID: 0005_outbox_retention
Revises: 0004_dead_letters
Create Date: 2026-11-30 04:50:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0005_outbox_retention'
down_revision: Union[str, Sequence[str], None] = '0004_dead_letters'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('outbox', sa.Column('published_at', sa.DateTime(timezone=True), nullable=True), schema='channel_publisher')
    op.create_index('outbox_unpublished', 'outbox', ['id'], unique=False, schema='channel_publisher', postgresql_where=sa.text('published_at IS NULL'))
    op.create_index('outbox_published_at', 'outbox', ['published_at'], unique=False, schema='channel_publisher', postgresql_where=sa.text('published_at IS NOT NULL'))
    op.create_table('outbox_broker',
    sa.Column('id', sa.SmallInteger(), nullable=False),
    sa.Column('cluster_id', sa.Text(), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('id = 1', name='outbox_broker_one_row'),
    sa.PrimaryKeyConstraint('id'),
    schema='channel_publisher'
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('outbox_broker', schema='channel_publisher')
    op.drop_index('outbox_published_at', table_name='outbox', schema='channel_publisher')
    op.drop_index('outbox_unpublished', table_name='outbox', schema='channel_publisher')
    op.execute("DELETE FROM channel_publisher.outbox WHERE published_at IS NOT NULL")
    op.drop_column('outbox', 'published_at', schema='channel_publisher')
