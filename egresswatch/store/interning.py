"""Interning that stays right with several agents writing to one PostgreSQL.

Select-then-insert of a host, address, label, executable, process, destination or name binding
races between agents: both find nothing, both insert, and the row exists twice. On PostgreSQL
each lookup-or-insert therefore runs in its own short transaction that first takes a
transaction-scoped advisory lock on a hash of (table, values): the second agent waits, then
finds the first one's committed row. The lock and the new row are released/committed at once,
so no lock is held across a batch (two agents interning in different orders cannot deadlock),
and the batch's own transaction only references committed ids. SQLite has one writer: it keeps
the plain path on the batch's connection.
"""

import hashlib
from typing import Any

from sqlalchemy import Connection, Table, func, select

from egresswatch.store.statements import select_or_insert


def lock_key(table: Table, values: dict[str, Any]) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock, the same in every agent."""
    text = repr((table.name, sorted(values.items())))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), signed=True)


def intern_row(
    conn: Connection, table: Table, values: dict[str, Any], extra: dict[str, Any] | None = None
) -> int:
    """The id of the row with `values`, inserted (with `extra`) if there is none."""
    if conn.dialect.name != "postgresql":
        return select_or_insert(conn, table, values, extra)
    with conn.engine.begin() as own:
        own.execute(select(func.pg_advisory_xact_lock(lock_key(table, values))))
        return select_or_insert(own, table, values, extra)


def insert_missing(
    conn: Connection, table: Table, values: dict[str, Any], extra: dict[str, Any]
) -> None:
    """Insert the id-less row with key `values` unless it exists (destination_tools)."""
    if conn.dialect.name != "postgresql":
        _insert_if_absent(conn, table, values, extra)
        return
    with conn.engine.begin() as own:
        own.execute(select(func.pg_advisory_xact_lock(lock_key(table, values))))
        _insert_if_absent(own, table, values, extra)


def _insert_if_absent(
    conn: Connection, table: Table, values: dict[str, Any], extra: dict[str, Any]
) -> None:
    found = conn.execute(select(table.c[next(iter(values))]).filter_by(**values)).first()
    if found is None:
        conn.execute(table.insert().values(**values, **extra))
