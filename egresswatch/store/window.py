"""Time windows as event id ranges through `event_blocks` (events have no index on ts).

Every helper is exact: block ranges only narrow the id range scanned, ts decides.
"""

from typing import Any

from sqlalchemy import ColumnElement, Select, func, select

from egresswatch.store.schema import BLOCK_BITS, EventBlock, EventRow

# Probing for the n-th newest event starts with this many ids per wanted event, then x4.
PROBE_SPREAD = 2


def id_bounds(
    conn: Any, since: float | None, until: float | None, first_block: int = 0
) -> tuple[int, int] | None:
    """[lo, hi) holding every event with since <= ts <= until (until inclusive); None: none.

    `first_block`: a block below which no block overlaps (lets a walk skip what it has read).
    """
    conds = [EventBlock.block >= first_block] if first_block else []
    if since is not None:
        conds.append(EventBlock.last_ts >= since)
    if until is not None:
        conds.append(EventBlock.first_ts <= until)
    query = select(func.min(EventBlock.block), func.max(EventBlock.block)).where(*conds)
    lo, hi = conn.execute(query).one()
    if lo is None:
        return None
    return int(lo) << BLOCK_BITS, (int(hi) + 1) << BLOCK_BITS


def in_ids(bounds: tuple[int, int]) -> ColumnElement[bool]:
    return EventRow.id.between(bounds[0], bounds[1] - 1)


def nth_newest_ts(conn: Any, query: Select[Any], n: int) -> float | None:
    """The ts of the n-th newest row of `query` (a select of EventRow.ts, filters applied).

    Scans back from the newest ids in growing spans until n rows are found: their n-th ts is
    a floor for the answer, which the exact query then needs to look above only.
    """
    whole = id_bounds(conn, None, None)
    if whole is None or n <= 0:
        return None
    lo, hi = whole
    span = max(n * PROBE_SPREAD, 1 << BLOCK_BITS)
    floor = None
    while floor is None:
        start = max(lo, hi - span)
        probe = query.where(EventRow.id >= start).order_by(EventRow.ts.desc())
        floor = conn.execute(probe.offset(n - 1).limit(1)).scalar()
        if start == lo:
            break
        span *= 4
    if floor is None:
        return None
    bounds = id_bounds(conn, floor, None)
    assert bounds is not None  # the floor is some event's ts
    exact = query.where(in_ids(bounds), EventRow.ts >= floor).order_by(EventRow.ts.desc())
    found = conn.execute(exact.offset(n - 1).limit(1)).scalar()
    return None if found is None else float(found)


def oldest_ts(conn: Any) -> float | None:
    """min(ts) over the events: only blocks that start before the end of the oldest block."""
    ceiling = conn.execute(select(func.min(EventBlock.last_ts))).scalar()
    if ceiling is None:
        return None
    bounds = id_bounds(conn, None, ceiling)
    assert bounds is not None
    found = conn.execute(select(func.min(EventRow.ts)).where(in_ids(bounds))).scalar()
    if found is None:  # blocks out of step with the events (deleted by hand): scan them all
        found = conn.execute(select(func.min(EventRow.ts))).scalar()
    return None if found is None else float(found)


def newest_ts(conn: Any, node_id: Any = None) -> float | None:
    """max(ts) over the events (of node label `node_id` when given: then only the newest
    block is looked at, None when the node has no event there).
    """
    floor = conn.execute(select(func.max(EventBlock.first_ts))).scalar()
    if floor is None:
        return None
    bounds = id_bounds(conn, floor, None)
    assert bounds is not None
    newest = select(func.max(EventRow.ts))
    if node_id is not None:
        newest = newest.where(EventRow.node_id == node_id)
    found = conn.execute(newest.where(in_ids(bounds))).scalar()
    if found is None and node_id is None:
        found = conn.execute(select(func.max(EventRow.ts))).scalar()
    return None if found is None else float(found)


def window_top(conn: Any, since: float, blocks: int, first_block: int) -> tuple[float, int] | None:
    """The next export window from `since`: (max last_ts, first block) of the next `blocks`
    blocks (from `first_block` up) that have events at or after `since`.
    """
    nearest = (
        select(EventBlock.block, EventBlock.last_ts)
        .where(EventBlock.block >= first_block, EventBlock.last_ts >= since)
        .order_by(EventBlock.block)
        .limit(blocks)
        .subquery()
    )
    top, first = conn.execute(select(func.max(nearest.c.last_ts), func.min(nearest.c.block))).one()
    return None if top is None else (float(top), int(first))
