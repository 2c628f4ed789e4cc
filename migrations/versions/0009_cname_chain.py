"""The CNAME chain of each event's destination name, as seen in DNS answers on the box.

events.cname_chain: JSON list (the name, then each CNAME target in order) when the name came with
a chain, else NULL (a lookup's own answer, or the answer a flow or TLS/QUIC hello was named from).
Old rows stay NULL: their chains were not kept.

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-05 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("cname_chain", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("cname_chain")
