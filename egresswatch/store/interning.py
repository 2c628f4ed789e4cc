"""Interning that stays right, and fast, with several agents writing to one PostgreSQL.

Select-then-insert of a host, address, label, executable, process, destination or name binding
races between agents: both find nothing, both insert, and the row exists twice. A batch's names
are therefore interned together (`Ingest._prefetch`), in one short transaction of their own on
PostgreSQL, committed before the batch's transaction refers to the ids:

- tables with a unique key that is never NULL (labels, hostnames, addresses, destinations,
  names, destination_tools): one SELECT of the keys, one INSERT ... ON CONFLICT DO NOTHING of the
  missing ones in sorted key order, one re-SELECT of those another agent inserted first;
- executables (NULLs in the key) and processes (no unique key): the advisory locks of all their
  keys, in sorted order, then one SELECT and one INSERT of the missing rows.

Every agent takes its locks (new unique keys, advisory locks) table by table in the same sorted
order and holds them only for that short transaction, so agents queue and cannot deadlock.
SQLite has one writer: the same statements run on the batch's own connection, without locks.
`intern_row` is the row-at-a-time path for anything the batch pass did not foresee.
"""

import functools
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, TextClause, func, insert, select, text, tuple_
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

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


# -- batches -------------------------------------------------------------------------------

Key = tuple[Any, ...]
CHUNK = 500  # rows per SELECT ... IN: well inside SQLite's and PostgreSQL's parameter limits
_LOCK = text("SELECT pg_advisory_xact_lock(:k)")


def interning(conn: Connection) -> AbstractContextManager[Connection]:
    """Where a batch's new names are interned: on PostgreSQL a short transaction of its own
    (committed before the batch's transaction references the ids, so no row lock outlives it);
    on SQLite, the only writer, the batch's own connection."""
    if conn.dialect.name == "postgresql":
        return conn.engine.begin()
    return nullcontext(conn)


def intern_unique(
    conn: Connection, table: Table, key: Sequence[str], rows: dict[Key, dict[str, Any]]
) -> dict[Key, int]:
    """The ids of `rows` (key tuple -> values to insert) on a table with a UNIQUE(`key`) whose
    values are never NULL: found ones are selected, the missing ones inserted in key order with
    ON CONFLICT DO NOTHING (another writer may win), and those re-selected.

    Inserting in one sorted order means two writers wait on each other's new keys in the same
    order: they queue, they cannot deadlock.
    """
    if conn.dialect.name == "postgresql":
        return _pg_intern_unique(conn, table, tuple(key), rows)
    found = _select_keys(conn, table, key, list(rows))
    missing = sorted(k for k in rows if k not in found)
    if missing:
        cols = [table.c[name] for name in key]
        stmt = _insert_ignore(conn, table, key).returning(table.c.id, *cols)
        for chunk in _chunks(missing):
            for row in conn.execute(stmt, [rows[k] for k in chunk]):
                found[tuple(row[1:])] = int(row[0])
        lost = [k for k in missing if k not in found]  # inserted by a concurrent writer
        if lost:
            found.update(_select_keys(conn, table, key, lost))
    return _complete(table, rows, found)


def insert_ignore(
    conn: Connection, table: Table, key: Sequence[str], rows: list[dict[str, Any]]
) -> None:
    """Insert the id-less `rows` (destination_tools) in key order unless their key exists."""
    ordered = sorted(rows, key=lambda r: tuple(r[name] for name in key))
    if conn.dialect.name == "postgresql" and ordered:
        cols = tuple(ordered[0])
        conn.execute(_pg_insert_arrays(table, cols, tuple(key), False), _arrays(cols, ordered))
        return
    stmt = _insert_ignore(conn, table, key)
    for chunk in _chunks(ordered):
        conn.execute(stmt, chunk)


def _pg_intern_unique(
    conn: Connection, table: Table, key: tuple[str, ...], rows: dict[Key, dict[str, Any]]
) -> dict[Key, int]:
    """intern_unique on PostgreSQL: each step one statement of constant text whatever the
    batch (arrays and unnest), so the driver prepares it once instead of parsing a new
    thousand-parameter statement every batch."""
    found = _pg_select(conn, table, key, list(rows))
    missing = sorted(k for k in rows if k not in found)
    if missing:
        values = [rows[k] for k in missing]
        cols = tuple(values[0])
        for row in conn.execute(_pg_insert_arrays(table, cols, key, True), _arrays(cols, values)):
            found[tuple(row[1:])] = int(row[0])
        lost = [k for k in missing if k not in found]  # inserted by a concurrent writer
        if lost:
            found.update(_pg_select(conn, table, key, lost))
    return _complete(table, rows, found)


