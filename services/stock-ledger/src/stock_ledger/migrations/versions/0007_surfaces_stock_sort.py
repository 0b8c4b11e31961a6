"""The stock list's sort orders: indexes by SKU in byte order, by available and by updated_at

Revision ID: 0007_surfaces_stock_sort
Revises: 0007_ops_trace_context
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_surfaces_stock_sort"
down_revision: str | Sequence[str] | None = "0007_ops_trace_context"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        'CREATE INDEX IF NOT EXISTS ix_stock_items_sku ON stock_ledger.stock_items (merchant_id, location, (sku COLLATE "C"))'
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_stock_items_available ON stock_ledger.stock_items "
        '(merchant_id, location, (on_hand - reserved), (sku COLLATE "C"))'
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_stock_items_updated ON stock_ledger.stock_items "
        '(merchant_id, location, updated_at, (sku COLLATE "C"))'
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS stock_ledger.ix_stock_items_updated")
    op.execute("DROP INDEX IF EXISTS stock_ledger.ix_stock_items_available")
    op.execute("DROP INDEX IF EXISTS stock_ledger.ix_stock_items_sku")
