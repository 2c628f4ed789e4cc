"""The SQL the ingest runs, built once: get-or-create, batch id allocation, seen-aggregates."""

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

from egresswatch.store.schema import (
    Address,
    Destination,
    DestinationTool,
    DnsAnswerRow,
    EventRow,
    Executable,
    HelloShape,
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
T_HELLO: Table = HelloShape.__table__  # type: ignore[assignment]
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


def insert_events(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the rows with one executemany; ids are allocated first so answers can refer to them.

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
        stmt = insert(T_EVENT).returning(T_EVENT.c.id, sort_by_parameter_order=True)
        return [int(r[0]) for r in conn.execute(stmt, rows)]
    for row_id, row in zip(ids, rows, strict=True):
        row["id"] = row_id
    conn.execute(insert(T_EVENT), rows)
    return ids


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
