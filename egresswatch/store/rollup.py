"""The per-minute rollup (`timeline_minutes`): event counts per minute for each tool label,
destination and process id, so a timeline of whole minutes reads a few rows a minute instead
of counting every event.

The writer adds each batch's counts in the batch's transaction (an upsert that adds, so agents
sharing a PostgreSQL database merge); retention subtracts what it deletes in the deleting
transaction. Counting the rollup over whole minutes therefore answers exactly what counting
the events answers. A minute is floor(ts / 60) with float division, as the SQL slot is.
"""

import functools
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from egresswatch.store.schema import DIMENSION_CODES, TimelineMinute

T_MINUTES: Table = TimelineMinute.__table__  # type: ignore[assignment]
MINUTE = 60
NONE_KEY = 0  # ids start at 1: 0 stands for "no tool / destination / process"
_COLUMNS = {
    "tool": "tool_id",
    "destination": "destination_id",
    "process": "process_id",
    "node": "node_id",
}

Tally = Counter[tuple[int, int, int]]  # (dimension, minute, key) -> events


def minute_of(ts: float) -> int:
    return math.floor(ts / MINUTE)


def tally(rows: Iterable[Mapping[Any, Any]]) -> Tally:
    """Counts per (dimension, minute, key) of event rows with ts, tool_id, destination_id,
    process_id and node_id."""
    found: Tally = Counter()
    for row in rows:
        minute = minute_of(row["ts"])
        for dimension, column in _COLUMNS.items():
            key = row[column]
            found[(DIMENSION_CODES[dimension], minute, NONE_KEY if key is None else key)] += 1
    return found


def add(conn: Connection, counts: Tally) -> None:
    """Add `counts` to the rollup (in key order, so concurrent writers lock rows in one order)."""
    if counts:
        params = [
            {"dimension": d, "minute": m, "key": k, "count": n}
            for (d, m, k), n in sorted(counts.items())
        ]
        conn.execute(_upsert(conn.dialect.name), params)


def subtract(conn: Connection, counts: Tally) -> None:
    """Take deleted events' `counts` off the rollup; rows that reach 0 are removed."""
    if not counts:
        return
    params = [{"b_d": d, "b_m": m, "b_k": k, "b_n": n} for (d, m, k), n in sorted(counts.items())]
    conn.execute(_LOWER, params)
    minutes = [m for _, m, _ in counts]
    conn.execute(
        delete(T_MINUTES).where(
            T_MINUTES.c.minute >= min(minutes),
            T_MINUTES.c.minute <= max(minutes),
            T_MINUTES.c.count <= 0,
        )
    )


def read(
    conn: Connection, dimension: str, first: int, end: int, per: int
) -> Counter[tuple[int, int | None]]:
    """Events in minutes [first, end) of `dimension`, per (minute // per, key or None)."""
    slot = T_MINUTES.c.minute if per == 1 else T_MINUTES.c.minute // per
    query = (
        select(slot, T_MINUTES.c.key, func.sum(T_MINUTES.c.count))
        .where(
            T_MINUTES.c.dimension == DIMENSION_CODES[dimension],
            T_MINUTES.c.minute >= first,
            T_MINUTES.c.minute < end,
        )
        .group_by(slot, T_MINUTES.c.key)
    )
    found: Counter[tuple[int, int | None]] = Counter()
    for number, key, n in conn.execute(query):
        found[(int(number), None if key == NONE_KEY else int(key))] += int(n)
    return found


_LOWER = (
    update(T_MINUTES)
    .where(
        T_MINUTES.c.dimension == bindparam("b_d"),
        T_MINUTES.c.minute == bindparam("b_m"),
        T_MINUTES.c.key == bindparam("b_k"),
    )
    .values(count=T_MINUTES.c.count - bindparam("b_n"))
)


@functools.cache
def _upsert(dialect: str) -> Any:
    ins: Any = pg_insert(T_MINUTES) if dialect == "postgresql" else sqlite_insert(T_MINUTES)
    return ins.on_conflict_do_update(
        index_elements=[T_MINUTES.c.dimension, T_MINUTES.c.minute, T_MINUTES.c.key],
        set_={"count": T_MINUTES.c.count + ins.excluded.count},
    )
