"""rules next_check_at: the scheduler reads only rules whose boundary is due

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 18:20:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('rules', sa.Column('next_check_at', sa.DateTime(timezone=True), nullable=True), schema='rule_engine')
    op.create_index(op.f('ix_rule_engine_rules_next_check_at'), 'rules', ['next_check_at'], unique=False, schema='rule_engine')
    # Every scheduled rule is checked at the first tick, which sets its real next boundary.
    op.execute(
        "UPDATE rule_engine.rules SET next_check_at = now() "
        "WHERE starts_at IS NOT NULL OR ends_at IS NOT NULL OR weekly_windows != '[]'::jsonb"
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_rule_engine_rules_next_check_at'), table_name='rules', schema='rule_engine')
    op.drop_column('rules', 'next_check_at', schema='rule_engine')
