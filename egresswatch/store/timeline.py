"""Event counts per time bucket and group (tool, category, host, process or node), for charts.

The database groups by integer keys (bucket number, label or row id); names are looked up
afterwards for the few keys found, so the scan of the window's id range stays narrow.
"""

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Engine, Integer, Select, cast, func, select
from sqlalchemy.orm import Session

from egresswatch.store import rollup
from egresswatch.store.rollup import MINUTE
from egresswatch.store.schema import Destination, EventBlock, EventRow, Hostname, Label, Process
from egresswatch.store.window import id_bounds, in_ids, newest_ts

Bucket = Literal["minute", "hour", "day"]
Group = Literal["tool", "category", "host", "process", "node"]
WIDTHS: dict[Bucket, int] = {"minute": 60, "hour": 3600, "day": 86400}
MAX_BUCKETS = 2000  # an auto bucket keeps a chart under a few hundred bars
OTHER = "(other)"


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    start: float
    group: str | None
    count: int


@dataclass(frozen=True, slots=True)
class Timeline:
    bucket: Bucket
    width: int
    since: float
    until: float
    groups: list[str | None]  # busiest first; OTHER last when groups were folded
    points: list[TimelinePoint]


def auto_bucket(span: float) -> Bucket:
    """Minutes up to 6 hours, hours up to 14 days, days beyond."""
    if span <= 6 * 3600:
        return "minute"
    return "hour" if span <= 14 * 86400 else "day"


def timeline(
    engine: Engine,
    since: float,
    until: float,
    *,
    bucket: Bucket,
    group: Group,
    max_groups: int = 10,
) -> Timeline:
    """Counts of events with since <= ts < until per bucket and group; the `max_groups`
    busiest groups are kept by name, the rest are added up as "(other)".
    """
    counts = rolled_counts(engine, since, until, WIDTHS[bucket], group)
    return fold(bucket, since, until, counts, max_groups)


SlotCounts = Counter[tuple[int, str | None]]


def slot_counts(engine: Engine, since: float, until: float, width: int, group: Group) -> SlotCounts:
    """Events with since <= ts < until counted per (bucket number, group name)."""
    with Session(engine) as conn:
        counts = _counts(conn, since, until, width, _KEYS[group])
        names = _names(conn, group, {k for _, k in counts})
    merged: SlotCounts = Counter()
    for (slot, k), n in counts.items():
        merged[(slot, names.get(k) if k is not None else None)] += n
    return merged


def rolled_counts(
    engine: Engine, since: float, until: float, width: int, group: Group
) -> SlotCounts:
    """What `slot_counts` answers (width a multiple of a minute), with the whole minutes of
    [since, until) read from the per-minute rollup and only the partial minutes at its edges
    counted from the events.
    """
    if until <= since:
        return Counter()
    first, end = math.ceil(since / MINUTE), math.floor(until / MINUTE)
    if end <= first:
        return slot_counts(engine, since, until, width, group)
    with Session(engine) as conn:
        counts = rollup.read(conn.connection(), _DIMENSIONS[group], first, end, width // MINUTE)
        names = _names(conn, group, {k for _, k in counts})
    merged: SlotCounts = Counter()
    for (slot, k), n in counts.items():
        merged[(slot, names.get(k) if k is not None else None)] += n
    if first * MINUTE > since:
        merged.update(slot_counts(engine, since, first * MINUTE, width, group))
    if until > end * MINUTE:
        merged.update(slot_counts(engine, end * MINUTE, until, width, group))
    return merged


def fold(
    bucket: Bucket, since: float, until: float, counts: SlotCounts, max_groups: int = 10
) -> Timeline:
    """A Timeline from slot counts: the `max_groups` busiest groups by name, then "(other)"."""
    width = WIDTHS[bucket]
    groups, points = _folded(counts, width, max_groups)
    return Timeline(bucket, width, since, until, groups, points)


def store_marks(engine: Engine) -> tuple[int | None, float | None]:
    """(oldest block, newest event ts): when the first changes, retention removed events."""
    with engine.connect() as conn:
        oldest = conn.execute(select(func.min(EventBlock.block))).scalar()
        return (None if oldest is None else int(oldest)), newest_ts(conn)


_DIMENSIONS: dict[Group, str] = {
    "tool": "tool",
    "category": "destination",
    "host": "destination",
    "process": "process",
    "node": "node",
}
_KEYS: dict[Group, Any] = {
    "tool": EventRow.tool_id,
    "category": EventRow.destination_id,
    "host": EventRow.destination_id,
    "process": EventRow.process_id,
    "node": EventRow.node_id,
}


def _counts(
    conn: Session, since: float, until: float, width: int, key: ColumnElement[Any]
) -> Counter[tuple[int, int | None]]:
    bounds = id_bounds(conn, since, until)
    found: Counter[tuple[int, int | None]] = Counter()
    if bounds is None:
        return found
    slot = _slot(conn, width)
    query = (
        select(slot, key, func.count())
        .where(in_ids(bounds), EventRow.ts >= since, EventRow.ts < until)
        .group_by(slot, key)
    )
    for number, k, n in conn.execute(query):
        found[(int(number), k)] += int(n)
    return found


def _slot(conn: Session, width: int) -> ColumnElement[Any]:
    # ts is positive, so truncation is floor; PostgreSQL's CAST rounds, hence floor() there.
    if conn.get_bind().dialect.name == "sqlite":
        return cast(EventRow.ts / width, Integer)
    return func.floor(EventRow.ts / width)


def _names(conn: Session, group: Group, keys: set[int | None]) -> dict[int, str | None]:
    ids = [k for k in keys if k is not None]
    if not ids:
        return {}
    query: Select[Any, Any]
    if group in {"tool", "node"}:
        query = select(Label.id, Label.text).where(Label.id.in_(ids))
    elif group == "category":
        query = select(Destination.id, Destination.category).where(Destination.id.in_(ids))
    elif group == "host":
        query = (
            select(Destination.id, Hostname.name)
            .join(Hostname, Hostname.id == Destination.hostname_id)
            .where(Destination.id.in_(ids))
        )
    else:
        query = select(Process.id, Process.name).where(Process.id.in_(ids))
    return {k: name for k, name in conn.execute(query)}


def _folded(
    merged: Counter[tuple[int, str | None]], width: int, max_groups: int
) -> tuple[list[str | None], list[TimelinePoint]]:
    totals: Counter[str | None] = Counter()
    for (_, name), n in merged.items():
        totals[name] += n
    ranked = sorted(totals, key=lambda g: (-totals[g], g is None, g or ""))  # ties: by name
    kept = set(ranked[:max_groups])
    points: dict[tuple[int, str | None], int] = defaultdict(int)
    for (slot, name), n in merged.items():
        points[(slot, name if name in kept else OTHER)] += n
    groups = ranked[:max_groups] + ([OTHER] if len(ranked) > max_groups else [])
    ordered = sorted(points.items(), key=lambda item: (item[0][0], groups.index(item[0][1])))
    return groups, [TimelinePoint(float(slot * width), name, n) for (slot, name), n in ordered]
