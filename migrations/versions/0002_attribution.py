"""Attribution method and ambiguous names: events.attribution_method, events.name_candidates.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("attribution_method", sa.SmallInteger(), nullable=True))
        batch.add_column(sa.Column("name_candidates", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("name_candidates")
        batch.drop_column("attribution_method")
