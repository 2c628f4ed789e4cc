"""The store's read side: events in a time window, filtered, rebuilt as model records; stats."""

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from sqlalchemy import ColumnElement, Engine, Row, Select, and_, func, or_, select, text
from sqlalchemy.orm import Session, aliased

from egresswatch.model import (
    Attribution,
    ClientHello,
    DnsAnswer,
    DnsMessage,
    Event,
    FlowKey,
    Observation,
    ProcessInfo,
    ProcessRef,
)
from egresswatch.store.schema import (
    ATTRIBUTION_METHOD_CODES,
    BLOCK_BITS,
    DNS_PROTO_CODES,
    FLAG_DNS_ID,
    FLAG_DNS_OPCODE,
    FLAG_DNS_PROTO,
    FLAG_DNS_RESPONSE,
    FLAG_DNS_TRUNCATED,
    FLAG_KIND,
    FLAG_NAME_CONFLICT,
    FLAG_NAME_IS_HOST,
    FLAG_NAME_SOURCE,
    FLAG_PORTS_SWAPPED,
    FLAG_TRANSPORT,
    FLAG_TUNNELED,
    KIND_CODES,
    NAME_SOURCE_CODES,
    TRANSPORT_CODES,
    Address,
    Base,
    Destination,
    DestinationBlock,
    DnsAnswerRow,
    EventRow,
    Executable,
    Hostname,
    Label,
    Process,
    flag,
    unpack_ports,
)
from egresswatch.store.window import (
    id_bounds,
    in_ids,
    newest_ts,
    nth_newest_ts,
    oldest_ts,
    window_top,
)

_KINDS = {v: k for k, v in KIND_CODES.items()}
_TRANSPORTS = {v: k for k, v in TRANSPORT_CODES.items()}
_DNS_PROTOS = {v: k for k, v in DNS_PROTO_CODES.items()}
_NAME_SOURCES = {v: k for k, v in NAME_SOURCE_CODES.items()}
_METHODS = {v: k for k, v in ATTRIBUTION_METHOD_CODES.items()}
PAGE = 1000
DNS_DETAIL = '[["d",'  # how ingest.detail_text starts for a DNS message


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
class StoredEvent:
    id: int
    event: Event


@dataclass(frozen=True, slots=True)
class StoreStats:
    url: str
    size_bytes: int | None
    counts: dict[str, int]
    oldest: float | None
    newest: float | None
    revision: str | None


_status = aliased(Label, name="status")
_tool = aliased(Label, name="tool")
_detail = aliased(Label, name="detail")
_node = aliased(Label, name="node")
_dest_host = aliased(Hostname, name="dest_host")
_name = aliased(Hostname, name="name")
_src = aliased(Address, name="src")
_dst = aliased(Address, name="dst")


def _base_query() -> Select[*tuple[Any, ...]]:
    return (
        select(
            EventRow,
            _status.text.label("status"),
            Process,
            Executable.path.label("exe_path"),
            Executable.sha256.label("exe_sha"),
            _dest_host.name.label("host"),
            Destination.category,
            Destination.catalog_entry,
            Destination.category_source,
            Destination.category_confidence,
            _tool.text.label("tool"),
            _name.name.label("name"),
            _detail.text.label("detail"),
            _node.text.label("node"),
            _src.addr.label("src"),
            _dst.addr.label("dst"),
        )
        .join(_status, _status.id == EventRow.status_id)
        .join(_src, _src.id == EventRow.src_id)
        .join(_dst, _dst.id == EventRow.dst_id)
        .outerjoin(Process, Process.id == EventRow.process_id)
        .outerjoin(Executable, Executable.id == Process.exe_id)
        .outerjoin(Destination, Destination.id == EventRow.destination_id)
        .outerjoin(_dest_host, _dest_host.id == Destination.hostname_id)
        .outerjoin(_tool, _tool.id == EventRow.tool_id)
        .outerjoin(_name, _name.id == EventRow.name_id)
        .outerjoin(_detail, _detail.id == EventRow.detail_id)
        .outerjoin(_node, _node.id == EventRow.node_id)
    )