def _pg_select(
    conn: Connection, table: Table, key: tuple[str, ...], keys: list[Key]
) -> dict[Key, int]:
    params = {f"k{i}": [k[i] for k in keys] for i in range(len(key))}
    return {tuple(r[1:]): int(r[0]) for r in conn.execute(_pg_select_arrays(table, key), params)}


def _arrays(cols: tuple[str, ...], rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {f"c{i}": [r[c] for r in rows] for i, c in enumerate(cols)}


_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def _pg_type(table: Table, col: str) -> str:
    return str(table.c[col].type.compile(dialect=_PG_DIALECT))


@functools.cache
def _pg_select_arrays(table: Table, key: tuple[str, ...]) -> TextClause:
    names = ", ".join(f'"{k}"' for k in key)
    arrays = ", ".join(f"CAST(:k{i} AS {_pg_type(table, k)}[])" for i, k in enumerate(key))
    # Names and types come from the schema, values only through the parameters.
    rows = f"(SELECT * FROM unnest({arrays}))"  # noqa: S608
    return text(f'SELECT id, {names} FROM "{table.name}" WHERE ({names}) IN {rows}')  # noqa: S608


@functools.cache
def _pg_insert_arrays(
    table: Table, cols: tuple[str, ...], key: tuple[str, ...], returning: bool
) -> TextClause:
    # unnest yields the rows in array order: the sorted order the docstring relies on.
    names = ", ".join(f'"{c}"' for c in cols)
    arrays = ", ".join(f"CAST(:c{i} AS {_pg_type(table, c)}[])" for i, c in enumerate(cols))
    keys = ", ".join(f'"{k}"' for k in key)
    tail = f" RETURNING id, {keys}" if returning else ""
    sql = f'INSERT INTO "{table.name}" ({names}) SELECT * FROM unnest({arrays}) '  # noqa: S608
    return text(f"{sql}ON CONFLICT ({keys}) DO NOTHING{tail}")


def intern_locked(
    conn: Connection,
    table: Table,
    key: Sequence[str],
    narrow: str,
    rows: dict[Key, dict[str, Any]],
) -> dict[Key, int]:
    """The ids of `rows` on a table whose key may hold NULLs or has no unique constraint
    (executables, processes): on PostgreSQL the advisory locks of all keys are taken in one
    sorted order first, then the rows are matched (narrowed by the `narrow` column) and the
    missing ones inserted."""
    if conn.dialect.name == "postgresql":
        locks = sorted({lock_key(table, dict(zip(key, k, strict=True))) for k in rows})
        conn.execute(_LOCK, [{"k": k} for k in locks])
    col = table.c[narrow]
    wanted = sorted({rows[k][narrow] for k in rows}, key=repr)
    found: dict[Key, int] = {}
    plain = [v for v in wanted if v is not None]
    clauses = [col.in_(chunk) for chunk in _chunks(plain)]
    if len(plain) < len(wanted):
        clauses.append(col.is_(None))
    cols = [table.c[name] for name in key]
    for clause in clauses:
        for row in conn.execute(select(table.c.id, *cols).where(clause)):
            found.setdefault(tuple(row[1:]), int(row[0]))
    missing = [k for k in rows if k not in found]
    if missing:
        stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        for chunk in _chunks(missing):
            ids = conn.execute(stmt, [rows[k] for k in chunk]).scalars().all()
            found.update(zip(chunk, (int(i) for i in ids), strict=True))
    return _complete(table, rows, found)


def _complete(table: Table, rows: dict[Key, Any], found: dict[Key, int]) -> dict[Key, int]:
    lost = [k for k in rows if k not in found]
    if lost:  # a concurrent delete (retention): the writer retries the batch's events one by one
        raise KeyError(f"interning {table.name}: {len(lost)} rows neither found nor inserted")
    return {k: found[k] for k in rows}


def _select_keys(
    conn: Connection, table: Table, key: Sequence[str], keys: list[Key]
) -> dict[Key, int]:
    cols = [table.c[name] for name in key]
    found: dict[Key, int] = {}
    for chunk in _chunks(keys):
        where = cols[0].in_([k[0] for k in chunk]) if len(cols) == 1 else tuple_(*cols).in_(chunk)
        for row in conn.execute(select(table.c.id, *cols).where(where)):
            found[tuple(row[1:])] = int(row[0])
    return found


def _insert_ignore(conn: Connection, table: Table, key: Sequence[str]) -> Any:
    ins: Any = pg_insert(table) if conn.dialect.name == "postgresql" else sqlite_insert(table)
    return ins.on_conflict_do_nothing(index_elements=[table.c[name] for name in key])


T = TypeVar("T")


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]
