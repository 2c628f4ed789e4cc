"""timeline_minutes: event counts per minute by tool label, destination and process, kept by the
writer with the events (store/rollup.py), so /api/timeline reads whole minutes from here.

The upgrade fills it from the events already stored (one GROUP BY per dimension).

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-05 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# DIMENSION_CODES of egresswatch/store/schema.py at this revision, and the events column of each.
DIMENSIONS = ((0, "tool_id"), (1, "destination_id"), (2, "process_id"), (3, "node_id"))


def upgrade() -> None:
    op.create_table(
        "timeline_minutes",
        sa.Column("dimension", sa.SmallInteger(), nullable=False),
        sa.Column("minute", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("dimension", "minute", "key", name=op.f("pk_timeline_minutes")),
        sqlite_with_rowid=False,
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    events = sa.table("events", sa.column("ts", sa.Float), *(sa.column(c) for _, c in DIMENSIONS))
    target = sa.table(
        "timeline_minutes", *(sa.column(c) for c in ("dimension", "minute", "key", "count"))
    )
    # The writer's minute: floor(ts / 60) with float division (ts is positive on SQLite).
    minute = (
        sa.cast(events.c.ts / 60, sa.Integer)
        if sqlite
        else sa.cast(sa.func.floor(events.c.ts / 60), sa.BigInteger)
    )
    for code, column in DIMENSIONS:
        key = sa.func.coalesce(events.c[column], 0)
        counted = sa.select(sa.literal(code), minute, key, sa.func.count()).group_by(minute, key)
        op.execute(target.insert().from_select(["dimension", "minute", "key", "count"], counted))


def downgrade() -> None:
    op.drop_table("timeline_minutes")
