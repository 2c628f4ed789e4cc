"""agent_status: the running agent's counters, queue depth and last event time, for the web.

Revision ID: 0004
Revises: 0003 (chained after the alerts branch's 0003 when it was merged in)
Create Date: 2026-12-04 15:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_status",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.Column("last_event_ts", sa.Float(), nullable=True),
        sa.Column("queue_depth", sa.Integer(), nullable=False),
        sa.Column("counters", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_agent_status")),
    )


def downgrade() -> None:
    op.drop_table("agent_status")
