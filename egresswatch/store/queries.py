"""The store's read side: events in a time window, filtered, rebuilt as model records; stats."""

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, cast

from sqlalchemy import ColumnElement, Engine, Row, Select, and_, func, or_, select, text
from sqlalchemy.orm import Session

from egresswatch.store.rows import (
    DNS_DETAIL,
    StoredAnswer,
    StoredEvent,
    dest_host,
    detail_label,
    event_select,
    load_answers,
    name_host,
    stored_event,
    stored_events,
)
from egresswatch.store.schema import (
    BLOCK_BITS,
    Base,
    Destination,
    DestinationBlock,
    EventRow,
    Label,
)
from egresswatch.store.window import (
    id_bounds,
    in_ids,
    newest_ts,
    nth_newest_ts,
    oldest_ts,
    window_top,
)

__all__ = [  # StoredEvent (of rows) is re-exported: readers name it from here too
    "PAGE",
    "EventFilter",
    "StoreStats",
    "StoredEvent",
    "database_size",
    "filtered",
    "iter_events",
    "like_suffix",
    "query_events",
    "store_stats",
]
PAGE = 1000


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events to read; `host` matches the host itself and any name under it."""

    since: float | None = None
    until: float | None = None
    tool: str | None = None
    category: str | None = None
    host: str | None = None
    node: str | None = None


@dataclass(frozen=True, slots=True)
class StoreStats:
    url: str
    size_bytes: int | None
    counts: dict[str, int]
    oldest: float | None
    newest: float | None
    revision: str | None


def like_suffix(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "%." + escaped


def filtered(query: Select[*tuple[Any, ...]], flt: EventFilter) -> Select[*tuple[Any, ...]]:
    conds = []
    if flt.since is not None:
        conds.append(EventRow.ts >= flt.since)
    if flt.until is not None:
        conds.append(EventRow.ts < flt.until)
    if flt.tool is not None:
        tool_id = select(Label.id).where(Label.text == flt.tool).scalar_subquery()
        conds.append(EventRow.tool_id == tool_id)
    if flt.node is not None:
        node_id = select(Label.id).where(Label.text == flt.node).scalar_subquery()
        conds.append(EventRow.node_id == node_id)
    if flt.category is not None:
        conds.append(Destination.category == flt.category)
        query = _in_destination_blocks(query, Destination.category == flt.category)
    if flt.host is not None:
        host = flt.host.rstrip(".").lower()
        pattern = like_suffix(host)
        # A DNS question's name (stored only where it is not the host) matches too.
        is_dns = detail_label.text.startswith(DNS_DETAIL, autoescape=True)
        conds.append(
            or_(
                dest_host.name == host,
                dest_host.name.like(pattern, escape="\\"),
                and_(is_dns, name_host.name == host),
                and_(is_dns, name_host.name.like(pattern, escape="\\")),
            )
        )
    return query.where(and_(*conds)) if conds else query


def _in_destination_blocks(
    query: Select[*tuple[Any, ...]], which: ColumnElement[bool]
) -> Select[*tuple[Any, ...]]:
    """Only events in the blocks of the destinations `which` selects (index-backed: each pair
    is a rowid range). An event matches its own (destination, block) pair once, so the inner
    join adds no duplicates.
    """
    block = DestinationBlock.block * (1 << BLOCK_BITS)
    return query.join(
        DestinationBlock,
        and_(
            DestinationBlock.destination_id == EventRow.destination_id,
            EventRow.id.between(block, block + (1 << BLOCK_BITS) - 1),
        ),
    ).where(DestinationBlock.destination_id.in_(select(Destination.id).where(which)))


def query_events(engine: Engine, flt: EventFilter, limit: int = 100) -> list[StoredEvent]:
    """The newest `limit` events matching `flt`, oldest first."""
    if limit <= 0:
        return []
    with Session(engine) as conn:
        probe = filtered(event_select().with_only_columns(EventRow.ts), flt)
        floor = nth_newest_ts(conn, probe, limit)
        since = flt.since if floor is None else floor
        bounds = id_bounds(conn, since, flt.until)
        if bounds is None:
            return []
        query = filtered(event_select(), replace(flt, since=since)).where(in_ids(bounds))
        query = query.order_by(EventRow.ts.desc(), EventRow.id.desc()).limit(limit)
        events = stored_events(conn, list(conn.execute(query)))
    return events[::-1]


def iter_events(engine: Engine, flt: EventFilter, page: int = PAGE) -> Iterator[StoredEvent]:
    """Every event matching `flt`, oldest first, read a page at a time (for export).

    Windows of a few pages' worth of blocks, each paged by (ts, id): no sort is ever larger
    than a window, however many events there are. A later window never needs a block below
    the previous one's first (its blocks all end before the new window starts).
    """
    low = -math.inf if flt.since is None else flt.since
    after: tuple[float, int] | None = None
    blocks = max(4, (4 * page) >> BLOCK_BITS)
    first = 0
    while flt.until is None or low < flt.until:
        with Session(engine) as conn:
            window = window_top(conn, low, blocks, first)
            if window is None:
                return
            top, first = window
            rows, answers = _window_page(
                conn, replace(flt, since=low), top, first, after=after, page=page
            )
        yield from (stored_event(row, answers) for row in rows)
        if len(rows) == page:
            after = (rows[-1].EventRow.ts, rows[-1].EventRow.id)
        else:
            low, after = math.nextafter(top, math.inf), None


def _window_page(
    conn: Session,
    flt: EventFilter,
    top: float,
    first_block: int,
    *,
    after: tuple[float, int] | None,
    page: int,
) -> tuple[list[Row[Any]], dict[int, list[StoredAnswer]]]:
    """Up to `page` events with flt.since <= ts <= top, after the (ts, id) key `after`."""
    bounds = id_bounds(conn, flt.since, top, first_block)
    if bounds is None:
        return [], {}
    query = filtered(event_select(), flt).where(in_ids(bounds), EventRow.ts <= top)
    if after is not None:
        ts, eid = after
        query = query.where(or_(EventRow.ts > ts, and_(EventRow.ts == ts, EventRow.id > eid)))
    rows = list(conn.execute(query.order_by(EventRow.ts, EventRow.id).limit(page)))
    return rows, load_answers(conn, rows)


def store_stats(engine: Engine, revision: str | None) -> StoreStats:
    """Size on disk (where the backend can tell), row counts and the events' time range."""
    with engine.connect() as conn:
        counts = {
            name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for name, table in Base.metadata.tables.items()
        }
        oldest, newest = oldest_ts(conn), newest_ts(conn)
        size = database_size(conn)
    return StoreStats(
        engine.url.render_as_string(hide_password=True), size, counts, oldest, newest, revision
    )


def database_size(conn: Any) -> int | None:
    """Bytes in use: SQLite pages minus free pages; PostgreSQL relations incl. indexes."""
    if conn.dialect.name == "sqlite":
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
        page_size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
        return int((pages - free) * page_size)
    if conn.dialect.name == "postgresql":
        names = list(Base.metadata.tables)
        query = text(
            "SELECT sum(pg_total_relation_size(quote_ident(t)))"
            " FROM unnest(CAST(:n AS text[])) AS t"
        )
        return int(cast(int, conn.execute(query, {"n": names}).scalar() or 0))
    return None
