"""Dead letters: events this service's consumers could not apply

Revision ID: 0004_dead_letters
Revises: 0002
Create Date: 2026-11-30 05:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0004_dead_letters'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('dead_letters',
    sa.Column('dead_letter_id', sa.UUID(), nullable=False),
    sa.Column('merchant_id', sa.UUID(), nullable=False),
    sa.Column('consumer_group', sa.Text(), nullable=False),
    sa.Column('topic', sa.Text(), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('key', sa.LargeBinary(), nullable=True),
    sa.Column('value', sa.LargeBinary(), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=True),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('dead_lettered_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('replayed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('replay_count', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('dead_letter_id'),
    schema='order_ingest'
    )
    op.create_index('ix_dead_letters_merchant_time', 'dead_letters', ['merchant_id', 'dead_lettered_at'], unique=False, schema='order_ingest')


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_dead_letters_merchant_time', table_name='dead_letters', schema='order_ingest')
    op.drop_table('dead_letters', schema='order_ingest')
