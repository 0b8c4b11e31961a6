"""Stock imports as jobs: the job, its stored file, its refused rows

Revision ID: 0006_import_jobs
Revises: 0005_outbox_retention
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_import_jobs"
down_revision: str | Sequence[str] | None = "0005_outbox_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "stock_ledger"


def upgrade() -> None:
    op.create_table(
        "import_jobs",
        sa.Column("job_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("merchant_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("format", sa.Text(), nullable=False),
        sa.Column("atomic", sa.Boolean(), nullable=False),
        sa.Column("default_as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("lines_total", sa.BigInteger(), nullable=False),
        sa.Column("lines_done", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("applied", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("ignored_stale", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("refused", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_import_jobs_merchant", "import_jobs", ["merchant_id", "created_at"], schema=SCHEMA)
    op.create_index(
        "ix_import_jobs_pending",
        "import_jobs",
        ["created_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("state IN ('queued', 'running')"),
    )
    op.create_table(
        "import_job_parts",
        sa.Column(
            "job_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey(f"{SCHEMA}.import_jobs.job_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("part", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "import_job_refusals",
        sa.Column(
            "job_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey(f"{SCHEMA}.import_jobs.job_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("line", sa.BigInteger(), primary_key=True),
        sa.Column("field", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("import_job_refusals", schema=SCHEMA)
    op.drop_table("import_job_parts", schema=SCHEMA)
    op.drop_index("ix_import_jobs_pending", table_name="import_jobs", schema=SCHEMA)
    op.drop_index("ix_import_jobs_merchant", table_name="import_jobs", schema=SCHEMA)
    op.drop_table("import_jobs", schema=SCHEMA)
