"""The SQL the ingest runs, built once: get-or-create, batch id allocation with the id blocks'
time ranges and destinations, seen-aggregates.
"""

import functools
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Float,
    Table,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from egresswatch.store.schema import (
    BLOCK_BITS,
    Address,
    Destination,
    DestinationBlock,
    DestinationTool,
    DnsAnswerRow,
    EventBlock,
    EventRow,
    Executable,
    Hostname,
    Label,
    NameBinding,
    Process,
)

T_LABEL: Table = Label.__table__  # type: ignore[assignment]
T_HOST: Table = Hostname.__table__  # type: ignore[assignment]
T_ADDR: Table = Address.__table__  # type: ignore[assignment]
T_EXE: Table = Executable.__table__  # type: ignore[assignment]
T_PROC: Table = Process.__table__  # type: ignore[assignment]
T_DEST: Table = Destination.__table__  # type: ignore[assignment]
T_DTOOL: Table = DestinationTool.__table__  # type: ignore[assignment]
T_NAME: Table = NameBinding.__table__  # type: ignore[assignment]
T_EVENT: Table = EventRow.__table__  # type: ignore[assignment]
T_ANSWER: Table = DnsAnswerRow.__table__  # type: ignore[assignment]
T_BLOCK: Table = EventBlock.__table__  # type: ignore[assignment]
T_DBLOCK: Table = DestinationBlock.__table__  # type: ignore[assignment]
# Looked up once: attribute access on a ColumnCollection is slow on the hot path.
LABEL_TEXT: Column[Any] = T_LABEL.c.text
HOST_NAME: Column[Any] = T_HOST.c.name
ADDR: Column[Any] = T_ADDR.c.addr


def greatest(col: Column[Any], value: Any) -> Any:
    return case((col < value, value), else_=col)


def least(col: Column[Any], value: Any) -> Any:
    return case((col > value, value), else_=col)


def seen_update(table: Table, where: Any) -> Any:
    return (
        update(table)
        .where(where)
        .values(
            first_seen=least(table.c.first_seen, bindparam("b_first", type_=Float)),
            last_seen=greatest(table.c.last_seen, bindparam("b_last", type_=Float)),
            count=table.c.count + bindparam("b_n"),
        )
    )


DEST_SEEN = seen_update(T_DEST, T_DEST.c.id == bindparam("b_id"))
DEST_CLASS = (
    update(T_DEST)
    .where(T_DEST.c.id == bindparam("b_id"))
    .values(category=bindparam("b_cat"), catalog_entry=bindparam("b_entry"))
    .values(category_source=bindparam("b_src"), category_confidence=bindparam("b_conf"))
)
DTOOL_SEEN = seen_update(
    T_DTOOL,
    (T_DTOOL.c.destination_id == bindparam("b_id")) & (T_DTOOL.c.tool == bindparam("b_tool")),
)
_B_EXP = bindparam("b_exp", type_=Float)
NAME_SEEN = (
    update(T_NAME)
    .where(T_NAME.c.id == bindparam("b_id"))
    .values(
        last_seen=greatest(T_NAME.c.last_seen, bindparam("b_last", type_=Float)),
        # A binding from an SNI has no expiry (NULL); a DNS answer extends it to ts + ttl.
        expires=case(
            (
                or_(
                    T_NAME.c.expires.is_(None),
                    T_NAME.c.expires < func.coalesce(_B_EXP, T_NAME.c.expires),
                ),
                _B_EXP,
            ),
            else_=T_NAME.c.expires,
        ),
    )
)


