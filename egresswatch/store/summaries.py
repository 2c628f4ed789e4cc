"""Read side for overviews: destinations, tools and processes from the writer's summary tables.

These never scan `events`: destinations and destination_tools keep the counts as events arrive.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, Engine, and_, func, or_, select
from sqlalchemy.orm import Session

from egresswatch.model import ProcessInfo
from egresswatch.store.queries import like_suffix
from egresswatch.store.rows import process_from_row
from egresswatch.store.schema import Destination, DestinationTool, Executable, Hostname, Process

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class ToolUse:
    """How often one tool contacted a destination, first and last."""

    tool: str
    count: int
    first_seen: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class DestinationSummary:
    id: int
    host: str
    category: str | None
    catalog_entry: str | None
    first_seen: float
    last_seen: float
    count: int
    tools: tuple[ToolUse, ...]


@dataclass(frozen=True, slots=True)
class DestinationPage:
    destinations: list[DestinationSummary]
    next: tuple[float, int] | None  # (order key, id) of the last row when there is more


@dataclass(frozen=True, slots=True)
class CategoryUse:
    category: str
    events: int
    destinations: int


@dataclass(frozen=True, slots=True)
class ToolSummary:
    """A tool's report card: where it went (by category), when, from how many processes."""

    tool: str
    events: int
    destinations: int
    first_seen: float
    last_seen: float
    categories: tuple[CategoryUse, ...]
    processes: int
    executables: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class DestinationFilter:
    """Which destinations, and their order: "recent" (last contacted) or "count" (busiest)."""

    order: Literal["recent", "count"] = "recent"
    category: str | None = None
    tool: str | None = None
    host: str | None = None


def page_destinations(
    engine: Engine,
    flt: DestinationFilter,
    limit: int = 100,
    after: tuple[float, int] | None = None,
) -> DestinationPage:
    """Destinations matching `flt`, most recently contacted first, keyset-paged."""
    limit = max(1, min(limit, MAX_PAGE))
    query = (
        select(Destination, Hostname.name)
        .join(Hostname, Hostname.id == Destination.hostname_id)
        .where(*_destination_conditions(flt, after))
        .order_by(_order_key(flt).desc(), Destination.id.desc())
        .limit(limit + 1)
    )
    with Session(engine) as conn:
        rows = list(conn.execute(query))
        uses = _tool_uses(conn, [row.Destination.id for row in rows[:limit]])
    found = [_destination(row.Destination, row.name, uses) for row in rows[:limit]]
    if len(rows) <= limit:
        return DestinationPage(found, None)
    last = found[-1]
    return DestinationPage(found, (last.count if flt.order == "count" else last.last_seen, last.id))


def _order_key(flt: DestinationFilter) -> Any:
    return Destination.count if flt.order == "count" else Destination.last_seen


def destination_by_host(engine: Engine, host: str) -> DestinationSummary | None:
    """One destination by its exact host name."""
    query = (
        select(Destination, Hostname.name)
        .join(Hostname, Hostname.id == Destination.hostname_id)
        .where(Hostname.name == host.rstrip(".").lower())
    )
    with Session(engine) as conn:
        row = conn.execute(query).first()
        if row is None:
            return None
        uses = _tool_uses(conn, [row.Destination.id])
    return _destination(row.Destination, row.name, uses)


def _destination_conditions(
    flt: DestinationFilter, after: tuple[float, int] | None
) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if flt.category is not None:
        conds.append(Destination.category == flt.category)
    if flt.tool is not None:
        used = select(DestinationTool.destination_id).where(DestinationTool.tool == flt.tool)
        conds.append(Destination.id.in_(used))
    if flt.host is not None:
        host = flt.host.rstrip(".").lower()
        conds.append(or_(Hostname.name == host, Hostname.name.like(like_suffix(host), "\\")))
    if after is not None:
        key, last_id = after
        column = _order_key(flt)
        conds.append(or_(column < key, and_(column == key, Destination.id < last_id)))
    return conds


