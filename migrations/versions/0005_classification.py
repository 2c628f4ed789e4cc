"""Classification provenance: how a destination's category was decided and why a tool was named.

destinations.category_source / category_confidence (classify/verdict.py: catalog, cname, vendor,
list, heuristic, behaviour, address, none) and processes.tool_reason (attribute/evidence.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 15:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("destinations") as batch:
        batch.add_column(sa.Column("category_source", sa.Text(), nullable=True))
        batch.add_column(sa.Column("category_confidence", sa.Float(), nullable=True))
    with op.batch_alter_table("processes") as batch:
        batch.add_column(sa.Column("tool_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("processes") as batch:
        batch.drop_column("tool_reason")
    with op.batch_alter_table("destinations") as batch:
        batch.drop_column("category_confidence")
        batch.drop_column("category_source")