def _like_suffix(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "%." + escaped


def _filtered(query: Select[*tuple[Any, ...]], flt: EventFilter) -> Select[*tuple[Any, ...]]:
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
        pattern = _like_suffix(host)
        # A DNS question's name (stored only where it is not the host) matches too.
        is_dns = _detail.text.startswith(DNS_DETAIL, autoescape=True)
        conds.append(
            or_(
                _dest_host.name == host,
                _dest_host.name.like(pattern, escape="\\"),
                and_(is_dns, _name.name == host),
                and_(is_dns, _name.name.like(pattern, escape="\\")),
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
        probe = _filtered(_base_query().with_only_columns(EventRow.ts), flt)
        floor = nth_newest_ts(conn, probe, limit)
        since = flt.since if floor is None else floor
        bounds = id_bounds(conn, since, flt.until)
        if bounds is None:
            return []
        query = _filtered(_base_query(), replace(flt, since=since)).where(in_ids(bounds))
        query = query.order_by(EventRow.ts.desc(), EventRow.id.desc()).limit(limit)
        rows = list(conn.execute(query))
        answers = _answers(conn, rows)
    return [_stored(row, answers) for row in reversed(rows)]


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
        yield from (_stored(row, answers) for row in rows)
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
) -> tuple[list[Row[Any]], dict[int, list["_Answer"]]]:
    """Up to `page` events with flt.since <= ts <= top, after the (ts, id) key `after`."""
    bounds = id_bounds(conn, flt.since, top, first_block)
    if bounds is None:
        return [], {}
    query = _filtered(_base_query(), flt).where(in_ids(bounds), EventRow.ts <= top)
    if after is not None:
        ts, eid = after
        query = query.where(or_(EventRow.ts > ts, and_(EventRow.ts == ts, EventRow.id > eid)))
    rows = list(conn.execute(query.order_by(EventRow.ts, EventRow.id).limit(page)))
    return rows, _answers(conn, rows)


# One stored answer: its name (None: the question's), type, data and TTL.
_Answer = tuple[str | None, str, str | None, int]


def _answers(conn: Session, rows: Sequence[Row[Any]]) -> dict[int, list[_Answer]]:
    """The stored answers of the DNS events among `rows`, by event id."""
    event_ids = [r.EventRow.id for r in rows if (r.detail or "").startswith(DNS_DETAIL)]
    out: dict[int, list[_Answer]] = {}
    if not event_ids:
        return out
    name, kind, addr = aliased(Hostname), aliased(Label), aliased(Address)
    query = (
        select(DnsAnswerRow, name.name, kind.text, addr.addr)
        .outerjoin(name, name.id == DnsAnswerRow.hostname_id)
        .join(kind, kind.id == DnsAnswerRow.type_id)
        .outerjoin(addr, addr.id == DnsAnswerRow.address_id)
        .where(DnsAnswerRow.event_id.in_(event_ids))
        .order_by(DnsAnswerRow.event_id, DnsAnswerRow.ord)
    )
    for ans, host, rtype, address in conn.execute(query):
        data = address if address is not None else ans.data
        out.setdefault(ans.event_id, []).append((host, rtype, data, ans.ttl))
    return out


def _stored(row: Row[Any], answers: dict[int, list[_Answer]]) -> StoredEvent:
    ev: EventRow = row.EventRow
    method = None if ev.attribution_method is None else _METHODS.get(ev.attribution_method)
    attribution = Attribution(row.status, _process(row), method)  # type: ignore[arg-type]
    event = Event(
        observation=_observation(row, answers.get(ev.id, [])),
        attribution=attribution,
        host=row.host,
        name_source=_code(_NAME_SOURCES, flag(ev.flags, FLAG_NAME_SOURCE)),  # type: ignore[arg-type]
        name_conflict=bool(flag(ev.flags, FLAG_NAME_CONFLICT)),
        category=row.category,
        catalog_entry=row.catalog_entry,
        tool=row.tool,
        name_candidates=tuple(json.loads(ev.name_candidates)) if ev.name_candidates else (),
        category_source=row.category_source,
        category_confidence=row.category_confidence,
        node=row.node,
    )
    return StoredEvent(ev.id, event)


def _observation(row: Row[Any], answers: list[_Answer]) -> Observation:
    ev: EventRow = row.EventRow
    flags = ev.flags
    transport = _TRANSPORTS[flag(flags, FLAG_TRANSPORT)]
    sport, dport = unpack_ports(ev.ports, flag(flags, FLAG_PORTS_SWAPPED))
    flow = FlowKey(transport, row.src, sport, row.dst, dport)  # type: ignore[arg-type]
    name = row.host if flag(flags, FLAG_NAME_IS_HOST) else row.name
    parts = {part[0]: part[1:] for part in json.loads(row.detail or "[]")}
    dns, hello = parts.get("d"), parts.get("h")
    return Observation(
        ts=ev.ts,
        kind=_KINDS[flag(flags, FLAG_KIND)],  # type: ignore[arg-type]
        flow=flow,
        dns=None if dns is None else _dns(flags, dns, name, answers),
        dns_proto=_code(_DNS_PROTOS, flag(flags, FLAG_DNS_PROTO)),  # type: ignore[arg-type]
        hello=None if hello is None else _hello(hello, name),
        quic_version=parts.get("v", [None])[0],
        tunneled=bool(flag(flags, FLAG_TUNNELED)),
    )


def _dns(flags: int, part: list[Any], qname: str | None, answers: list[_Answer]) -> DnsMessage:
    qtype, rcode = part
    return DnsMessage(
        id=flag(flags, FLAG_DNS_ID),
        is_response=bool(flag(flags, FLAG_DNS_RESPONSE)),
        opcode=flag(flags, FLAG_DNS_OPCODE),
        qname=qname,
        qtype=qtype,
        rcode=rcode,
        truncated=bool(flag(flags, FLAG_DNS_TRUNCATED)),
        answers=tuple(DnsAnswer(_or(n, qname), t, d, ttl) for n, t, d, ttl in answers),
    )


def _or(name: str | None, qname: str | None) -> str:
    # NULL stands for the question's name (never None when an answer was stored that way).
    return name if name is not None else qname or ""


def _hello(part: list[Any], sni: str | None) -> ClientHello:
    alpn, legacy_version, supported_versions, ech = part
    return ClientHello(sni, tuple(alpn), legacy_version, tuple(supported_versions), ech)


def _code(names: dict[int, str], packed: int) -> str | None:
    """An optional field's name from its flags value (code + 1; 0 is None)."""
    return None if packed == 0 else names[packed - 1]


def _process(row: Row[Any]) -> ProcessInfo | None:
    proc: Process | None = row.Process
    if proc is None:
        return None
    ancestry = tuple(ProcessRef(p, n, x) for p, n, x in json.loads(proc.ancestry))
    sha: bytes | None = row.exe_sha
    return ProcessInfo(
        pid=proc.pid,
        name=proc.name,
        exe=row.exe_path,
        exe_sha256=None if sha is None else sha.hex(),
        cmdline=tuple(json.loads(proc.cmdline)),
        user=proc.user,
        ppid=proc.ppid,
        start_time=proc.start_time,
        ancestry=ancestry,
        netns=proc.netns,
        container=proc.container,
        tool=proc.tool,
        tool_reason=proc.tool_reason,
    )


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