def _tool_uses(conn: Session, ids: list[int]) -> dict[int, list[ToolUse]]:
    uses: dict[int, list[ToolUse]] = defaultdict(list)
    if not ids:
        return uses
    query = (
        select(DestinationTool)
        .where(DestinationTool.destination_id.in_(ids))
        .order_by(DestinationTool.count.desc())
    )
    for use in conn.scalars(query):
        uses[use.destination_id].append(
            ToolUse(use.tool, int(use.count), use.first_seen, use.last_seen)
        )
    return uses


def _destination(
    dest: Destination, host: str, uses: dict[int, list[ToolUse]]
) -> DestinationSummary:
    return DestinationSummary(
        id=dest.id,
        host=host,
        category=dest.category,
        catalog_entry=dest.catalog_entry,
        first_seen=dest.first_seen,
        last_seen=dest.last_seen,
        count=int(dest.count),
        tools=tuple(uses.get(dest.id, ())),
    )


def tool_summaries(engine: Engine) -> list[ToolSummary]:
    """One report card per tool seen, busiest first."""
    by_category = (
        select(
            DestinationTool.tool,
            func.coalesce(Destination.category, "unknown"),
            func.sum(DestinationTool.count),
            func.count(),
            func.min(DestinationTool.first_seen),
            func.max(DestinationTool.last_seen),
        )
        .join(Destination, Destination.id == DestinationTool.destination_id)
        .group_by(DestinationTool.tool, func.coalesce(Destination.category, "unknown"))
    )
    with Session(engine) as conn:
        rows = [tuple(row) for row in conn.execute(by_category)]
        per_tool = select(Process.tool, func.count()).group_by(Process.tool)
        processes = {tool: int(n) for tool, n in conn.execute(per_tool)}
        executables = _tool_executables(conn)
    return _cards(rows, processes, executables)


def _tool_executables(conn: Session) -> dict[str, list[str]]:
    query = (
        select(Process.tool, Executable.path)
        .join(Executable, Executable.id == Process.exe_id)
        .where(Process.tool.is_not(None), Executable.path.is_not(None))
        .distinct()
        .order_by(Executable.path)
    )
    found: dict[str, list[str]] = defaultdict(list)
    for tool, path in conn.execute(query):
        if tool is not None and path is not None:
            found[tool].append(path)
    return found


def _cards(
    rows: Sequence[tuple[Any, ...]],
    processes: dict[str | None, int],
    executables: dict[str, list[str]],
) -> list[ToolSummary]:
    grouped: dict[str, list[tuple[str, int, int, float, float]]] = defaultdict(list)
    for tool, category, events, dests, first, last in rows:
        grouped[tool].append((category, int(events), int(dests), first, last))
    cards = [
        ToolSummary(
            tool=tool,
            events=sum(part[1] for part in parts),
            destinations=sum(part[2] for part in parts),
            first_seen=min(part[3] for part in parts),
            last_seen=max(part[4] for part in parts),
            categories=tuple(
                CategoryUse(c, e, d) for c, e, d, _, _ in sorted(parts, key=lambda p: -p[1])
            ),
            processes=processes.get(tool, 0),
            executables=tuple(executables.get(tool, ())),
        )
        for tool, parts in grouped.items()
    ]
    return sorted(cards, key=lambda card: -card.events)


def processes_by_pid(engine: Engine, pid: int, limit: int = 50) -> list[ProcessInfo]:
    """The processes recorded with `pid` (pids are reused), newest first."""
    query = (
        select(Process, Executable.path, Executable.sha256)
        .outerjoin(Executable, Executable.id == Process.exe_id)
        .where(Process.pid == pid)
        .order_by(Process.first_seen.desc())
        .limit(limit)
    )
    with Session(engine) as conn:
        return [process_from_row(proc, path, sha) for proc, path, sha in conn.execute(query)]


def processes_by_exe(engine: Engine, exe: str, limit: int = 50) -> list[ProcessInfo]:
    """The processes recorded running executable path `exe`, newest first."""
    query = (
        select(Process, Executable.path, Executable.sha256)
        .join(Executable, Executable.id == Process.exe_id)
        .where(Executable.path == exe)
        .order_by(Process.first_seen.desc())
        .limit(limit)
    )
    with Session(engine) as conn:
        return [process_from_row(proc, path, sha) for proc, path, sha in conn.execute(query)]
