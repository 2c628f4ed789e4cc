"""Fleet node: which agent stored each event, session and alert; one status row per node.

events.node_id (an interned label, no index), sessions.node and alerts.node (indexed text).
Rows stored before this revision keep NULL, shown as "unknown": on a shared PostgreSQL the
migrating host's name would be wrong for every other agent's rows, and on SQLite a guess would
be a claim the store cannot back. agent_status is recreated keyed by (name, node): it only
holds the latest heartbeat, rewritten every few seconds, so nothing of value is dropped.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 06:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _status_table(keys: Sequence[str]) -> None:
    columns: list[sa.schema.SchemaItem] = [
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.Column("last_event_ts", sa.Float(), nullable=True),
        sa.Column("queue_depth", sa.Integer(), nullable=False),
        sa.Column("counters", sa.Text(), nullable=False),
    ]
    if "node" in keys:
        columns.append(sa.Column("node", sa.Text(), nullable=False))
    op.create_table(
        "agent_status", *columns, sa.PrimaryKeyConstraint(*keys, name=op.f("pk_agent_status"))
    )


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("node_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(batch.f("fk_events_node_id_labels"), "labels", ["node_id"], ["id"])
    for table in ("sessions", "alerts"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("node", sa.Text(), nullable=True))
            batch.create_index(batch.f(f"ix_{table}_node"), ["node"], unique=False)
    op.drop_table("agent_status")
    _status_table(("name", "node"))


def downgrade() -> None:
    op.drop_table("agent_status")
    _status_table(("name",))
    for table in ("alerts", "sessions"):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(batch.f(f"ix_{table}_node"))
            batch.drop_column("node")
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint(batch.f("fk_events_node_id_labels"), type_="foreignkey")
        batch.drop_column("node_id")