# PostgreSQL: each aggregate is one UPDATE ... FROM unnest(arrays) instead of one UPDATE per row,
# after a SELECT that locks the rows in key order (FOR NO KEY UPDATE, as UPDATE itself locks, so
# it does not wait on the key-share locks of other agents' foreign-key checks): agents updating
# the same rows queue in one order and cannot deadlock.
PG_AGGREGATES: dict[str, tuple[Any, Any]] = {
    "destinations": (
        text(
            "SELECT id FROM destinations WHERE id = ANY(CAST(:b_id AS INTEGER[])) "
            "ORDER BY id FOR NO KEY UPDATE"
        ),
        text(
            "UPDATE destinations d SET first_seen = LEAST(d.first_seen, v.f), "
            "last_seen = GREATEST(d.last_seen, v.l), count = d.count + v.n "
            "FROM unnest(CAST(:b_id AS INTEGER[]), CAST(:b_first AS FLOAT[]), "
            "CAST(:b_last AS FLOAT[]), CAST(:b_n AS BIGINT[])) AS v(id, f, l, n) "
            "WHERE d.id = v.id"
        ),
    ),
    "classes": (
        None,  # locked by "destinations", which runs first on the same rows
        text(
            "UPDATE destinations d SET category = v.c, catalog_entry = v.e, "
            "category_source = v.s, category_confidence = v.f "
            "FROM unnest(CAST(:b_id AS INTEGER[]), CAST(:b_cat AS TEXT[]), "
            "CAST(:b_entry AS TEXT[]), CAST(:b_src AS TEXT[]), CAST(:b_conf AS FLOAT[])) "
            "AS v(id, c, e, s, f) WHERE d.id = v.id"
        ),
    ),
    "destination_tools": (
        text(
            "SELECT 1 FROM destination_tools WHERE (destination_id, tool) IN (SELECT * FROM "
            "unnest(CAST(:b_id AS INTEGER[]), CAST(:b_tool AS TEXT[]))) "
            "ORDER BY destination_id, tool FOR NO KEY UPDATE"
        ),
        text(
            "UPDATE destination_tools t SET first_seen = LEAST(t.first_seen, v.f), "
            "last_seen = GREATEST(t.last_seen, v.l), count = t.count + v.n "
            "FROM unnest(CAST(:b_id AS INTEGER[]), CAST(:b_tool AS TEXT[]), "
            "CAST(:b_first AS FLOAT[]), CAST(:b_last AS FLOAT[]), CAST(:b_n AS BIGINT[])) "
            "AS v(id, tool, f, l, n) WHERE t.destination_id = v.id AND t.tool = v.tool"
        ),
    ),
    "names": (
        text(
            "SELECT id FROM names WHERE id = ANY(CAST(:b_id AS INTEGER[])) "
            "ORDER BY id FOR NO KEY UPDATE"
        ),
        text(
            "UPDATE names n SET last_seen = GREATEST(n.last_seen, v.l), "
            "expires = CASE WHEN n.expires IS NULL OR n.expires < COALESCE(v.x, n.expires) "
            "THEN v.x ELSE n.expires END "
            "FROM unnest(CAST(:b_id AS INTEGER[]), CAST(:b_last AS FLOAT[]), "
            "CAST(:b_exp AS FLOAT[])) AS v(id, l, x) WHERE n.id = v.id"
        ),
    ),
}


def update_many(conn: Connection, which: str, statement: Any, params: list[dict[str, Any]]) -> None:
    """Run the aggregate update `statement` (executemany of `params`, rows in key order), or
    on PostgreSQL its one-statement form PG_AGGREGATES[which] over the same rows as arrays."""
    if conn.dialect.name != "postgresql":
        conn.execute(statement, params)
        return
    lock, update_ = PG_AGGREGATES[which]
    arrays = {k: [p[k] for p in params] for k in params[0]}
    if lock is not None:
        conn.execute(lock, {k: v for k, v in arrays.items() if k in ("b_id", "b_tool")})
    conn.execute(update_, arrays)


