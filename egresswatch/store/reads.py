"""Read side for browsing: events newest first with keyset (cursor) paging, and live tailing.

Pages are keyed on (ts, id), never on an offset, so page N costs what page 1 costs and rows
stored meanwhile neither repeat nor go missing between pages.
"""

from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from egresswatch.model import Alert
from egresswatch.store.alerts import alert_from_row
from egresswatch.store.queries import EventFilter, filtered
from egresswatch.store.rows import StoredEvent, event_select, stored_events
from egresswatch.store.schema import (
    BLOCK_BITS,
    FLAG_KIND,
    KIND_CODES,
    AlertRow,
    EventBlock,
    EventRow,
    Process,
)
from egresswatch.store.window import id_bounds, in_ids, nth_newest_ts

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the (ts, id) of its last (oldest) event."""

    ts: float
    id: int


@dataclass(frozen=True, slots=True)
class EventQuery:
    """The browsing filters: EventFilter's plus the kind, process id and process name."""

    base: EventFilter = field(default_factory=EventFilter)
    kind: str | None = None
    pid: int | None = None
    process: str | None = None
    ids: tuple[int, ...] | None = None  # only these events (e.g. a session's evidence)


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[StoredEvent]
    next: Cursor | None


def page_events(
    engine: Engine, query: EventQuery, limit: int = 100, after: Cursor | None = None
) -> EventPage:
    """Up to `limit` events matching `query`, newest first, older than `after` when given."""
    limit = max(1, min(limit, MAX_PAGE))
    if (query.kind is not None and query.kind not in KIND_CODES) or query.ids == ():
        return EventPage([], None)
    with Session(engine) as conn:
        probe = _narrowed(event_select().with_only_columns(EventRow.ts), query, after)
        floor = nth_newest_ts(conn, probe, limit + 1)
        since = _later(query.base.since, floor)
        top = after.ts if after is not None else query.base.until
        bounds = id_bounds(conn, since, top)
        if bounds is None:
            return EventPage([], None)
        narrowed = replace(query, base=replace(query.base, since=since))
        select_rows = _narrowed(event_select(), narrowed, after).where(in_ids(bounds))
        select_rows = select_rows.order_by(EventRow.ts.desc(), EventRow.id.desc())
        rows = list(conn.execute(select_rows.limit(limit + 1)))
        events = stored_events(conn, rows[:limit])
    more = len(rows) > limit
    return EventPage(
        events, Cursor(events[-1].event.observation.ts, events[-1].id) if more else None
    )


def events_after(engine: Engine, last_id: int, limit: int = 500) -> list[StoredEvent]:
    """Events stored after id `last_id`, in id (arrival) order: what a live tail shows next."""
    with Session(engine) as conn:
        query = event_select().where(EventRow.id > last_id).order_by(EventRow.id).limit(limit)
        return stored_events(conn, list(conn.execute(query)))


def newest_id(engine: Engine) -> int:
    """The highest event id stored (0 for none), from the block table and one rowid range."""
    with engine.connect() as conn:
        block = conn.execute(select(func.max(EventBlock.block))).scalar()
        low = 0 if block is None else int(block) << BLOCK_BITS
        found = conn.execute(select(func.max(EventRow.id)).where(EventRow.id >= low)).scalar()
        if found is None and block is not None:
            found = conn.execute(select(func.max(EventRow.id))).scalar()
    return 0 if found is None else int(found)


def _narrowed(query: Select[Any], browse: EventQuery, after: Cursor | None) -> Select[Any]:
    conds: list[ColumnElement[bool]] = []
    if browse.kind is not None:
        shift, width = FLAG_KIND
        kind_bits = EventRow.flags.op("&")(((1 << width) - 1) << shift)
        conds.append(kind_bits == KIND_CODES[browse.kind] << shift)
    if browse.pid is not None:
        conds.append(Process.pid == browse.pid)
    if browse.process is not None:
        conds.append(Process.name == browse.process)
    if browse.ids is not None:
        conds.append(EventRow.id.in_(browse.ids))
    if after is not None:
        conds.append(
            or_(EventRow.ts < after.ts, and_(EventRow.ts == after.ts, EventRow.id < after.id))
        )
    query = filtered(query, browse.base)
    return query.where(*conds) if conds else query


def _later(since: float | None, floor: float | None) -> float | None:
    if since is None:
        return floor
    return since if floor is None else max(since, floor)


def events_by_ids(engine: Engine, ids: list[int]) -> list[StoredEvent]:
    """The events with these ids (those still stored), in id order."""
    if not ids:
        return []
    with Session(engine) as conn:
        query = event_select().where(EventRow.id.in_(ids)).order_by(EventRow.id)
        return stored_events(conn, list(conn.execute(query)))


def alerts_after(engine: Engine, last_id: int, limit: int = 500) -> list[Alert]:
    """Alerts recorded after id `last_id`, oldest first: what a live view shows next."""
    query = select(AlertRow).where(AlertRow.id > last_id).order_by(AlertRow.id).limit(limit)
    with Session(engine) as conn:
        return [alert_from_row(row) for row in conn.scalars(query)]


def newest_alert_id(engine: Engine) -> int:
    with engine.connect() as conn:
        found = conn.execute(select(func.max(AlertRow.id))).scalar()
    return 0 if found is None else int(found)
