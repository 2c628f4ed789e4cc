"""Initial schema: interned side tables, the events fact table, its time blocks, DNS answers,
sessions, alerts.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 15:19:22.882829
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "addresses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("addr", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_addresses")),
        sa.UniqueConstraint("addr", name=op.f("uq_addresses_addr")),
    )
    op.create_table(
        "executables",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("sha256", sa.LargeBinary(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_executables")),
        sa.UniqueConstraint("path", "sha256", name=op.f("uq_executables_path")),
    )
    op.create_table(
        "hostnames",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hostnames")),
        sa.UniqueConstraint("name", name=op.f("uq_hostnames_name")),
    )
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
        sa.UniqueConstraint("text", name=op.f("uq_labels_text")),
    )
    op.create_table(
        "destinations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hostname_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.Text(), nullable=True),
        sa.Column("catalog_entry", sa.Text(), nullable=True),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hostname_id"], ["hostnames.id"], name=op.f("fk_destinations_hostname_id_hostnames")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_destinations")),
        sa.UniqueConstraint("hostname_id", name=op.f("uq_destinations_hostname_id")),
    )
    op.create_index(op.f("ix_destinations_category"), "destinations", ["category"], unique=False)

    op.create_table(
        "names",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address_id", sa.Integer(), nullable=False),
        sa.Column("hostname_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.SmallInteger(), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("expires", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["address_id"], ["addresses.id"], name=op.f("fk_names_address_id_addresses")
        ),
        sa.ForeignKeyConstraint(
            ["hostname_id"], ["hostnames.id"], name=op.f("fk_names_hostname_id_hostnames")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_names")),
        sa.UniqueConstraint(
            "address_id", "hostname_id", "source", name=op.f("uq_names_address_id")
        ),
    )
    op.create_index(op.f("ix_names_hostname_id"), "names", ["hostname_id"], unique=False)
    op.create_index(op.f("ix_names_last_seen"), "names", ["last_seen"], unique=False)

    op.create_table(
        "processes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("start_time", sa.Float(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("exe_id", sa.Integer(), nullable=True),
        sa.Column("cmdline", sa.Text(), nullable=False),
        sa.Column("user", sa.Text(), nullable=True),
        sa.Column("ppid", sa.Integer(), nullable=True),
        sa.Column("ancestry", sa.Text(), nullable=False),
        sa.Column("netns", sa.BigInteger(), nullable=True),
        sa.Column("container", sa.Text(), nullable=True),
        sa.Column("tool", sa.Text(), nullable=True),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["exe_id"], ["executables.id"], name=op.f("fk_processes_exe_id_executables")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_processes")),
    )
    op.create_index(op.f("ix_processes_exe_id"), "processes", ["exe_id"], unique=False)
    op.create_index("ix_processes_pid_start", "processes", ["pid", "start_time"], unique=False)
    op.create_index(op.f("ix_processes_tool"), "processes", ["tool"], unique=False)

    op.create_table(
        "destination_tools",
        sa.Column("destination_id", sa.Integer(), nullable=False),
        sa.Column("tool", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["destination_id"],
            ["destinations.id"],
            name=op.f("fk_destination_tools_destination_id_destinations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("destination_id", "tool", name=op.f("pk_destination_tools")),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("flags", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("src_id", sa.Integer(), nullable=False),
        sa.Column("dst_id", sa.Integer(), nullable=False),
        sa.Column("ports", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status_id", sa.Integer(), nullable=False),
        sa.Column("process_id", sa.Integer(), nullable=True),
        sa.Column("destination_id", sa.Integer(), nullable=True),
        sa.Column("tool_id", sa.Integer(), nullable=True),
        sa.Column("name_id", sa.Integer(), nullable=True),
        sa.Column("detail_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["destination_id"],
            ["destinations.id"],
            name=op.f("fk_events_destination_id_destinations"),
        ),
        sa.ForeignKeyConstraint(
            ["detail_id"], ["labels.id"], name=op.f("fk_events_detail_id_labels")
        ),
        sa.ForeignKeyConstraint(
            ["dst_id"], ["addresses.id"], name=op.f("fk_events_dst_id_addresses")
        ),
        sa.ForeignKeyConstraint(
            ["name_id"], ["hostnames.id"], name=op.f("fk_events_name_id_hostnames")
        ),
        sa.ForeignKeyConstraint(
            ["process_id"], ["processes.id"], name=op.f("fk_events_process_id_processes")
        ),
        sa.ForeignKeyConstraint(
            ["src_id"], ["addresses.id"], name=op.f("fk_events_src_id_addresses")
        ),
        sa.ForeignKeyConstraint(
            ["status_id"], ["labels.id"], name=op.f("fk_events_status_id_labels")
        ),
        sa.ForeignKeyConstraint(["tool_id"], ["labels.id"], name=op.f("fk_events_tool_id_labels")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_table(
        "destination_blocks",
        sa.Column("destination_id", sa.Integer(), nullable=False),
        sa.Column(
            "block",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["destination_id"],
            ["destinations.id"],
            name=op.f("fk_destination_blocks_destination_id_destinations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("destination_id", "block", name=op.f("pk_destination_blocks")),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "ix_events_tool_id",
        "events",
        ["tool_id"],
        unique=False,
        sqlite_where=sa.text("tool_id IS NOT NULL"),
        postgresql_where=sa.text("tool_id IS NOT NULL"),
    )
    op.create_table(
        "event_blocks",
        sa.Column(
            "block",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("first_ts", sa.Float(), nullable=False),
        sa.Column("last_ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("block", name=op.f("pk_event_blocks")),
    )

    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tool", sa.Text(), nullable=True),
        sa.Column("process_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("started", sa.Float(), nullable=False),
        sa.Column("ended", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["process_id"], ["processes.id"], name=op.f("fk_sessions_process_id_processes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_index(op.f("ix_sessions_process_id"), "sessions", ["process_id"], unique=False)
    op.create_index(op.f("ix_sessions_started"), "sessions", ["started"], unique=False)

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("acknowledged", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_alerts_event_id_events"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_alerts_session_id_sessions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_event_id"), "alerts", ["event_id"], unique=False)
    op.create_index(op.f("ix_alerts_session_id"), "alerts", ["session_id"], unique=False)
    op.create_index(op.f("ix_alerts_ts"), "alerts", ["ts"], unique=False)

    op.create_table(
        "dns_answers",
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("ord", sa.SmallInteger(), nullable=False),
        sa.Column("hostname_id", sa.Integer(), nullable=True),
        sa.Column("type_id", sa.Integer(), nullable=False),
        sa.Column("address_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.Text(), nullable=True),
        sa.Column("ttl", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["address_id"], ["addresses.id"], name=op.f("fk_dns_answers_address_id_addresses")
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_dns_answers_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["hostname_id"], ["hostnames.id"], name=op.f("fk_dns_answers_hostname_id_hostnames")
        ),
        sa.ForeignKeyConstraint(
            ["type_id"], ["labels.id"], name=op.f("fk_dns_answers_type_id_labels")
        ),
        sa.PrimaryKeyConstraint("event_id", "ord", name=op.f("pk_dns_answers")),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    # Dependents first; dropping a table drops its indexes.
    op.drop_table("dns_answers")
    op.drop_table("alerts")
    op.drop_table("sessions")
    op.drop_table("destination_blocks")
    op.drop_table("event_blocks")
    op.drop_table("events")
    op.drop_table("destination_tools")
    op.drop_table("processes")
    op.drop_table("names")
    op.drop_table("destinations")
    op.drop_table("labels")
    op.drop_table("hostnames")
    op.drop_table("executables")
    op.drop_table("addresses")
