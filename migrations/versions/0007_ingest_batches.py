"""ingest_batches: ids of committed writer batches, so a re-drained spool writes nothing twice.

Revision ID: 0007
Revises: 0005 (the lead re-chains it after 0006 at merge)
Create Date: 2026-12-05 06:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ingest_batches",
        sa.Column("batch_id", sa.String(length=96), nullable=False),
        sa.Column("written_at", sa.Float(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_ingest_batches")),
    )


def downgrade() -> None:
    op.drop_table("ingest_batches")