def insert_events(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the rows with one executemany; ids are allocated first so answers can refer to them.
    Then widen the touched blocks in `event_blocks` and `destination_blocks`.

    SQLite: max(id) + 1... is safe because this writer is the only one. PostgreSQL: the
    column's sequence, so several agents may share one database.
    """
    dialect = conn.dialect.name
    if dialect == "sqlite":
        start = conn.execute(select(func.max(T_EVENT.c.id))).scalar() or 0
        ids = list(range(start + 1, start + 1 + len(rows)))
    elif dialect == "postgresql":
        ids = list(conn.execute(_PG_NEXT_IDS, {"n": len(rows)}).scalars())
    else:
        raise ValueError(f"the event store does not support {dialect}")
    for row_id, row in zip(ids, rows, strict=True):
        row["id"] = row_id
    insert_rows(conn, T_EVENT, rows)
    record_blocks(conn, [(r["id"], r["ts"]) for r in rows])
    record_destinations(conn, [(r["id"], r["destination_id"]) for r in rows])
    return ids


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert `rows` (dicts with the same keys): PostgreSQL's COPY, several times faster than
    a multi-row INSERT for a batch; elsewhere one executemany."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), rows)
        return
    import psycopg  # noqa: PLC0415 (the optional `postgres` extra)

    cols = list(rows[0])
    copy = psycopg.sql.SQL("COPY {} ({}) FROM STDIN").format(
        psycopg.sql.Identifier(table.name),
        psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, cols)),
    )
    raw: Any = conn.connection.driver_connection  # psycopg's, inside this transaction
    try:
        with raw.cursor() as cur, cur.copy(copy) as out:
            for row in rows:
                out.write_row([row[c] for c in cols])
    except psycopg.Error as err:
        # As SQLAlchemy would have raised it: the writer retries an OperationalError (server
        # gone) and isolates the bad event of a DataError.
        if conn.dialect.is_disconnect(err, raw, None):  # type: ignore[arg-type]
            conn.invalidate(err)
        raise DBAPIError.instance(
            f"COPY {table.name}", None, err, psycopg.Error, dialect=conn.dialect
        ) from err


def record_blocks(conn: Connection, stamps: list[tuple[int, float]]) -> None:
    """Widen each touched id block's [first_ts, last_ts] to cover the new events' times."""
    spans: dict[int, tuple[float, float]] = {}
    for row_id, ts in stamps:
        block = row_id >> BLOCK_BITS
        lo, hi = spans.get(block, (ts, ts))
        spans[block] = (min(lo, ts), max(hi, ts))
    if not spans:
        return
    params = [{"block": b, "first_ts": lo, "last_ts": hi} for b, (lo, hi) in sorted(spans.items())]
    conn.execute(_upsert_block(conn.dialect.name), params)


def record_destinations(conn: Connection, refs: list[tuple[int, int | None]]) -> None:
    """Note the (destination, block) pairs of the new events (existing pairs stay)."""
    pairs = {(dest, row_id >> BLOCK_BITS) for row_id, dest in refs if dest is not None}
    if pairs:
        params = [{"destination_id": d, "block": b} for d, b in sorted(pairs)]
        conn.execute(_insert_pair(conn.dialect.name), params)


@functools.cache
def _insert_pair(dialect: str) -> Any:
    ins: Any = pg_insert(T_DBLOCK) if dialect == "postgresql" else sqlite_insert(T_DBLOCK)
    return ins.on_conflict_do_nothing(index_elements=[T_DBLOCK.c.destination_id, T_DBLOCK.c.block])


@functools.cache
def _upsert_block(dialect: str) -> Any:
    # Two agents on one PostgreSQL database may widen the same block: the upsert merges.
    ins: Any = pg_insert(T_BLOCK) if dialect == "postgresql" else sqlite_insert(T_BLOCK)
    return ins.on_conflict_do_update(
        index_elements=[T_BLOCK.c.block],
        set_={
            "first_ts": least(T_BLOCK.c.first_ts, ins.excluded.first_ts),
            "last_ts": greatest(T_BLOCK.c.last_ts, ins.excluded.last_ts),
        },
    )


_PG_NEXT_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('events', 'id')) FROM generate_series(1, :n)"
)


def select_or_insert(
    conn: Connection, table: Table, values: dict[str, Any], extra: dict[str, Any] | None = None
) -> int:
    where = [table.c[k].is_not_distinct_from(v) for k, v in values.items()]
    found = conn.execute(select(table.c.id).where(*where).limit(1)).scalar()
    if found is not None:
        return int(found)
    ins = insert(table).values(**values, **(extra or {})).returning(table.c.id)
    return int(conn.execute(ins).scalar_one())
